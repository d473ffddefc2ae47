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

/// Whether this node, with the peers it had two-way contact with within `lease`, is part of a
/// majority of the voters, and has two-way contact with the leader it knows (the node that
/// would move its sandboxes, judging by its own probes; one-way loss, or a leader whose
/// channel to a restarted node has not reconnected, fails those probes and must fence this
/// node too). A node that is not a voter (joining, learner) does not judge.
pub fn has_quorum(host: &SandboxHost, lease: Duration) -> bool {
    let g = host.cluster.group();
    let me = host.cluster.id;
    if !g.voters.contains(&me) {
        return true;
    }
    let live = &host.cluster.liveness;
    let reached = g.voters.iter().filter(|&&v| v == me || live.two_way_within(v, lease)).count();
    let leader_ok = g.leader.is_none_or(|l| l == me || live.two_way_within(l, lease));
    reached * 2 > g.voters.len() && leader_ok
}

/// Runs until shutdown: fences after `lease` without a quorum, unfences when it is back.
pub async fn run(host: SandboxHost, lease: Duration, mut shutdown: watch::Receiver<bool>) {
    // A node starts fenced (see `SandboxHost::new`): after a restart it may have been judged
    // down and its sandboxes moved, so it serves nothing until it has a quorum again.
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
