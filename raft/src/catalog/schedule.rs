//! Schedules: functions that run on their own, each tick exactly once, whatever fails.
//!
//! # The exactly-once protocol
//!
//! A tick is identified by `(schedule, scheduled_at)`. Only the leader's Scheduler proposes
//! [`Command::Fire`](crate::Command::Fire) for a tick, and [`fire`] accepts it only when
//! `scheduled_at` equals the schedule's `next_fire_at_ms` (and the schedule's `revision` is
//! the one the leader computed from). In the same apply it records the tick's call and moves
//! `next_fire_at_ms` strictly forward to the tick after, which the leader computed with the
//! SDK's cron/period code: the catalog cannot parse cron, it only compares and records. So:
//!
//! - a tick is committed at most once: a second Fire for it (a retry, the old leader's
//!   proposal, a new leader that had not yet applied the first) finds `next_fire_at_ms` moved
//!   on and is rejected as stale, changing nothing;
//! - ticks are committed in order and none is passed over: the only way past a tick is a Fire
//!   for it, which leaves a call record, queued or `skipped` with the reason;
//! - a leader cut off from the quorum commits nothing, so it fires nothing: execution starts
//!   only from applied (committed) call records.
//!
//! # Policies
//!
//! **Overlap** is judged here, on committed call states, not by the leader: the schedule's
//! `active_call` is its last run that was not skipped. While it is queued or running, a new
//! tick is run anyway (`allow`), recorded as skipped (`skip`), or kept as the one buffered run
//! (`buffer_one`): a queued call that cannot be claimed (`not_before_ms` is `i64::MAX`) until
//! the active call ends, when [`call_ended`] releases it. A tick that finds a run already
//! buffered is skipped. **Catch-up** needs the clock, so the leader decides it: a tick it
//! reaches late is fired with `skip: Some(reason)` when the policy drops it.
//!
//! # Lifecycle
//!
//! Schedules enter with the deploy that declares them ([`deploy`], in the same entry as the
//! app's new version), so a redeploy is atomic. A schedule whose spec is unchanged keeps its
//! anchor, next fire, pause and active run; a changed spec takes the deploy's values and a new
//! revision. A function whose schedule is gone, and every schedule of a stopped app, is removed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::call::{self, Call, CallState};
use crate::command::{Rejection, Response};
use crate::NodeId;

/// What a schedule does with a tick while its previous run is still queued or running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overlap {
    #[default]
    Allow,
    Skip,
    BufferOne,
}

/// What the leader does with ticks it reaches late (after an outage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatchUp {
    #[default]
    None,
    Latest,
    All,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
        }
    }
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }
}

/// A schedule as a deploy declares it, computed by the node from the validated app spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub function: String,
    /// The SDK's `Schedule` in JSON (cron with zone, or period with anchor); opaque here.
    pub spec_json: String,
    /// The anchor of a period schedule (Unix ms): its own, or the deploy time.
    pub anchor_ms: i64,
    /// The first tick after the deploy (Unix ms); `None` for a schedule that never fires.
    pub first_fire_at_ms: Option<i64>,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    /// How late a tick may be and still be caught up, seconds.
    pub catch_up_window_s: u64,
}

/// A schedule as the catalog records it. Keyed by `app/function`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub app: String,
    pub function: String,
    pub spec_json: String,
    pub anchor_ms: i64,
    /// Changes whenever `next_fire_at_ms` is set other than by a Fire (a changed spec, a
    /// resume); a Fire computed from an older revision is stale.
    pub revision: u64,
    /// The tick the next accepted Fire must name (Unix ms); `None`: it never fires again.
    pub next_fire_at_ms: Option<i64>,
    /// The last tick committed (fired or skipped), Unix ms.
    pub last_fired_at_ms: Option<i64>,
    /// The leader that committed it.
    pub last_fired_by: Option<NodeId>,
    /// The last run that was not skipped: what overlap is judged on.
    pub active_call: Option<String>,
    /// The buffered run (`buffer_one`), waiting for `active_call` to end.
    pub buffered_call: Option<String>,
    pub paused: bool,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub catch_up_window_s: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl ScheduleRecord {
    pub fn key(&self) -> String {
        key(&self.app, &self.function)
    }
}

/// The key of `app`'s `function`'s schedule.
pub fn key(app: &str, function: &str) -> String {
    format!("{app}/{function}")
}

/// Every schedule, plus an index of the unpaused ones by next tick so the leader finds what
/// is due without scanning (100k schedules fire 1000 ticks a second).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedules {
    by_key: BTreeMap<String, ScheduleRecord>,
    /// `(next_fire_at_ms, key)` of every unpaused schedule that fires again.
    due: BTreeSet<(i64, String)>,
}

impl Schedules {
    pub fn get(&self, key: &str) -> Option<&ScheduleRecord> {
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// All schedules, by key.
    pub fn iter(&self) -> impl Iterator<Item = &ScheduleRecord> {
        self.by_key.values()
    }

    /// Unpaused schedules whose next tick is at or before `until_ms`, earliest first.
    pub fn due(&self, until_ms: i64) -> impl Iterator<Item = &ScheduleRecord> {
        self.due.iter().take_while(move |(at, _)| *at <= until_ms).filter_map(|(_, k)| self.by_key.get(k))
    }

    /// The earliest next tick of any unpaused schedule.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.due.first().map(|(at, _)| *at)
    }

    fn insert(&mut self, s: ScheduleRecord) {
        self.remove(&s.key());
        if let (false, Some(at)) = (s.paused, s.next_fire_at_ms) {
            self.due.insert((at, s.key()));
        }
        self.by_key.insert(s.key(), s);
    }

    fn remove(&mut self, key: &str) -> Option<ScheduleRecord> {
        let s = self.by_key.remove(key)?;
        if let Some(at) = s.next_fire_at_ms {
            self.due.remove(&(at, key.to_string()));
        }
        Some(s)
    }

    /// The keys of `app`'s schedules. App names cannot contain `/`, and `0` follows `/`.
    fn keys_of(&self, app: &str) -> Vec<String> {
        self.by_key.range(format!("{app}/")..format!("{app}0")).map(|(k, _)| k.clone()).collect()
    }
}

/// Checks a deploy's schedules against its function list before anything is applied.
pub(super) fn check(functions: &[String], specs: &[ScheduleSpec]) -> Result<(), Rejection> {
    let mut seen = BTreeSet::new();
    for s in specs {
        if !functions.contains(&s.function) {
            return Err(rejection("schedules", format!("function {:?} is not in the app", s.function)));
        }
        if !seen.insert(&s.function) {
            return Err(rejection("schedules", format!("function {:?} has two schedules", s.function)));
        }
    }
    Ok(())
}

/// Installs a deploy's schedules for `app` (after the app's new version was accepted).
pub(super) fn deploy(
    schedules: &mut Schedules,
    calls: &mut BTreeMap<String, Call>,
    app: &str,
    specs: Vec<ScheduleSpec>,
    at_ms: i64,
) {
    let declared: BTreeSet<String> = specs.iter().map(|s| key(app, &s.function)).collect();
    for k in schedules.keys_of(app) {
        if !declared.contains(&k) {
            drop_schedule(schedules, calls, &k, "its schedule was removed by a redeploy", at_ms);
        }
    }
    for spec in specs {
        let record = match schedules.get(&key(app, &spec.function)) {
            Some(old) => {
                let mut s = old.clone();
                if s.spec_json != spec.spec_json {
                    s.spec_json = spec.spec_json;
                    s.anchor_ms = spec.anchor_ms;
                    s.next_fire_at_ms = spec.first_fire_at_ms;
                    s.revision += 1;
                }
                s.overlap = spec.overlap;
                s.catch_up = spec.catch_up;
                s.catch_up_window_s = spec.catch_up_window_s;
                s.updated_at_ms = at_ms;
                s
            }
            None => ScheduleRecord {
                app: app.to_string(),
                function: spec.function,
                spec_json: spec.spec_json,
                anchor_ms: spec.anchor_ms,
                revision: 1,
                next_fire_at_ms: spec.first_fire_at_ms,
                last_fired_at_ms: None,
                last_fired_by: None,
                active_call: None,
                buffered_call: None,
                paused: false,
                overlap: spec.overlap,
                catch_up: spec.catch_up,
                catch_up_window_s: spec.catch_up_window_s,
                created_at_ms: at_ms,
                updated_at_ms: at_ms,
            },
        };
        schedules.insert(record);
    }
}

/// Removes every schedule of a stopped or removed app; `why` is recorded on a dropped buffered run.
pub(super) fn remove_app(
    schedules: &mut Schedules,
    calls: &mut BTreeMap<String, Call>,
    app: &str,
    why: &str,
    at_ms: i64,
) {
    for k in schedules.keys_of(app) {
        drop_schedule(schedules, calls, &k, why, at_ms);
    }
}

/// Removes a schedule; its buffered run, never started, ends as skipped.
fn drop_schedule(schedules: &mut Schedules, calls: &mut BTreeMap<String, Call>, key: &str, why: &str, at_ms: i64) {
    let Some(s) = schedules.remove(key) else { return };
    if let Some(c) = s.buffered_call.and_then(|id| calls.get_mut(&id)) {
        if !c.state.is_final() {
            skip(c, format!("buffered run dropped: {why}"), at_ms);
        }
    }
}

/// The fields of a `Fire` command.
#[derive(Debug)]
pub(super) struct Fire {
    pub schedule: String,
    pub revision: u64,
    pub scheduled_at_ms: i64,
    pub next_fire_at_ms: Option<i64>,
    pub call_id: String,
    pub node: NodeId,
    pub skip: Option<String>,
    pub at_ms: i64,
}

/// Commits one tick: its call record and the schedule's advance, or nothing (stale).
pub(super) fn fire(schedules: &mut Schedules, calls: &mut BTreeMap<String, Call>, f: Fire) -> Response {
    let Some(s) = schedules.get(&f.schedule) else {
        return Response::Rejected(Rejection::ScheduleNotFound(f.schedule));
    };
    if s.paused {
        return stale(&f, "the schedule is paused");
    }
    if s.revision != f.revision {
        return stale(&f, &format!("the schedule is at revision {}, not {}", s.revision, f.revision));
    }
    if s.next_fire_at_ms != Some(f.scheduled_at_ms) {
        let next = s.next_fire_at_ms.map_or("none".to_string(), |n| n.to_string());
        return stale(&f, &format!("the next tick is {next}"));
    }
    if f.next_fire_at_ms.is_some_and(|n| n <= f.scheduled_at_ms) {
        return invalid("next_fire_at_ms", "must be after scheduled_at_ms");
    }
    if calls.contains_key(&f.call_id) {
        return Response::Rejected(Rejection::Conflict(format!("call {} exists", f.call_id)));
    }
    let mut s = s.clone();
    // A run that ended by a path that did not release the buffered run frees it now.
    if !live(calls, &s.active_call) {
        release_buffered(&mut s, calls, f.at_ms);
    }
    let mut c =
        Call::new(f.call_id, s.app.clone(), s.function.clone(), Vec::new(), Some(f.scheduled_at_ms), None, f.at_ms);
    let live = |id: &Option<String>| live(calls, id);
    match (f.skip, s.overlap) {
        (Some(reason), _) => skip(&mut c, reason, f.at_ms),
        (None, Overlap::Allow) => s.active_call = Some(c.id.clone()),
        (None, _) if !live(&s.active_call) => s.active_call = Some(c.id.clone()),
        (None, Overlap::Skip) => skip(
            &mut c,
            format!("overlap=skip: run {} is still live", s.active_call.as_deref().unwrap_or("?")),
            f.at_ms,
        ),
        (None, Overlap::BufferOne) if live(&s.buffered_call) => skip(
            &mut c,
            format!("overlap=buffer_one: run {} is already buffered", s.buffered_call.as_deref().unwrap_or("?")),
            f.at_ms,
        ),
        (None, Overlap::BufferOne) => {
            c.not_before_ms = i64::MAX;
            c.error = Some(format!("buffered until run {} ends", s.active_call.as_deref().unwrap_or("?")));
            s.buffered_call = Some(c.id.clone());
        }
    }
    let resp = call::insert(calls, c);
    if matches!(resp, Response::Call(_)) {
        s.next_fire_at_ms = f.next_fire_at_ms;
        s.last_fired_at_ms = Some(f.scheduled_at_ms);
        s.last_fired_by = Some(f.node);
        schedules.insert(s);
    }
    resp
}

/// Releases a schedule's buffered run when the run it waited for has ended; forgets a buffered
/// run that was itself cancelled. Called after every change that can end a call.
pub(super) fn call_ended(schedules: &mut Schedules, calls: &mut BTreeMap<String, Call>, id: &str, at_ms: i64) {
    let Some(c) = calls.get(id).filter(|c| c.state.is_final()) else { return };
    let Some(s) = schedules.get(&key(&c.app, &c.function)) else { return };
    let mut s = s.clone();
    if s.buffered_call.as_deref() == Some(id) {
        s.buffered_call = None;
    } else if s.active_call.as_deref() == Some(id) && s.buffered_call.is_some() {
        release_buffered(&mut s, calls, at_ms);
    } else {
        return;
    }
    schedules.insert(s);
}

/// Whether the call `id` names is queued or running.
fn live(calls: &BTreeMap<String, Call>, id: &Option<String>) -> bool {
    id.as_ref().and_then(|id| calls.get(id)).is_some_and(|c| !c.state.is_final())
}

/// Makes `s`'s buffered run claimable from `at_ms` on and its active run.
fn release_buffered(s: &mut ScheduleRecord, calls: &mut BTreeMap<String, Call>, at_ms: i64) {
    let Some(next) = s.buffered_call.take() else { return };
    if let Some(b) = calls.get_mut(&next).filter(|b| !b.state.is_final()) {
        b.not_before_ms = at_ms;
        b.error = None;
        s.active_call = Some(next);
    }
}

/// Pauses a schedule: no tick fires until it is resumed. Pausing twice is a no-op.
pub(super) fn pause(schedules: &mut Schedules, key: &str, at_ms: i64) -> Response {
    let Some(s) = schedules.get(key) else {
        return Response::Rejected(Rejection::ScheduleNotFound(key.to_string()));
    };
    let mut s = s.clone();
    if !s.paused {
        s.paused = true;
        s.updated_at_ms = at_ms;
        schedules.insert(s.clone());
    }
    Response::Schedule(s)
}

/// Resumes a paused schedule from `next_fire_at_ms`, the first tick after the resume (ticks
/// while paused are not fired). Resuming a running schedule is a no-op.
pub(super) fn resume(schedules: &mut Schedules, key: &str, next_fire_at_ms: Option<i64>, at_ms: i64) -> Response {
    let Some(s) = schedules.get(key) else {
        return Response::Rejected(Rejection::ScheduleNotFound(key.to_string()));
    };
    let mut s = s.clone();
    if s.paused {
        s.paused = false;
        s.next_fire_at_ms = next_fire_at_ms;
        s.revision += 1;
        s.updated_at_ms = at_ms;
        schedules.insert(s.clone());
    }
    Response::Schedule(s)
}

fn skip(c: &mut Call, reason: String, at_ms: i64) {
    c.state = CallState::Skipped;
    c.error = Some(reason);
    c.not_before_ms = at_ms;
    c.finished_at_ms = Some(at_ms);
}

fn stale(f: &Fire, why: &str) -> Response {
    Response::Rejected(Rejection::Stale(format!("fire of {} at {}: {why}", f.schedule, f.scheduled_at_ms)))
}

fn invalid(field: &str, message: &str) -> Response {
    Response::Rejected(rejection(field, message.to_string()))
}

fn rejection(field: &str, message: String) -> Rejection {
    Rejection::Invalid { field: field.into(), message }
}

#[cfg(test)]
mod tests;
