//! Makes this node's sandbox containers match the catalog: an actor for every live sandbox
//! assigned here, none for the others, and no container without a live record.
//!
//! It runs a pass whenever the applied log moves (and every few seconds regardless).
//! Before the first pass it waits until this node has caught up with the leader (a
//! linearizable read): a node that restarts replays its log, and judging containers against
//! a half-replayed catalog would remove sandboxes that are still live.
//!
//! At start, after removing containers no live record accounts for, it removes the `/work`
//! disks no remaining container holds (see [`crate::runtime::disk`]).
//!
//! Each pass also marks `failed` the pending snapshots this node was taking and no longer is
//! (it restarted mid-way): otherwise the sandbox would stay `snapshotting` and refuse every
//! later snapshot. Every minute it deletes the kept logs of sandboxes whose records were
//! compacted away (see [`super::kept_logs`]).

use std::collections::HashSet;
use std::time::Duration;

use flotilla_raft::Sandbox;
use tokio::sync::watch;
use tracing::Instrument;

use super::actor::{self, SandboxMsg};
use super::{owner, SandboxHost};

/// A pass also runs this often with no catalog change, to retry sandboxes whose actor could
/// not start. (A container that vanishes is noticed by its actor's wait.)
const RESYNC_EVERY: Duration = Duration::from_secs(5);
/// How often the kept logs of compacted sandboxes are looked for.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Runs until `shutdown` turns true. Running containers are left running on shutdown: the
/// next start of this node adopts them.
pub async fn run(host: SandboxHost, mut shutdown: watch::Receiver<bool>) {
    while let Err(e) = host.cluster.linearizable().await {
        tracing::debug!(error = %e, "reconciler waiting to catch up with the leader");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
    remove_orphans(&host).await;
    // Only now may the pool fill: its containers would look like orphans to the sweep above.
    tokio::spawn(host.pool.clone().run(shutdown.clone()));
    let mut metrics = host.cluster.raft.metrics();
    let mut forgotten = tokio::time::Instant::now() - FORGET_EVERY;
    loop {
        pass(&host).await;
        if forgotten.elapsed() >= FORGET_EVERY {
            forget_compacted(&host);
            forgotten = tokio::time::Instant::now();
        }
        tokio::select! {
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(RESYNC_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Deletes the kept logs of sandboxes whose records are gone (compacted away).
fn forget_compacted(host: &SandboxHost) {
    let known: HashSet<String> = host.cluster.view.read(|c| c.sandboxes.keys().cloned().collect());
    host.kept_logs.forget_unless(|id| known.contains(id));
}

/// Live sandboxes assigned to this node, by id.
pub(super) fn mine(host: &SandboxHost) -> Vec<Sandbox> {
    let me = host.cluster.id;
    host.cluster.view.read(|c| c.sandboxes.values().filter(|s| s.node == me && !s.state.is_final()).cloned().collect())
}

async fn pass(host: &SandboxHost) {
    if host.is_fenced() {
        // Cut off: start nothing and stop nothing; the fence froze what runs here and sorts
        // it out against the caught-up catalog when it lifts (see `fence`).
        return;
    }
    host.fail_abandoned_snapshots().await;
    let live = mine(host);
    let live_ids: HashSet<&str> = live.iter().map(|s| s.id.as_str()).collect();
    host.forget_ended(&live_ids);
    for id in host.hosted() {
        if !live_ids.contains(id.as_str()) {
            host.notify(&id, SandboxMsg::Stop);
        }
    }
    for record in live {
        if host.begin_start(&record.id) {
            let host = host.clone();
            tokio::spawn(async move { actor::spawn(&host, record).await }.in_current_span());
        }
    }
}

/// Removes sandbox containers that no live record on this node accounts for.
async fn remove_orphans(host: &SandboxHost) {
    let containers = match host.docker.list_named(&host.instance_label()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot list sandbox containers");
            return;
        }
    };
    let live: Vec<(String, u64)> = mine(host).into_iter().map(|s| (s.id, s.generation)).collect();
    // Function replicas share the instance label; their own reconciler looks after them.
    for c in containers.into_iter().filter(|c| !c.labels.contains_key(crate::function::LABEL_REPLICA)) {
        let owner = owner(&c);
        if !owner.as_ref().is_some_and(|o| live.contains(o)) {
            tracing::info!(container = %c.id, name = %c.name, "removing container with no live sandbox record");
            if let Some((sandbox, generation)) = &owner {
                host.kept_logs.keep(&host.docker, &c.id, sandbox, *generation).await;
            }
            if let Err(e) = host.docker.remove(&c.id).await {
                tracing::warn!(container = %c.id, error = %e, "could not remove orphan container");
            }
        }
    }
    // Then the `/work` disks of containers removed while the node was down.
    if let Err(e) = host.docker.sweep_disks(&host.instance_label()).await {
        tracing::warn!(error = %e, "could not sweep leftover sandbox disks");
    }
}
