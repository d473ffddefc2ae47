//! Retention: final records are compacted away, so the catalog (and every Raft snapshot of
//! it) stays bounded however long the cluster runs.
//!
//! **What goes.** [`Command::Compact`](crate::Command::Compact) carries `before_ms` (the leader's
//! clock minus the retention window) and each schedule's `runs_kept`; applying it removes
//! - calls in a final state (succeeded, failed, skipped, cancelled) that finished at or before
//!   `before_ms`;
//! - beyond that, a schedule's final runs other than its newest `runs_kept` (by tick);
//! - final sandboxes (terminated, failed) that finished at or before `before_ms` and that no
//!   snapshot in the catalog was taken from (a snapshot's restore needs its source record);
//! - failed snapshots (never restorable, kept only to say why) created at or before
//!   `before_ms`. A removed snapshot is deleted by `snapshot rm` at once, so none is left to
//!   compact.
//!
//! **What never goes**: a call that is queued or running, or that a schedule still refers to
//! (its active or buffered run: overlap is judged on it); a sandbox that is not final. So
//! nothing a client can still wait on is removed.
//!
//! **Deterministic.** The leader decides the time and the limits and puts them in the command
//! (its worker in the node proposes one periodically); `apply` only compares, so every replica
//! removes the same records at the same index.
//!
//! **Expired, not unknown.** Call ids carry the time they were made (see [`call_id`]). The
//! catalog keeps, per table, the newest such time among the calls it compacted
//! ([`Compacted::calls_made_until_ms`]): a call id that is not in the catalog but was made at
//! or before it *expired*; one made after it never existed. One number, however many calls
//! went. (An id someone made up with an old time also reads as expired; ids from before this
//! scheme carry no time and read as never existed.)

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Catalog;
use crate::command::Response;

/// Final runs a schedule keeps when its spec does not say (`runs_kept`).
pub const DEFAULT_RUNS_KEPT: u32 = 1000;

/// What compaction has removed so far: enough to tell an expired id from an unknown one, and
/// counts for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compacted {
    /// The newest creation time (from the id, Unix ms) of any compacted call; 0 if none.
    pub calls_made_until_ms: i64,
    /// Records removed since the cluster began.
    pub calls: u64,
    pub sandboxes: u64,
    pub snapshots: u64,
}

/// How many records one compaction removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactReport {
    pub calls: u64,
    pub sandboxes: u64,
    pub snapshots: u64,
}

/// A new call id made at `at_ms` (Unix ms): `fc-`, the time as 12 hex digits, then 12 hex
/// digits of `random`. The time lets a lookup of a compacted call say it expired.
pub fn call_id(at_ms: i64, random: u64) -> String {
    format!("fc-{:012x}{:012x}", at_ms.max(0), random & 0xffff_ffff_ffff)
}

/// The creation time inside a call id made by [`call_id`]; `None` for other ids.
pub fn call_id_time(id: &str) -> Option<i64> {
    let hex = id.strip_prefix("fc-")?;
    if hex.len() != 24 {
        return None;
    }
    i64::from_str_radix(&hex[..12], 16).ok()
}

/// What a compaction at `before_ms` would remove.
#[derive(Debug, Default)]
struct Selection {
    calls: BTreeSet<String>,
    sandboxes: Vec<String>,
    snapshots: Vec<String>,
}

impl Selection {
    fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.sandboxes.is_empty() && self.snapshots.is_empty()
    }
}

/// Whether a compaction at `before_ms` would remove anything (the leader proposes one only
/// then, so an idle cluster's log does not grow by one entry per period).
pub(super) fn due(c: &Catalog, before_ms: i64, runs_kept: &BTreeMap<String, u32>) -> bool {
    !select(c, before_ms, runs_kept).is_empty()
}

/// Applies a compaction (see the module doc).
pub(super) fn compact(c: &mut Catalog, before_ms: i64, runs_kept: &BTreeMap<String, u32>) -> Response {
    let Selection { calls: expired, sandboxes: gone, snapshots: failed } = select(c, before_ms, runs_kept);
    let mut report = CompactReport::default();
    for id in expired {
        if let Some(call) = c.calls.remove(&id) {
            if let Some(rid) = &call.request_id {
                c.call_requests.remove(rid);
            }
            if let Some(made) = call_id_time(&id) {
                c.compacted.calls_made_until_ms = c.compacted.calls_made_until_ms.max(made);
            }
            report.calls += 1;
        }
    }
    for id in gone {
        if let Some(sb) = c.sandboxes.remove(&id) {
            if let Some(rid) = &sb.request_id {
                c.sandbox_requests.remove(rid);
            }
            report.sandboxes += 1;
        }
    }
    for id in failed {
        c.snapshots.remove(&id);
        report.snapshots += 1;
    }
    c.compacted.calls += report.calls;
    c.compacted.sandboxes += report.sandboxes;
    c.compacted.snapshots += report.snapshots;
    Response::Compacted(report)
}

/// The records a compaction at `before_ms` removes (see the module doc).
fn select(c: &Catalog, before_ms: i64, runs_kept: &BTreeMap<String, u32>) -> Selection {
    let referenced: BTreeSet<&String> =
        c.schedules.iter().flat_map(|s| s.active_call.iter().chain(s.buffered_call.iter())).collect();

    // Calls: final ones past the window, and each schedule's runs beyond its newest runs_kept.
    let mut runs: BTreeMap<String, Vec<(i64, &String)>> = BTreeMap::new();
    let mut expired: BTreeSet<String> = BTreeSet::new();
    for call in c.calls.values().filter(|c| c.state.is_final()) {
        let held = referenced.contains(&call.id);
        if !held && call.finished_at_ms.is_some_and(|t| t <= before_ms) {
            expired.insert(call.id.clone());
        } else if let Some(tick) = call.scheduled_at_ms {
            runs.entry(super::schedule::key(&call.app, &call.function)).or_default().push((tick, &call.id));
        }
    }
    for (key, mut list) in runs {
        let kept = runs_kept.get(&key).copied().unwrap_or(DEFAULT_RUNS_KEPT) as usize;
        if list.len() > kept {
            // Oldest first; a run a schedule still refers to stays and counts as kept.
            list.sort();
            let excess = list.len() - kept;
            let oldest = list.into_iter().filter(|(_, id)| !referenced.contains(id)).take(excess);
            expired.extend(oldest.map(|(_, id)| id.clone()));
        }
    }

    // Sandboxes: final ones past the window that no snapshot was taken from.
    let sources: BTreeSet<&String> = c.snapshots.values().map(|s| &s.sandbox).collect();
    let gone: Vec<String> = c
        .sandboxes
        .values()
        .filter(|s| s.state.is_final() && s.finished_at_ms.unwrap_or(s.created_at_ms) <= before_ms)
        .filter(|s| !sources.contains(&s.id))
        .map(|s| s.id.clone())
        .collect();

    // Failed snapshots past the window.
    let failed: Vec<String> = c
        .snapshots
        .values()
        .filter(|s| s.state == super::SnapshotState::Failed && s.created_at_ms <= before_ms)
        .map(|s| s.id.clone())
        .collect();
    Selection { calls: expired, sandboxes: gone, snapshots: failed }
}

#[cfg(test)]
mod tests;
