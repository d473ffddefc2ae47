//! Failover, run by the leader only: a node that has been silent for longer than the fencing
//! lease (plus a margin) has fenced itself by then if it is alive at all, so its sandboxes
//! that asked for `--restore-on-failure` and have a ready snapshot are moved to a live node
//! as their next generation (`RestoreSandbox`: same id, state `restoring`), and that node's
//! reconciler restores them. Snapshots the dead node was still taking become `failed`, with
//! that as the reason.
//!
//! A leader that just took over waits the same time before it judges anyone: it has only
//! just started counting who answers. So does a leader whose own checks stalled (the process
//! was stopped, or starved of CPU): it heard nobody meanwhile because it was not listening,
//! and judged at once it moved a healthy node's sandboxes (found by the chaos run with seed 25:
//! a leader SIGSTOPped for 6 s, resumed before anyone replaced it, moved node 1's sandbox).
//!
//! The decisions are pure and tested by golden scripts without a cluster
//! (`golden/failover/`, see [`super::golden`]): [`Watch`] says when this leader may judge,
//! [`plan`] what to move and which snapshots to fail, over plain [`Observed`] data; [`run`]
//! only gathers that data and carries the plan out.

use std::time::{Duration, Instant};

use flotilla_raft::catalog::{latest_ready, Catalog};
use flotilla_raft::{Command, NodeId, SnapshotState};
use tokio::sync::watch;

use crate::cluster::Cluster;

/// How often the leader looks for dead nodes' sandboxes.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Added to the lease before a silent node's sandboxes are moved: covers the difference
/// between when the node and the leader last heard each other.
const MARGIN: Duration = Duration::from_millis(1000);
/// A gap this long between two checks means this process stalled: start counting again.
const STALL: Duration = Duration::from_millis(1000);

/// When this node may judge others silent: it has led, without a stall of its own, for as
/// long as a node must be silent before its sandboxes move.
#[derive(Debug)]
pub struct Watch {
    silent_for: Duration,
    leading_since: Option<Instant>,
    last_check: Instant,
}

impl Watch {
    pub fn new(lease: Duration, now: Instant) -> Self {
        Self { silent_for: lease + MARGIN, leading_since: None, last_check: now }
    }

    /// How long a node must have been silent for its sandboxes to move.
    pub fn silent_for(&self) -> Duration {
        self.silent_for
    }

    /// One check at `now`, `leading` or not: whether this node may judge now.
    pub fn may_judge(&mut self, now: Instant, leading: bool) -> bool {
        let stalled = now.saturating_duration_since(self.last_check) > CHECK_EVERY + STALL;
        self.last_check = now;
        if stalled || !leading {
            self.leading_since = None;
            return false;
        }
        now.saturating_duration_since(*self.leading_since.get_or_insert(now)) >= self.silent_for
    }
}

/// A live sandbox as failover sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub node: NodeId,
    pub generation: u64,
    pub cpu: f64,
    pub memory_mib: u64,
    pub restore_on_failure: bool,
    /// Its latest ready snapshot, if any.
    pub ready_snapshot: Option<String>,
}

/// What failover reads from the catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Sandboxes not in a final state.
    pub sandboxes: Vec<Candidate>,
    /// Pending snapshots and the node taking each.
    pub pending: Vec<(String, NodeId)>,
}

impl Observed {
    pub fn of(c: &Catalog) -> Self {
        let sandboxes = c
            .sandboxes
            .values()
            .filter(|s| !s.state.is_final())
            .map(|s| Candidate {
                id: s.id.clone(),
                node: s.node,
                generation: s.generation,
                cpu: s.spec.cpu,
                memory_mib: s.spec.memory_mib,
                restore_on_failure: s.spec.restore_on_failure,
                ready_snapshot: latest_ready(&c.snapshots, &s.id).map(|snap| snap.id.clone()),
            })
            .collect();
        let pending = c
            .snapshots
            .values()
            .filter(|s| s.state == SnapshotState::Pending)
            .map(|s| (s.id.clone(), s.node))
            .collect();
        Self { sandboxes, pending }
    }
}

/// What one judgement decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Sandboxes to restore elsewhere, each with the snapshot to restore.
    pub moves: Vec<(Candidate, String)>,
    /// Snapshots a dead node was taking: they become `failed`, with the reason.
    pub abandoned: Vec<(String, String)>,
}

/// Judges `observed` given which nodes are `dead`: the sandboxes of dead nodes that asked to
/// be restored and have a ready snapshot move; the snapshots dead nodes were taking fail.
pub fn plan(observed: &Observed, dead: impl Fn(NodeId) -> bool) -> Plan {
    let moves = observed
        .sandboxes
        .iter()
        .filter(|s| s.restore_on_failure && dead(s.node))
        .filter_map(|s| s.ready_snapshot.clone().map(|snap| (s.clone(), snap)))
        .collect();
    let abandoned = observed
        .pending
        .iter()
        .filter(|(_, node)| dead(*node))
        .map(|(id, node)| (id.clone(), format!("node {node} went silent while taking it")))
        .collect();
    Plan { moves, abandoned }
}

/// Runs until shutdown; acts only while this node leads.
pub async fn run(cluster: Cluster, lease: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut watch = Watch::new(lease, Instant::now());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let leading = cluster.known_leader().map(|(id, _)| id) == Some(cluster.id);
        if !watch.may_judge(Instant::now(), leading) {
            continue;
        }
        let silent_for = watch.silent_for();
        let dead = |node| node != cluster.id && !cluster.liveness.seen_within(node, silent_for);
        let plan = cluster.view.read(|c| plan(&Observed::of(c), dead));
        for (id, reason) in plan.abandoned {
            let _ = cluster.write(Command::SnapshotFailed { id, reason: Some(reason) }).await;
        }
        for (sb, snapshot) in plan.moves {
            let started = Instant::now();
            let _placing = cluster.placement_lock.lock().await;
            // A restored sandbox gets no GPUs on its new node (its leases were on the old one).
            let req = crate::placement::Request { cpu: sb.cpu, memory_mib: sb.memory_mib, gpu: None };
            let node = match cluster.place(req, None).await {
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
