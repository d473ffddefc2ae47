//! Recording cluster events that no catalog command carries (see
//! [`flotilla_raft::Events`]): a sandbox that could not be placed, a new leader, a lifted
//! fence. The node that saw it proposes [`Command::RecordEvent`] in a task of its own, so the
//! decision that emitted it never waits for it; on the leader the write joins the batcher's
//! next batch. A write that fails (no leader, shutdown) is dropped with a debug line: events
//! are a record for people, not state anything depends on.

use flotilla_raft::{Command, EventKind, NodeId};
use tokio::sync::watch;

use super::Cluster;

impl Cluster {
    /// Records an event, fire-and-forget.
    pub fn record_event(&self, kind: EventKind, subject: String, message: String, node: Option<NodeId>) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let cmd = Command::RecordEvent { kind, subject, message, node, at_ms: 0 };
            if let Err(e) = cluster.write(cmd).await {
                tracing::debug!(error = %e, kind = kind.as_str(), "event not recorded");
            }
        });
    }
}

/// Runs until shutdown: records a `leader` event each time this node becomes the leader of a
/// new term.
pub async fn watch_leadership(cluster: Cluster, mut shutdown: watch::Receiver<bool>) {
    let mut metrics = cluster.raft.metrics();
    let mut recorded_term = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
        // Copied out at once: the borrow must never be held across an await.
        let (leader, term) = {
            let m = metrics.borrow();
            (m.current_leader, m.current_term)
        };
        if leader == Some(cluster.id) && recorded_term != Some(term) {
            recorded_term = Some(term);
            let me = cluster.id;
            cluster.record_event(
                EventKind::Leader,
                format!("node {me}"),
                format!("node {me} became the leader in term {term}"),
                Some(me),
            );
        }
    }
}
