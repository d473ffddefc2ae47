//! Self-fencing: a node that cannot reach a quorum of voters for longer than its lease stops
//! serving its sandboxes, so that when the leader restores them elsewhere (which it does only
//! after the node has been silent for longer than the lease, see [`super::failover`]) there
//! are never two live copies that both accept work.
//!
//! Fenced, the node removes its sandbox containers (without reporting anything: the catalog
//! is the leader's to change), starts none, and answers exec and file calls for its
//! sandboxes with "unavailable". When it reaches a quorum again it lifts the fence, and the
//! reconciler runs only what the catalog still assigns to it; containers of sandboxes that
//! moved are gone already, and a restart's orphan sweep removes any left behind.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::actor::SandboxMsg;
use super::SandboxHost;

/// How often reachability is judged.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Whether this node, with the peers it heard from within `lease`, is part of a majority of
/// the voters. A node that is not a voter (joining, learner) does not judge.
pub fn has_quorum(host: &SandboxHost, lease: Duration) -> bool {
    let g = host.cluster.group();
    let me = host.cluster.id;
    if !g.voters.contains(&me) {
        return true;
    }
    let reached = g.voters.iter().filter(|&&v| v == me || host.cluster.liveness.seen_within(v, lease)).count();
    reached * 2 > g.voters.len()
}

/// Runs until shutdown: fences after `lease` without a quorum, unfences when it is back.
pub async fn run(host: SandboxHost, lease: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut last_quorum = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if has_quorum(&host, lease) {
            last_quorum = Instant::now();
            if host.fenced.swap(false, Ordering::SeqCst) {
                tracing::warn!("quorum reachable again: fence lifted");
            }
        } else if last_quorum.elapsed() >= lease && !host.fenced.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                lease_ms = lease.as_millis() as u64,
                "no quorum for longer than the lease: fencing this node's sandboxes"
            );
            for id in host.hosted() {
                host.notify(&id, SandboxMsg::Stop);
            }
        }
    }
}
