//! Self-fencing: a node that has lost contact with the leader or with a majority of the
//! voters for its lease stops serving its sandboxes, so that when the leader restores them
//! elsewhere (which it does only after it has not heard from the node for longer than the
//! lease, see [`super::failover`]) there are never two live copies that both accept work.
//!
//! Fenced, the node freezes its sandbox containers (`docker pause`: no process runs, nothing
//! is lost), reports nothing (the catalog is the leader's to change), starts none, answers
//! exec and file calls for its sandboxes with "unavailable", and takes no snapshot of them.
//! The fence lifts once the node has contact again *and* has caught up with the leader's
//! catalog (a linearizable read): only then does it know which sandboxes are still its own. Those are thawed where they were;
//! containers of sandboxes that moved meanwhile are removed. Freezing rather than removing
//! means a fence that ends without a failover (a slow election, a short cut) costs the
//! sandbox a pause, not its processes and the files written since its last snapshot.
//!
//! What counts as contact (see [`has_quorum`]) mirrors how the leader judges: within the
//! lease, two-way probes with a majority of voters *and* with a node that said it was the
//! leader when it probed and answered. A node that does not know the leader (an election
//! is under way, or it is cut off from the leader and keeps standing for election) has no
//! such contact: found by the chaos run with seed 1795687867283975238, where a node cut off
//! from the leader alone still reached the third node, counted a majority, and kept
//! answering exec for 2 s after the leader had moved its sandbox.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::actor::SandboxMsg;
use super::SandboxHost;

/// How often reachability is judged.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Whether this node had, within `lease`, two-way contact with a majority of the voters
/// (itself included) and with a sitting leader (itself, or a member whose probe and answer
/// both said it led). A node that is not a voter (joining, learner) does not judge.
pub fn has_quorum(host: &SandboxHost, lease: Duration) -> bool {
    let g = host.cluster.group();
    let me = host.cluster.id;
    if !g.voters.contains(&me) {
        return true;
    }
    let live = &host.cluster.liveness;
    let reached = g.voters.iter().filter(|&&v| v == me || live.two_way_within(v, lease)).count();
    let leader_ok = g.leader == Some(me) || live.leader_contact_within(lease);
    reached * 2 > g.voters.len() && leader_ok
}

/// Runs until shutdown: fences as soon as contact is older than `lease`, lifts the fence
/// once contact is back and the catalog has caught up.
pub async fn run(host: SandboxHost, lease: Duration, mut shutdown: watch::Receiver<bool>) {
    // A node starts fenced (see `SandboxHost::new`): after a restart it may have been judged
    // down and its sandboxes moved, so it serves nothing until it has caught up.
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if !has_quorum(&host, lease) {
            if !host.fenced.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    lease_ms = lease.as_millis() as u64,
                    "no contact with the leader and a majority within the lease: freezing this node's sandboxes"
                );
                for id in host.hosted() {
                    host.notify(&id, SandboxMsg::Fence);
                }
            }
        } else if host.is_fenced() {
            match host.cluster.linearizable().await {
                Ok(()) => lift(&host),
                Err(e) => tracing::debug!(error = %e, "fence stays until this node has caught up with the leader"),
            }
        }
    }
}

/// Lifts the fence: thaws the sandboxes the (caught-up) catalog still assigns here and
/// removes the others; the reconciler starts any that have no actor yet.
fn lift(host: &SandboxHost) {
    host.fenced.store(false, Ordering::SeqCst);
    let mine: std::collections::HashSet<String> = super::reconciler::mine(host).into_iter().map(|s| s.id).collect();
    for id in host.hosted() {
        let msg = if mine.contains(&id) { SandboxMsg::Thaw } else { SandboxMsg::Stop };
        host.notify(&id, msg);
    }
    tracing::warn!("contact with the leader and a majority again, catalog caught up: fence lifted");
}
