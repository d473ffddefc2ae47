//! Every schedule tick fires exactly once, or is recorded as skipped for a reason its policy gives.
//!
//! Fed by the schedule workload ([`crate::workload::schedule`]): the runs read back with
//! `runs ls --scheduled` (the SDK's `Client::runs`), and the ticks each schedule should have
//! had from its first tick to a time every schedule has fired through. Tick identity is
//! `(app, function, scheduled_at)`.
//!
//! Rules (docs/architecture/schedules.md): every tick becomes exactly one record, whatever
//! fails: a run, or a `skipped` record that says why. So two records for one tick is a double
//! fire; a record at a time that is not a tick is a violation; a tick with no record is a lost
//! tick, whatever the policy. A `skipped` record is allowed only when its reason is one the
//! schedule's policy gives: `overlap=skip` / `overlap=buffer_one` for those overlap policies,
//! `catch_up=none` / `catch_up=latest` for those catch-up policies, and "beyond
//! catch_up_window_s" only for a tick missed by more than the window.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::Violation;

/// One run as `runs ls -o json` prints it (fields the checker needs; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Run {
    pub id: String,
    pub app: String,
    pub function: String,
    /// RFC 3339; `None` for runs not started by a schedule.
    pub scheduled_at: Option<String>,
    /// `queued|running|succeeded|failed|skipped|cancelled`.
    pub state: String,
    /// Why a run was skipped (or why its last attempt failed).
    #[serde(default)]
    pub error: Option<String>,
}

/// A tick the schedule should have had: `(app, function, scheduled_at)`, RFC 3339 in UTC.
pub type Tick = (String, String, String);

/// The schedule's `overlap` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Allow,
    Skip,
    BufferOne,
}

/// The schedule's `catch_up` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    None,
    Latest,
    All,
}

/// A schedule's policies, as deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub catch_up_window_s: u64,
}

/// How late a skip reason says its tick was: `missed by 12.0 s…` gives 12.0.
fn missed_by_s(reason: &str) -> Option<f64> {
    let rest = reason.split("missed by ").nth(1)?;
    rest.split(" s").next()?.trim().parse().ok()
}

/// Whether `reason` is one `policy` gives for skipping a tick.
fn skip_allowed(reason: &str, policy: &Policy) -> bool {
    let by_overlap = match policy.overlap {
        Overlap::Allow => false,
        Overlap::Skip => reason.starts_with("overlap=skip:"),
        Overlap::BufferOne => reason.starts_with("overlap=buffer_one:"),
    };
    let by_catch_up = match policy.catch_up {
        CatchUp::None => reason.contains("; catch_up=none"),
        CatchUp::Latest => reason.contains("; catch_up=latest"),
        CatchUp::All => false,
    };
    let beyond_window = reason.contains("beyond catch_up_window_s")
        && missed_by_s(reason).is_some_and(|s| s > policy.catch_up_window_s as f64);
    by_overlap || by_catch_up || beyond_window
}

/// Violations of exactly-once firing for the schedules named in `expected`, which all have
/// `policy`.
pub fn check(runs: &[Run], expected: &[Tick], policy: &Policy) -> Vec<Violation> {
    let schedules: BTreeSet<(&str, &str)> = expected.iter().map(|(a, f, _)| (a.as_str(), f.as_str())).collect();
    let ticks: BTreeSet<(&str, &str, &str)> =
        expected.iter().map(|(a, f, t)| (a.as_str(), f.as_str(), t.as_str())).collect();
    let mut fired: BTreeMap<(&str, &str, &str), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        let Some(at) = &run.scheduled_at else { continue };
        if schedules.contains(&(run.app.as_str(), run.function.as_str())) {
            fired.entry((&run.app, &run.function, at)).or_default().push(run);
        }
    }
    let mut out = Vec::new();
    for ((app, function, at), runs) in &fired {
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        if runs.len() > 1 {
            out.push(Violation::new(
                "schedule-exactly-once",
                format!("{app}/{function} fired {} times for {at}: {ids:?}", runs.len()),
            ));
        }
        if !ticks.contains(&(app, function, at)) {
            out.push(Violation::new(
                "schedule-exactly-once",
                format!("{app}/{function} fired at {at}, which is not a tick: {ids:?}"),
            ));
        }
        for r in runs.iter().filter(|r| r.state == "skipped") {
            let reason = r.error.as_deref().unwrap_or("");
            if !skip_allowed(reason, policy) {
                out.push(Violation::new(
                    "schedule-exactly-once",
                    format!(
                        "{app}/{function} skipped {at} ({}) for a reason {policy:?} does not give: {reason:?}",
                        r.id
                    ),
                ));
            }
        }
    }
    for tick in &ticks {
        if !fired.contains_key(tick) {
            let (app, function, at) = tick;
            out.push(Violation::new("schedule-exactly-once", format!("{app}/{function} has no record for tick {at}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, at: &str, state: &str) -> Run {
        Run {
            id: id.into(),
            app: "etl".into(),
            function: "tick".into(),
            scheduled_at: Some(at.into()),
            state: state.into(),
            error: None,
        }
    }

    fn skipped(id: &str, at: &str, reason: &str) -> Run {
        Run { error: Some(reason.into()), ..run(id, at, "skipped") }
    }

    fn ticks(ats: &[&str]) -> Vec<Tick> {
        ats.iter().map(|t| ("etl".to_string(), "tick".to_string(), t.to_string())).collect()
    }

    fn policy(overlap: Overlap, catch_up: CatchUp) -> Policy {
        Policy { overlap, catch_up, catch_up_window_s: 60 }
    }

    const ALL: Policy = Policy { overlap: Overlap::Allow, catch_up: CatchUp::All, catch_up_window_s: 60 };
    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-01T00:00:10Z";

    #[test]
    fn one_run_per_tick_passes() {
        let runs = [run("fc-1", T1, "succeeded"), run("fc-2", T2, "running")];
        assert!(check(&runs, &ticks(&[T1, T2]), &ALL).is_empty());
    }

    #[test]
    fn a_double_fire_is_reported() {
        let runs = [run("fc-1", T1, "succeeded"), run("fc-2", T1, "succeeded")];
        let v = check(&runs, &ticks(&[T1]), &ALL);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("fired 2 times"), "{v:?}");
    }

    #[test]
    fn missed_and_off_tick_runs_are_reported_whatever_the_policy() {
        let runs = [run("fc-1", T1, "succeeded"), run("fc-9", "2026-01-01T00:00:03Z", "succeeded")];
        for catch_up in [CatchUp::All, CatchUp::Latest, CatchUp::None] {
            let v = check(&runs, &ticks(&[T1, T2]), &policy(Overlap::Allow, catch_up));
            assert_eq!(v.len(), 2, "{v:?}");
        }
    }

    #[test]
    fn skips_are_allowed_only_for_reasons_the_policy_gives() {
        let overlap = [run("fc-1", T1, "running"), skipped("fc-2", T2, "overlap=skip: run fc-1 is still live")];
        assert!(check(&overlap, &ticks(&[T1, T2]), &policy(Overlap::Skip, CatchUp::All)).is_empty());
        assert_eq!(check(&overlap, &ticks(&[T1, T2]), &ALL).len(), 1);
        let missed = [run("fc-1", T1, "running"), skipped("fc-2", T2, "missed by 6.2 s; catch_up=none")];
        assert!(check(&missed, &ticks(&[T1, T2]), &policy(Overlap::Allow, CatchUp::None)).is_empty());
        assert_eq!(check(&missed, &ticks(&[T1, T2]), &ALL).len(), 1);
        assert_eq!(check(&missed, &ticks(&[T1, T2]), &policy(Overlap::Skip, CatchUp::Latest)).len(), 1);
        let beyond = |s: &str| [skipped("fc-2", T2, &format!("missed by {s} s, beyond catch_up_window_s (60 s)"))];
        assert!(check(&beyond("75.0"), &ticks(&[T2]), &ALL).is_empty());
        assert_eq!(check(&beyond("12.0"), &ticks(&[T2]), &ALL).len(), 1, "within the window, catch_up=all runs it");
        let silent = [skipped("fc-2", T2, "")];
        assert_eq!(check(&silent, &ticks(&[T2]), &policy(Overlap::Skip, CatchUp::None)).len(), 1);
    }

    #[test]
    fn runs_ls_json_parses() {
        let json = r#"[{"id":"fc-1","app":"etl","function":"tick","scheduled_at":"2026-01-01T00:00:00Z",
            "state":"succeeded","node":2,"attempt":1,"output":"ok"},
            {"id":"fc-2","app":"etl","function":"tick","scheduled_at":null,"state":"queued","node":null,"attempt":0,"output":null},
            {"id":"fc-3","app":"etl","function":"tick","scheduled_at":"2026-01-01T00:00:10Z","state":"skipped",
            "error":"missed by 6.0 s; catch_up=none"}]"#;
        let runs: Vec<Run> = serde_json::from_str(json).unwrap();
        assert_eq!(runs[0].scheduled_at.as_deref(), Some(T1));
        assert!(check(&runs, &ticks(&[T1, T2]), &policy(Overlap::Allow, CatchUp::None)).is_empty());
    }
}
