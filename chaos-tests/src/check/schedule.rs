//! Every schedule tick fires exactly once, or is recorded as skipped where its policy allows.
//!
//! Fed by `flotilla runs ls -o json` (the contract's run shape) and the ticks the workload's
//! schedules should have had in the checked window. Tick identity is `(app, function,
//! scheduled_at)`. Not yet fed by a live workload: schedules are being built on another
//! branch; this checker is ready for it and tested on hand-made histories.
//!
//! Rules: two runs for one tick is always a violation (a double fire). A run at a time that
//! is not a tick is a violation. A tick with no run is a violation when the schedule catches
//! up on `all` missed ticks (with `none` or `latest`, ticks missed while there was no leader
//! may be dropped). A `skipped` run is allowed only when `overlap` is `skip` or `buffer_one`.

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

/// Violations of exactly-once firing for the schedules named in `expected`.
pub fn check(runs: &[Run], expected: &[Tick], overlap: Overlap, catch_up: CatchUp) -> Vec<Violation> {
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
        let skip_allowed = matches!(overlap, Overlap::Skip | Overlap::BufferOne);
        if !skip_allowed && runs.iter().any(|r| r.state == "skipped") {
            out.push(Violation::new(
                "schedule-exactly-once",
                format!("{app}/{function} skipped {at} with overlap = allow"),
            ));
        }
    }
    if catch_up == CatchUp::All {
        for tick in &ticks {
            if !fired.contains_key(tick) {
                let (app, function, at) = tick;
                out.push(Violation::new(
                    "schedule-exactly-once",
                    format!("{app}/{function} never fired or skipped {at}"),
                ));
            }
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
        }
    }

    fn ticks(ats: &[&str]) -> Vec<Tick> {
        ats.iter().map(|t| ("etl".to_string(), "tick".to_string(), t.to_string())).collect()
    }

    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-01T00:00:10Z";

    #[test]
    fn one_run_per_tick_passes() {
        let runs = [run("fc-1", T1, "succeeded"), run("fc-2", T2, "running")];
        assert!(check(&runs, &ticks(&[T1, T2]), Overlap::Allow, CatchUp::All).is_empty());
    }

    #[test]
    fn a_double_fire_is_reported() {
        let runs = [run("fc-1", T1, "succeeded"), run("fc-2", T1, "succeeded")];
        let v = check(&runs, &ticks(&[T1]), Overlap::Allow, CatchUp::All);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("fired 2 times"), "{v:?}");
    }

    #[test]
    fn missed_and_off_tick_runs_depend_on_policy() {
        let runs = [run("fc-1", T1, "succeeded"), run("fc-9", "2026-01-01T00:00:03Z", "succeeded")];
        let v = check(&runs, &ticks(&[T1, T2]), Overlap::Allow, CatchUp::All);
        assert_eq!(v.len(), 2, "{v:?}");
        // With catch_up = none, the missing tick is allowed; the off-tick run is not.
        let v = check(&runs, &ticks(&[T1, T2]), Overlap::Allow, CatchUp::None);
        assert_eq!(v.len(), 1, "{v:?}");
    }

    #[test]
    fn skipped_ticks_are_allowed_only_by_the_overlap_policy() {
        let runs = [run("fc-1", T1, "running"), run("fc-2", T2, "skipped")];
        assert!(check(&runs, &ticks(&[T1, T2]), Overlap::Skip, CatchUp::All).is_empty());
        assert_eq!(check(&runs, &ticks(&[T1, T2]), Overlap::Allow, CatchUp::All).len(), 1);
    }

    #[test]
    fn runs_ls_json_parses() {
        let json = r#"[{"id":"fc-1","app":"etl","function":"tick","scheduled_at":"2026-01-01T00:00:00Z",
            "state":"succeeded","node":2,"attempt":1,"output":"ok"},
            {"id":"fc-2","app":"etl","function":"tick","scheduled_at":null,"state":"queued","node":null,"attempt":0,"output":null}]"#;
        let runs: Vec<Run> = serde_json::from_str(json).unwrap();
        assert_eq!(runs[0].scheduled_at.as_deref(), Some(T1));
        assert!(check(&runs, &ticks(&[T1]), Overlap::Allow, CatchUp::All).is_empty());
    }
}
