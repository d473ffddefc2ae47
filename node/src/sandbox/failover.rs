//! Failover, run by the leader only: a node that has been silent for longer than the fencing
//! lease (plus a margin) has fenced itself by then if it is alive at all, so its sandboxes
//! that asked for `--restore-on-failure` and have a ready snapshot are moved to a live node
//! as their next generation (`RestoreSandbox`: same id, state `restoring`), and that node's
//! reconciler restores them. Snapshots the dead node was still taking are dropped.
//!
//! A leader that just took over waits the same time before it judges anyone: it has only
//! just started counting who answers. So does a leader whose own checks stalled (the process
//! was stopped, or starved of CPU): it heard nobody meanwhile because it was not listening,
//! and judged at once it moved a healthy node's sandboxes (found by the chaos run with seed 25:
//! a leader SIGSTOPped for 6 s, resumed before anyone replaced it, moved node 1's sandbox).

use std::time::{Duration, Instant};

use flotilla_raft::catalog::latest_ready;
use flotilla_raft::{Command, SnapshotState};
use tokio::sync::watch;

use crate::cluster::Cluster;

/// How often the leader looks for dead nodes' sandboxes.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Added to the lease before a silent node's sandboxes are moved: covers the difference
/// between when the node and the leader last heard each other.
const MARGIN: Duration = Duration::from_millis(1000);
/// A gap this long between two checks means this process stalled: start counting again.
const STALL: Duration = Duration::from_millis(1000);

/// Runs until shutdown; acts only while this node leads.
pub async fn run(cluster: Cluster, lease: Duration, mut shutdown: watch::Receiver<bool>) {
    let silent_for = lease + MARGIN;
    let mut leading_since: Option<Instant> = None;
    let mut last_check = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let stalled = last_check.elapsed() > CHECK_EVERY + STALL;
        last_check = Instant::now();
        if stalled || cluster.known_leader().map(|(id, _)| id) != Some(cluster.id) {
            leading_since = None;
            continue;
        }
        if leading_since.get_or_insert_with(Instant::now).elapsed() < silent_for {
            continue;
        }
        let dead = |node| node != cluster.id && !cluster.liveness.seen_within(node, silent_for);
        let (moves, abandoned) = cluster.view.read(|c| {
            let moves: Vec<_> = c
                .sandboxes
                .values()
                .filter(|s| !s.state.is_final() && s.spec.restore_on_failure && dead(s.node))
                .filter_map(|s| latest_ready(&c.snapshots, &s.id).map(|snap| (s.clone(), snap.id.clone())))
                .collect();
            let abandoned: Vec<String> = c
                .snapshots
                .values()
                .filter(|s| s.state == SnapshotState::Pending && dead(s.node))
                .map(|s| s.id.clone())
                .collect();
            (moves, abandoned)
        });
        for id in abandoned {
            let _ = cluster.write(Command::SnapshotFailed { id }).await;
        }
        for (sb, snapshot) in moves {
            let started = Instant::now();
            let _placing = cluster.placement_lock.lock().await;
            // A restored sandbox gets no GPUs on its new node (its leases were on the old one).
            let req = crate::placement::Request { cpu: sb.spec.cpu, memory_mib: sb.spec.memory_mib, gpu: None };
            let node = match cluster.place(req).await {
                Ok(placed) => placed.node,
                Err(e) => {
                    tracing::warn!(sandbox = %sb.id, error = %e, "no live node to restore the sandbox on yet");
                    continue;
                }
            };
            let cmd = Command::RestoreSandbox { id: sb.id.clone(), node, snapshot: snapshot.clone(), at_ms: 0 };
            match cluster.write(cmd).await {
                Ok(_) => tracing::warn!(
                    sandbox = %sb.id, from = sb.node, to = node, %snapshot, generation = sb.generation + 1,
                    took_ms = started.elapsed().as_millis() as u64, "node is down: sandbox moved, restoring from its snapshot"
                ),
                Err(e) => tracing::warn!(sandbox = %sb.id, error = %e, "could not move the sandbox"),
            }
        }
    }
}
