//! `apply`-level tests of compaction: what goes, what stays, and that replicas agree.

use super::*;
use crate::catalog::{CallOutcome, CallState, CatchUp, Overlap, ScheduleSpec};
use crate::{Command, Rejection};

const T0: i64 = 1_000_000;
const SEC: i64 = 1_000;
const DAY: u64 = 86_400_000;

fn id(at: i64, n: u64) -> String {
    call_id(at, n)
}

/// App `etl` with functions `tick` (scheduled every second from `T0`, overlap allow) and `f`.
fn deployed() -> Catalog {
    let mut c = Catalog::default();
    let schedule = ScheduleSpec {
        function: "tick".into(),
        spec_json: "1s".into(),
        anchor_ms: T0 - SEC,
        first_fire_at_ms: Some(T0),
        overlap: Overlap::Allow,
        catch_up: CatchUp::None,
        catch_up_window_s: 60,
    };
    let deploy = Command::DeployApp {
        name: "etl".into(),
        functions: vec!["f".into(), "tick".into()],
        spec_json: "{}".into(),
        request_id: "d1".into(),
        at_ms: T0 - 2 * SEC,
        schedules: vec![schedule],
    };
    assert!(matches!(c.apply(deploy), Response::App(_)));
    c
}

/// Spawns call `id` of `etl/f` with request id `rid` at `at`, and runs it to success at `end`
/// (or leaves it queued when `end` is None).
fn spawned(c: &mut Catalog, id: &str, rid: &str, at: i64, end: Option<i64>) {
    let spawn = Command::SpawnCall {
        id: id.into(),
        app: "etl".into(),
        function: "f".into(),
        input: vec![],
        request_id: Some(rid.into()),
        at_ms: at,
    };
    assert!(matches!(c.apply(spawn), Response::Call(_)));
    if let Some(end) = end {
        finish(c, id, at, end);
    }
}

fn finish(c: &mut Catalog, id: &str, start: i64, end: i64) {
    assert!(matches!(
        c.apply(Command::StartCall { id: id.into(), node: 1, attempt: 1, at_ms: start }),
        Response::Call(_)
    ));
    let outcome = CallOutcome::Succeeded(b"out".to_vec());
    let done = Command::FinishCall { id: id.into(), attempt: 1, outcome, retry_at_ms: None, at_ms: end };
    assert!(matches!(c.apply(done), Response::Call(_)));
}

/// Fires `n` ticks of `etl/tick` from `T0`, each run finished a moment after its tick.
fn fired(c: &mut Catalog, n: i64) -> Vec<String> {
    (0..n)
        .map(|k| {
            let at = T0 + k * SEC;
            let call_id = id(at, k as u64);
            let fire = Command::Fire {
                schedule: "etl/tick".into(),
                revision: 1,
                scheduled_at_ms: at,
                next_fire_at_ms: Some(at + SEC),
                call_id: call_id.clone(),
                node: 1,
                skip: None,
                at_ms: at,
            };
            assert!(matches!(c.apply(fire), Response::Call(_)));
            finish(c, &call_id, at + 1, at + 2);
            call_id
        })
        .collect()
}

fn compact(c: &mut Catalog, at_ms: i64, retention_ms: u64, runs_kept: &[(&str, u32)]) -> CompactReport {
    let runs_kept = runs_kept.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    match c.apply(Command::Compact { retention_ms, runs_kept, at_ms }) {
        Response::Compacted(r) => r,
        other => panic!("expected a compaction report, got {other:?}"),
    }
}

#[test]
fn final_calls_past_the_window_go_and_say_expired_while_live_ones_stay() {
    let mut c = deployed();
    let old = id(T0, 1);
    let recent = id(T0 + 5 * SEC, 2);
    let queued = id(T0, 3);
    spawned(&mut c, &old, "r-old", T0, Some(T0 + SEC));
    spawned(&mut c, &recent, "r-recent", T0 + 5 * SEC, Some(T0 + 6 * SEC));
    spawned(&mut c, &queued, "r-queued", T0, None);

    // Retention 3 s at T0 + 5 s: only what finished at or before T0 + 2 s goes.
    let report = compact(&mut c, T0 + 5 * SEC, 3_000, &[]);
    assert_eq!(report, CompactReport { calls: 1, sandboxes: 0, snapshots: 0 });
    assert!(!c.calls.contains_key(&old) && c.calls.contains_key(&recent));
    assert_eq!(c.calls[&queued].state, CallState::Queued, "a queued call is never compacted");
    assert!(c.call_expired(&old));
    assert!(!c.call_expired(&recent), "a call that is there has not expired");
    assert!(!c.call_expired(&id(T0 + 60 * SEC, 9)), "an id made after every compacted call never existed");
    assert!(!c.call_expired("fc-0123456789abcdef"), "an id without a time never expired");
    assert_eq!(c.compacted.calls, 1);

    // The request index forgot the compacted call: the same request id makes a new call.
    assert!(c.call_for_request("r-old").is_none());
    assert_eq!(c.call_for_request("r-recent").map(|x| x.id.clone()), Some(recent));
    spawned(&mut c, &id(T0 + 9 * SEC, 4), "r-old", T0 + 9 * SEC, None);
    assert_eq!(c.call_for_request("r-old").map(|x| x.id.clone()), Some(id(T0 + 9 * SEC, 4)));
}

#[test]
fn a_schedule_keeps_at_most_runs_kept_final_runs_and_its_active_run() {
    let mut c = deployed();
    let runs = fired(&mut c, 10);
    // Nothing is past a one-day window; runs_kept 3 keeps the newest three.
    let report = compact(&mut c, T0 + 20 * SEC, DAY, &[("etl/tick", 3)]);
    assert_eq!(report.calls, 7);
    let left: Vec<&String> = c.calls.keys().collect();
    let mut newest: Vec<&String> = runs[7..].iter().collect();
    newest.sort();
    assert_eq!(left, newest);
    // The active run (the last one) is referenced by the schedule and stays even with
    // runs_kept 0.
    compact(&mut c, T0 + 21 * SEC, DAY, &[("etl/tick", 0)]);
    assert_eq!(c.calls.keys().collect::<Vec<_>>(), [&runs[9]]);
    assert_eq!(c.schedules.get("etl/tick").unwrap().active_call.as_ref(), Some(&runs[9]));
    // Without a limit in the command, the default applies: three runs past it go.
    let mut d = deployed();
    let n = i64::from(DEFAULT_RUNS_KEPT) + 3;
    let runs = fired(&mut d, n);
    assert_eq!(compact(&mut d, T0 + (n + 10) * SEC, DAY, &[]).calls, 3);
    assert!(runs[..3].iter().all(|r| !d.calls.contains_key(r)) && runs[3..].iter().all(|r| d.calls.contains_key(r)));
}

#[test]
fn final_sandboxes_go_unless_a_snapshot_was_taken_from_them() {
    use crate::catalog::SnapshotKind;

    let mut c = deployed();
    c.apply(Command::RegisterNode {
        id: 1,
        addr: "127.0.0.1:1".into(),
        cpus: 4,
        memory_mib: 4096,
        gpus: vec![],
        at_ms: T0,
    });
    let create = |id: &str, rid: &str| Command::CreateSandbox {
        id: id.into(),
        name: None,
        spec: crate::catalog::sandbox::tests::spec(),
        node: 1,
        gpus: vec![],
        request_id: Some(rid.into()),
        at_ms: T0,
    };
    for (sb, rid) in [("sb-gone", "r1"), ("sb-snapped", "r2"), ("sb-live", "r3")] {
        assert!(matches!(c.apply(create(sb, rid)), Response::Sandbox(_)), "{sb}");
        c.apply(Command::SandboxStarted { id: sb.into(), generation: 1, container_id: "c".into(), at_ms: T0 });
    }
    let snap = Command::CreateSnapshot {
        id: "snap-1".into(),
        sandbox: "sb-snapped".into(),
        generation: 1,
        kind: SnapshotKind::Fs,
        path: None,
        node: 1,
        at_ms: T0,
    };
    assert!(matches!(c.apply(snap), Response::Snapshot(_)));
    c.apply(Command::SnapshotReady {
        id: "snap-1".into(),
        size_bytes: 1,
        sha256: "x".into(),
        replicas: vec![1],
        at_ms: T0,
    });
    for sb in ["sb-gone", "sb-snapped"] {
        assert!(matches!(c.apply(Command::TerminateSandbox { id: sb.into(), at_ms: T0 + SEC }), Response::Sandbox(_)));
    }
    let report = compact(&mut c, T0 + 10 * SEC, 1_000, &[]);
    assert_eq!(report.sandboxes, 1);
    assert!(!c.sandboxes.contains_key("sb-gone"));
    assert!(c.sandboxes.contains_key("sb-snapped"), "a snapshot's source stays");
    assert!(c.sandboxes.contains_key("sb-live"), "a running sandbox stays");
    assert!(c.sandbox_for_request("r1").is_none());
    assert_eq!(c.sandbox_for_request("r3").map(|s| s.id.as_str()), Some("sb-live"));
}

#[test]
fn compaction_is_deterministic_and_changes_nothing_when_nothing_is_due() {
    let build = || {
        let mut c = deployed();
        fired(&mut c, 6);
        spawned(&mut c, &id(T0, 1), "r1", T0, Some(T0 + SEC));
        c
    };
    let (mut a, mut b) = (build(), build());
    let ra = compact(&mut a, T0 + 30 * SEC, 10_000, &[("etl/tick", 2)]);
    let rb = compact(&mut b, T0 + 30 * SEC, 10_000, &[("etl/tick", 2)]);
    assert_eq!((ra, &a), (rb, &b), "two replicas applying the same command end the same");
    // Nothing is due: the catalog is byte-for-byte unchanged but for nothing at all.
    let mut fresh = build();
    let before = fresh.clone();
    assert_eq!(compact(&mut fresh, T0 + 10 * SEC, DAY, &[]), CompactReport::default());
    // Every stamped command moves the events' clock (see `catalog::events`); nothing else moves.
    assert_eq!(fresh.events.clock_ms, T0 + 10 * SEC);
    fresh.events.clock_ms = before.events.clock_ms;
    assert_eq!(fresh, before);
    // A compaction never rejects, and an unknown call is still "not found" elsewhere.
    let unknown = Command::StartCall { id: "fc-nope".into(), node: 1, attempt: 1, at_ms: T0 };
    assert_eq!(fresh.apply(unknown), Response::Rejected(Rejection::CallNotFound("fc-nope".into())));
}

#[test]
fn call_ids_carry_their_time() {
    let made = call_id(1_764_000_000_000, u64::MAX);
    assert_eq!(made.len(), 27);
    assert_eq!(call_id_time(&made), Some(1_764_000_000_000));
    assert_eq!(call_id_time("fc-0123456789abcdef"), None);
    assert_eq!(call_id_time("sb-0123456789abcdef01234567"), None);
}

#[test]
fn a_compaction_is_due_only_when_it_would_remove_something() {
    let mut c = deployed();
    let none = BTreeMap::new();
    assert!(!c.compaction_due(3_000, &none, T0 + 60 * SEC), "an empty catalog");
    spawned(&mut c, &id(T0, 1), "r-1", T0, Some(T0 + SEC));
    assert!(!c.compaction_due(3_000, &none, T0 + 3 * SEC), "finished at T0 + 1 s: inside a 3 s window at T0 + 3 s");
    assert!(c.compaction_due(3_000, &none, T0 + 4 * SEC), "and past it a second later");
    // Schedule runs beyond runs_kept are due whatever their age; within it they are not.
    let mut c = deployed();
    fired(&mut c, 3);
    let kept = |n: u32| BTreeMap::from([("etl/tick".to_string(), n)]);
    assert!(!c.compaction_due(DAY, &kept(3), T0 + 10 * SEC));
    assert!(c.compaction_due(DAY, &kept(2), T0 + 10 * SEC));
    // What is due is exactly what a compaction then removes: afterwards nothing is.
    let report = compact(&mut c, T0 + 10 * SEC, DAY, &[("etl/tick", 2)]);
    assert_eq!(report.calls, 1);
    assert!(!c.compaction_due(DAY, &kept(2), T0 + 10 * SEC));
}
