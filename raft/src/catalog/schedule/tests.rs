//! `apply`-level tests of the exactly-once protocol and the overlap policies.

use super::*;
use crate::{CallOutcome, Catalog, Command};

const T0: i64 = 1_000_000;
const SEC: i64 = 1_000;

fn spec(function: &str, spec_json: &str, overlap: Overlap) -> ScheduleSpec {
    ScheduleSpec {
        function: function.into(),
        spec_json: spec_json.into(),
        anchor_ms: T0 - SEC,
        first_fire_at_ms: Some(T0),
        overlap,
        catch_up: CatchUp::None,
        catch_up_window_s: 60,
    }
}

fn deploy(rid: &str, schedules: Vec<ScheduleSpec>) -> Command {
    Command::DeployApp {
        name: "etl".into(),
        functions: vec!["other".into(), "tick".into()],
        spec_json: "{}".into(),
        request_id: rid.into(),
        at_ms: T0 - 2 * SEC,
        schedules,
    }
}

/// A catalog with app `etl` whose function `tick` fires every second from `T0`.
fn with_schedule(overlap: Overlap) -> Catalog {
    let mut c = Catalog::default();
    assert!(matches!(c.apply(deploy("d1", vec![spec("tick", "1s", overlap)])), Response::App(_)));
    c
}

fn fire_at(at: i64, call_id: &str) -> Command {
    Command::Fire {
        schedule: "etl/tick".into(),
        revision: 1,
        scheduled_at_ms: at,
        next_fire_at_ms: Some(at + SEC),
        call_id: call_id.into(),
        node: 1,
        skip: None,
        at_ms: at + 5,
    }
}

fn call(r: Response) -> Call {
    match r {
        Response::Call(c) => c,
        other => panic!("expected a call, got {other:?}"),
    }
}

fn is_stale(r: &Response) -> bool {
    matches!(r, Response::Rejected(Rejection::Stale(_)))
}

fn sched(c: &Catalog) -> &ScheduleRecord {
    c.schedules.get("etl/tick").expect("schedule etl/tick")
}

#[test]
fn a_fire_records_the_tick_and_advances_the_schedule_in_one_apply() {
    let mut c = with_schedule(Overlap::Allow);
    assert_eq!(sched(&c).next_fire_at_ms, Some(T0));
    let fc = call(c.apply(fire_at(T0, "fc-1")));
    assert_eq!((fc.state, fc.scheduled_at_ms, fc.created_at_ms), (CallState::Queued, Some(T0), T0 + 5));
    assert_eq!((fc.app.as_str(), fc.function.as_str()), ("etl", "tick"));
    let s = sched(&c);
    assert_eq!((s.next_fire_at_ms, s.last_fired_at_ms, s.last_fired_by), (Some(T0 + SEC), Some(T0), Some(1)));
    assert_eq!(s.active_call.as_deref(), Some("fc-1"));
    assert_eq!(c.calls.len(), 1);
}

#[test]
fn a_duplicate_fire_is_rejected_and_changes_nothing() {
    let mut c = with_schedule(Overlap::Allow);
    c.apply(fire_at(T0, "fc-1"));
    let before = c.clone();
    // The same tick again: a retry, an old leader's proposal, or a new leader behind.
    assert!(is_stale(&c.apply(fire_at(T0, "fc-2"))));
    assert_eq!(c, before);
    // Even inside one batch, only the first of two fires of a tick is accepted.
    let Response::Batch(rs) = c.apply(Command::Batch(vec![fire_at(T0 + SEC, "fc-3"), fire_at(T0 + SEC, "fc-4")]))
    else {
        panic!("not a batch")
    };
    assert!(matches!(rs[0], Response::Call(_)) && is_stale(&rs[1]));
    assert_eq!(c.calls.len(), 2);
    assert!(!c.calls.contains_key("fc-4"));
}

#[test]
fn stale_and_early_fires_are_rejected() {
    let mut c = with_schedule(Overlap::Allow);
    let before = c.clone();
    // A tick that is not the next one: one in the future, one in the past.
    assert!(is_stale(&c.apply(fire_at(T0 + SEC, "fc-1"))));
    assert!(is_stale(&c.apply(fire_at(T0 - SEC, "fc-1"))));
    // A fire computed from another revision of the schedule.
    let mut other_rev = fire_at(T0, "fc-1");
    if let Command::Fire { revision, .. } = &mut other_rev {
        *revision = 2;
    }
    assert!(is_stale(&c.apply(other_rev)));
    // A next tick that does not move forward.
    let mut backwards = fire_at(T0, "fc-1");
    if let Command::Fire { next_fire_at_ms, .. } = &mut backwards {
        *next_fire_at_ms = Some(T0);
    }
    assert!(matches!(c.apply(backwards), Response::Rejected(Rejection::Invalid { .. })));
    let mut unknown = fire_at(T0, "fc-1");
    if let Command::Fire { schedule, .. } = &mut unknown {
        *schedule = "etl/other".into();
    }
    assert_eq!(c.apply(unknown), Response::Rejected(Rejection::ScheduleNotFound("etl/other".into())));
    assert_eq!(c, before);
}

#[test]
fn a_last_tick_leaves_the_schedule_without_a_next_one() {
    let mut c = with_schedule(Overlap::Allow);
    let mut last = fire_at(T0, "fc-1");
    if let Command::Fire { next_fire_at_ms, .. } = &mut last {
        *next_fire_at_ms = None;
    }
    call(c.apply(last));
    assert_eq!(sched(&c).next_fire_at_ms, None);
    assert_eq!(c.schedules.due(i64::MAX).count(), 0);
}

#[test]
fn a_catch_up_skip_is_recorded_as_a_skipped_run_with_its_reason() {
    let mut c = with_schedule(Overlap::Allow);
    let mut missed = fire_at(T0, "fc-1");
    if let Command::Fire { skip, .. } = &mut missed {
        *skip = Some("catch_up=none: 30 s late".into());
    }
    let fc = call(c.apply(missed));
    assert_eq!((fc.state, fc.error.as_deref()), (CallState::Skipped, Some("catch_up=none: 30 s late")));
    assert_eq!(fc.finished_at_ms, Some(T0 + 5));
    assert_eq!(sched(&c).next_fire_at_ms, Some(T0 + SEC));
    // A skipped tick is not a run: overlap is not judged on it.
    assert_eq!(sched(&c).active_call, None);
}

#[test]
fn overlap_skip_is_judged_on_committed_call_states() {
    let mut c = with_schedule(Overlap::Skip);
    call(c.apply(fire_at(T0, "fc-1")));
    // fc-1 is still queued: the next tick is skipped, with the reason.
    let s2 = call(c.apply(fire_at(T0 + SEC, "fc-2")));
    assert_eq!(s2.state, CallState::Skipped);
    assert!(s2.error.as_deref().unwrap().contains("fc-1"), "{:?}", s2.error);
    // Running: still skipped.
    call(c.apply(Command::StartCall { id: "fc-1".into(), node: 2, attempt: 1, at_ms: T0 + 2 * SEC }));
    assert_eq!(call(c.apply(fire_at(T0 + 2 * SEC, "fc-3"))).state, CallState::Skipped);
    // Finished: the next tick runs.
    let done = CallOutcome::Succeeded(b"ok".to_vec());
    call(c.apply(Command::FinishCall { id: "fc-1".into(), attempt: 1, outcome: done, retry_at_ms: None, at_ms: 1 }));
    assert_eq!(call(c.apply(fire_at(T0 + 3 * SEC, "fc-4"))).state, CallState::Queued);
    assert_eq!(sched(&c).active_call.as_deref(), Some("fc-4"));
}

#[test]
fn overlap_allow_runs_every_tick() {
    let mut c = with_schedule(Overlap::Allow);
    for k in 0..5 {
        assert_eq!(call(c.apply(fire_at(T0 + k * SEC, &format!("fc-{k}")))).state, CallState::Queued);
    }
}

#[test]
fn buffer_one_keeps_one_run_that_starts_when_the_active_one_ends() {
    let mut c = with_schedule(Overlap::BufferOne);
    call(c.apply(fire_at(T0, "fc-1")));
    call(c.apply(Command::StartCall { id: "fc-1".into(), node: 2, attempt: 1, at_ms: T0 + 10 }));
    let b = call(c.apply(fire_at(T0 + SEC, "fc-2")));
    assert_eq!(b.state, CallState::Queued);
    assert_eq!(sched(&c).buffered_call.as_deref(), Some("fc-2"));
    // Buffered: no node can claim it while fc-1 runs.
    let claim = |at_ms| Command::StartCall { id: "fc-2".into(), node: 3, attempt: 1, at_ms };
    assert!(is_stale(&c.apply(claim(T0 + 2 * SEC))));
    // A third tick finds the buffer full: skipped.
    let s3 = call(c.apply(fire_at(T0 + 2 * SEC, "fc-3")));
    assert_eq!(s3.state, CallState::Skipped);
    assert!(s3.error.as_deref().unwrap().contains("buffered"), "{:?}", s3.error);
    // fc-1 fails for good: the buffered run is released at once and becomes the active run.
    let failed = CallOutcome::Failed("exit 1".into());
    let fin =
        Command::FinishCall { id: "fc-1".into(), attempt: 1, outcome: failed, retry_at_ms: None, at_ms: T0 + 3 * SEC };
    call(c.apply(fin));
    assert_eq!((c.calls["fc-2"].not_before_ms, c.calls["fc-2"].error.as_deref()), (T0 + 3 * SEC, None));
    let s = sched(&c);
    assert_eq!((s.active_call.as_deref(), s.buffered_call.as_deref()), (Some("fc-2"), None));
    assert_eq!(call(c.apply(claim(T0 + 3 * SEC))).state, CallState::Running);
}

#[test]
fn a_cancelled_buffered_run_frees_the_buffer() {
    let mut c = with_schedule(Overlap::BufferOne);
    call(c.apply(fire_at(T0, "fc-1")));
    call(c.apply(fire_at(T0 + SEC, "fc-2")));
    call(c.apply(Command::CancelCall { id: "fc-2".into(), at_ms: T0 + 1500 }));
    assert_eq!(sched(&c).buffered_call, None);
    assert_eq!(call(c.apply(fire_at(T0 + 2 * SEC, "fc-3"))).state, CallState::Queued);
    assert_eq!(sched(&c).buffered_call.as_deref(), Some("fc-3"));
    // Cancelling the active run releases the buffered one.
    call(c.apply(Command::CancelCall { id: "fc-1".into(), at_ms: T0 + 2500 }));
    assert_eq!(sched(&c).active_call.as_deref(), Some("fc-3"));
    assert!(c.calls["fc-3"].claimable(T0 + 2500));
}

#[test]
fn a_buffered_run_is_released_by_the_next_tick_if_nothing_else_released_it() {
    let mut c = with_schedule(Overlap::BufferOne);
    call(c.apply(fire_at(T0, "fc-1")));
    call(c.apply(fire_at(T0 + SEC, "fc-2")));
    // fc-1 ends by some path that does not release the buffer (none does today).
    c.calls.get_mut("fc-1").unwrap().state = CallState::Succeeded;
    // The next tick releases fc-2, which is live, so the tick itself is buffered behind it.
    let t3 = call(c.apply(fire_at(T0 + 2 * SEC, "fc-3")));
    assert!(c.calls["fc-2"].claimable(T0 + 2 * SEC + 5));
    assert_eq!((t3.state, t3.not_before_ms), (CallState::Queued, i64::MAX));
    let s = sched(&c);
    assert_eq!((s.active_call.as_deref(), s.buffered_call.as_deref()), (Some("fc-2"), Some("fc-3")));
}

#[test]
fn a_fire_with_a_taken_call_id_changes_nothing() {
    let mut c = with_schedule(Overlap::BufferOne);
    call(c.apply(fire_at(T0, "fc-1")));
    let before = c.clone();
    assert!(matches!(c.apply(fire_at(T0 + SEC, "fc-1")), Response::Rejected(Rejection::Conflict(_))));
    assert_eq!(c, before);
}

#[test]
fn a_redeploy_keeps_an_unchanged_schedule_and_resets_a_changed_one() {
    let mut c = with_schedule(Overlap::Allow);
    c.apply(fire_at(T0, "fc-1"));
    // Same spec, new policy and a different first fire: the anchor and next tick stay.
    let mut same = spec("tick", "1s", Overlap::Skip);
    same.first_fire_at_ms = Some(T0 + 50 * SEC);
    same.anchor_ms = T0 + 49 * SEC;
    c.apply(deploy("d2", vec![same]));
    let s = sched(&c);
    assert_eq!((s.next_fire_at_ms, s.anchor_ms, s.revision, s.overlap), (Some(T0 + SEC), T0 - SEC, 1, Overlap::Skip));
    assert_eq!(s.active_call.as_deref(), Some("fc-1"));
    // A changed period: new anchor, new next tick, new revision; a fire of the old revision is stale.
    let mut changed = spec("tick", "2s", Overlap::Allow);
    changed.first_fire_at_ms = Some(T0 + 60 * SEC);
    changed.anchor_ms = T0 + 58 * SEC;
    c.apply(deploy("d3", vec![changed]));
    let s = sched(&c);
    assert_eq!((s.next_fire_at_ms, s.anchor_ms, s.revision), (Some(T0 + 60 * SEC), T0 + 58 * SEC, 2));
    assert!(is_stale(&c.apply(fire_at(T0 + 60 * SEC, "fc-2"))));
    // A retried deploy (same request id) does not touch the schedules.
    let before = c.clone();
    c.apply(deploy("d3", vec![]));
    assert_eq!(c, before);
    // A redeploy without the schedule removes it.
    c.apply(deploy("d4", vec![]));
    assert!(c.schedules.is_empty());
}

#[test]
fn stopping_an_app_removes_its_schedules_and_drops_a_buffered_run() {
    let mut c = with_schedule(Overlap::BufferOne);
    c.apply(fire_at(T0, "fc-1"));
    c.apply(fire_at(T0 + SEC, "fc-2"));
    c.apply(Command::StopApp { name: "etl".into(), at_ms: T0 + 1500 });
    assert!(c.schedules.is_empty());
    assert_eq!(c.calls["fc-2"].state, CallState::Skipped);
    assert_eq!(c.calls["fc-1"].state, CallState::Queued);
    assert_eq!(
        c.apply(fire_at(T0 + 2 * SEC, "fc-3")),
        Response::Rejected(Rejection::ScheduleNotFound("etl/tick".into()))
    );
}

#[test]
fn a_schedule_for_a_missing_function_rejects_the_whole_deploy() {
    let mut c = Catalog::default();
    let r = c.apply(deploy("d1", vec![spec("nope", "1s", Overlap::Allow)]));
    assert!(matches!(r, Response::Rejected(Rejection::Invalid { field, .. }) if field == "schedules"));
    let r = c.apply(deploy("d1", vec![spec("tick", "1s", Overlap::Allow), spec("tick", "2s", Overlap::Allow)]));
    assert!(matches!(r, Response::Rejected(Rejection::Invalid { .. })));
    assert_eq!(c, Catalog::default());
}

#[test]
fn pause_stops_fires_and_resume_starts_from_a_new_tick() {
    let mut c = with_schedule(Overlap::Allow);
    let p = Command::PauseSchedule { schedule: "etl/tick".into(), at_ms: T0 - 10 };
    assert!(matches!(c.apply(p.clone()), Response::Schedule(s) if s.paused));
    assert!(is_stale(&c.apply(fire_at(T0, "fc-1"))));
    assert_eq!(c.schedules.due(i64::MAX).count(), 0);
    assert!(matches!(c.apply(p), Response::Schedule(s) if s.paused));
    let r = Command::ResumeSchedule { schedule: "etl/tick".into(), next_fire_at_ms: Some(T0 + 9 * SEC), at_ms: 1 };
    let Response::Schedule(s) = c.apply(r.clone()) else { panic!("not a schedule") };
    assert_eq!((s.paused, s.next_fire_at_ms, s.revision), (false, Some(T0 + 9 * SEC), 2));
    // Resuming a running schedule changes nothing.
    let before = c.clone();
    c.apply(r);
    assert_eq!(c, before);
    let missing = Command::PauseSchedule { schedule: "etl/nope".into(), at_ms: 1 };
    assert!(matches!(c.apply(missing), Response::Rejected(Rejection::ScheduleNotFound(_))));
}

#[test]
fn the_due_index_lists_unpaused_schedules_by_next_tick() {
    let mut c = Catalog::default();
    let mut a = spec("tick", "1s", Overlap::Allow);
    a.first_fire_at_ms = Some(T0 + 2 * SEC);
    let mut b = spec("other", "1s", Overlap::Allow);
    b.first_fire_at_ms = Some(T0 + SEC);
    c.apply(deploy("d1", vec![a, b]));
    let due: Vec<String> = c.schedules.due(T0 + 5 * SEC).map(|s| s.key()).collect();
    assert_eq!(due, ["etl/other", "etl/tick"]);
    assert_eq!(c.schedules.due(T0 + SEC).count(), 1);
    assert_eq!(c.schedules.next_due_ms(), Some(T0 + SEC));
    c.apply(Command::PauseSchedule { schedule: "etl/other".into(), at_ms: 1 });
    assert_eq!(c.schedules.next_due_ms(), Some(T0 + 2 * SEC));
}
