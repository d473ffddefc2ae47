//! The leader's retention worker: proposes [`Command::Compact`] periodically, so final calls,
//! schedule runs, ended sandboxes and failed snapshots leave the catalog once the retention
//! window (`[retention] final_records_s`, `--retention-s`) has passed, and each schedule keeps
//! at most its spec's `runs_kept` final runs.
//!
//! The worker runs on every node and acts only while its node leads. It decides nothing the
//! replicas could disagree on: the leader stamps the command with its clock, and the command
//! carries the window and each schedule's `runs_kept` (read from the app specs here, since the
//! catalog treats specs as opaque), so `apply` removes the same records everywhere
//! (`flotilla_raft::catalog::retention`). The leader's setting is the one that applies.
//!
//! It runs every quarter of the window, between 1 s and 60 s, and proposes a compaction only
//! when one would remove something (checked against the catalog with the leader's clock).

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla::AppSpec;
use flotilla_raft::catalog::{SnapshotState, DEFAULT_RUNS_KEPT};
use flotilla_raft::{Catalog, Command, Response};
use tokio::sync::watch;

use super::Cluster;

/// Shortest and longest time between two compactions.
const EVERY_MIN: Duration = Duration::from_secs(1);
const EVERY_MAX: Duration = Duration::from_secs(60);

/// Proposes compactions while this node leads, until `shutdown`.
pub async fn run(cluster: Cluster, window: Duration, mut shutdown: watch::Receiver<bool>) {
    let every = (window / 4).clamp(EVERY_MIN, EVERY_MAX);
    let retention_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if cluster.known_leader().map(|(id, _)| id) != Some(cluster.id) {
            continue;
        }
        let Some(runs_kept) = cluster.view.read(plan) else { continue };
        // Only when something is due: an idle cluster's log does not grow by an entry a period.
        let now_ms = chrono::Utc::now().timestamp_millis();
        if !cluster.view.read(|c| c.compaction_due(retention_ms, &runs_kept, now_ms)) {
            continue;
        }
        match cluster.write(Command::Compact { retention_ms, runs_kept, at_ms: 0 }).await {
            Ok(Response::Compacted(r)) if r.calls + r.sandboxes + r.snapshots > 0 => tracing::info!(
                calls = r.calls,
                sandboxes = r.sandboxes,
                snapshots = r.snapshots,
                "compacted final records past the retention window"
            ),
            Ok(_) => {}
            // Leadership moved, or no quorum: the next leader's worker carries on.
            Err(e) => tracing::debug!(error = %e, "compaction not committed"),
        }
    }
}

/// Each schedule's `runs_kept` where it is not the default, or `None` when the catalog holds
/// no final record, so there is nothing to compact.
fn plan(c: &Catalog) -> Option<BTreeMap<String, u32>> {
    let any_final = c.calls.values().any(|x| x.state.is_final())
        || c.sandboxes.values().any(|x| x.state.is_final())
        || c.snapshots.values().any(|x| x.state == SnapshotState::Failed);
    if !any_final {
        return None;
    }
    let mut specs: BTreeMap<&str, Option<AppSpec>> = BTreeMap::new();
    let mut runs_kept = BTreeMap::new();
    for s in c.schedules.iter() {
        let spec = specs
            .entry(s.app.as_str())
            .or_insert_with(|| c.apps.get(&s.app).and_then(|a| serde_json::from_str(&a.spec_json).ok()));
        let kept = spec.as_ref().and_then(|spec| spec.functions.get(&s.function)).map(|f| f.runs_kept);
        if let Some(kept) = kept.filter(|k| *k != DEFAULT_RUNS_KEPT) {
            runs_kept.insert(s.key(), kept);
        }
    }
    Some(runs_kept)
}
