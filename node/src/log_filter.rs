//! Keeps openraft's expected, harmless messages out of the node's log at the default levels.
//!
//! openraft logs some ordinary events as WARN or ERROR, so a healthy start printed a screen of
//! them and an operator could not tell a real problem from routine:
//!
//! - **A peer that does not answer** ("Unreachable node: … connection refused" or a deadline
//!   elapsed) on every vote, heartbeat and read-index confirmation, ten times a second, and the
//!   replication backoff that follows. At start this is just the peers not listening yet; later
//!   it is a peer that is down, which `cluster status` reports (`liveness`) and which fencing
//!   and failover act on.
//! - **"A message will be ignored because vote changed"**: a vote answer that arrives after the
//!   election it was for is decided. Every election with more than one voter produces them.
//! - **"seen a higher vote"** on replication: a leader learning that a newer candidate exists,
//!   and stepping down. Two nodes that time out together at start produce it; a real leader
//!   change is recorded as a `leader` event by the node that wins.
//! - **"OneshotConsumer.tx.send: is_ok: false"**: openraft answering a request whose caller
//!   already gave up (a write or read that timed out or was dropped during an election).
//!
//! - **"Can not initialize"** with `--initial-cluster`: a peer's vote reached this node before
//!   it called `initialize` with the same members, so there is nothing left to initialize;
//!   `server::start_membership` notes it at INFO ("initialize skipped").
//!
//! tracing cannot lower an event's level, so these are dropped from the log instead, whatever
//! `RUST_LOG` says. Every other openraft event passes (a storage error is still ERROR).

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// Fragments of an openraft WARN/ERROR event's fields that mark it as harmless (see above).
const HARMLESS: &[&str] = &[
    "Unreachable node",
    "A message will be ignored because vote changed",
    "backoff mode: drain events",
    "Can not initialize",
    "seen a higher vote",
    "OneshotConsumer.tx.send",
];

/// The filter: passes every event except openraft's harmless WARNs and ERRORs.
pub struct QuietOpenraft;

impl<S> Filter<S> for QuietOpenraft {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !meta.target().starts_with("openraft") || *meta.level() > Level::WARN {
            return true;
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        !is_harmless(&fields.0)
    }
}

fn is_harmless(fields: &str) -> bool {
    HARMLESS.iter().any(|h| fields.contains(h))
}

/// Collects an event's fields (its message included) as text.
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, _: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{value:?} ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_known_messages_are_harmless() {
        assert!(is_harmless("while requesting vote Unreachable node: tonic::status::Status: tcp connect error"));
        assert!(is_harmless("A message will be ignored because vote changed: msg sent by vote: T1-N3"));
        assert!(is_harmless("error replication to target=1 error=seen a higher vote: T1-N3:uncommitted GT mine"));
        assert!(is_harmless("OneshotConsumer.tx.send: is_ok: false"));
        assert!(!is_harmless("storage error: failed to write log"));
        assert!(!is_harmless("timeout while confirming leadership for read request target=2 Timeout"));
    }
}
