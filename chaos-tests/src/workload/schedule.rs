//! The schedule workload: 1-second schedules that tick through the whole run.
//!
//! [`deploy`] deploys app `chaos-sched` before the faults start: function `all` catches up
//! every missed tick (`catch_up = "all"`), function `none` skips them (`catch_up = "none"`),
//! both with `overlap = "allow"`. Their runs execute (`true` in `flotilla/busybox`), so the
//! executors claim and finish calls under the same faults. [`check`] runs at the end of the
//! run. It takes each schedule and its policies from the spec the workload deployed, not from
//! the server (a server that changed them would otherwise grade itself): the server supplies
//! only the anchor, which must be the deploy's time (within the deploy call). It lists the
//! ticks `anchor + k × period` from each schedule's first tick to [`GRACE`] before the check
//! began, reads every scheduled run back through the SDK (`runs ls --scheduled`), and hands
//! both to [`crate::check::schedule`]: every one of those ticks, up to the end of the run,
//! must have exactly one record, so a scheduler that stopped partway fails the run.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use flotilla::spec::{CatchUp as SpecCatchUp, FunctionSpec, Overlap as SpecOverlap};
use flotilla::{AppSpec, CallRecord, Client, RunsFilter};

use crate::check::schedule::{self as checker, CatchUp, Overlap, Policy, Run, Tick};
use crate::check::Violation;

/// The workload's app.
pub const APP: &str = "chaos-sched";

const SPEC: &str = r#"name = "chaos-sched"

[functions.all]
image = "flotilla/busybox"
command = ["true"]
timeout_s = 600
schedule = { period = "1s" }
catch_up = "all"
catch_up_window_s = 600

[functions.none]
image = "flotilla/busybox"
command = ["true"]
timeout_s = 600
schedule = { period = "1s" }
catch_up = "none"
"#;

/// What the check covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Ticks checked, over every schedule.
    pub ticks: usize,
    /// Of those, recorded `skipped`.
    pub skipped: usize,
    /// Of those, executed to `succeeded` by the time they were read back.
    pub succeeded: usize,
}

/// How long before the check a tick must be to be expected recorded: it fires when due,
/// and its record is committed through Raft; a healthy cluster needs well under a second.
pub const GRACE: Duration = Duration::from_secs(3);

/// When the deploy call ran, Unix ms: the anchor the server chose must lie within.
#[derive(Debug, Clone, Copy)]
pub struct Deployed {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The spec the workload deploys.
pub fn spec() -> AppSpec {
    AppSpec::from_toml_str(SPEC).expect("the workload's spec is valid")
}

/// Deploys the schedules; their first tick is one period after the deploy.
pub async fn deploy(client: &Client) -> anyhow::Result<Deployed> {
    let from_ms = Utc::now().timestamp_millis();
    client.deploy(spec()).await?;
    Ok(Deployed { from_ms, to_ms: Utc::now().timestamp_millis() })
}

/// A Unix-ms time as `runs ls` prints it: RFC 3339, UTC.
fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map_or_else(|| format!("{ms} ms"), |t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The checker's policy for a deployed function.
fn policy(f: &FunctionSpec) -> Policy {
    let overlap = match f.overlap {
        SpecOverlap::Allow => Overlap::Allow,
        SpecOverlap::Skip => Overlap::Skip,
        SpecOverlap::BufferOne => Overlap::BufferOne,
    };
    let catch_up = match f.catch_up {
        SpecCatchUp::None => CatchUp::None,
        SpecCatchUp::Latest => CatchUp::Latest,
        SpecCatchUp::All => CatchUp::All,
    };
    Policy { overlap, catch_up, catch_up_window_s: f.catch_up_window_s }
}

/// The ticks of function `name` (spec `f`, anchored at `anchor_ms`) from its first through
/// `until_ms`.
fn ticks(name: &str, f: &FunctionSpec, anchor_ms: i64, until_ms: i64) -> Vec<Tick> {
    let (Some(schedule), Some(anchor)) = (&f.schedule, DateTime::from_timestamp_millis(anchor_ms)) else {
        return Vec::new();
    };
    // Periods are at least a second, so this many ticks reach past `until_ms`.
    let n = usize::try_from((until_ms - anchor_ms) / 1000 + 2).unwrap_or(0);
    schedule
        .next_fires(anchor, n, anchor)
        .into_iter()
        .map(|t| t.timestamp_millis())
        .take_while(|t| *t <= until_ms)
        .map(|t| (APP.to_string(), name.to_string(), rfc3339(t)))
        .collect()
}

fn run(c: &CallRecord) -> Run {
    Run {
        id: c.id.clone(),
        app: c.app.clone(),
        function: c.function.clone(),
        scheduled_at: c.scheduled_at_ms.map(rfc3339),
        state: c.state.clone(),
        error: c.error.clone(),
    }
}

/// Checks every tick of the deployed schedules from the first to [`GRACE`] before now.
pub async fn check(client: &Client, deployed: Deployed) -> anyhow::Result<(Vec<Violation>, Summary)> {
    let until_ms = (Utc::now() - GRACE).timestamp_millis();
    let spec = spec();
    let schedules = client.schedules(Some(APP)).await?;
    let filter = RunsFilter { app: Some(APP.to_string()), scheduled: true, limit: 100_000, ..Default::default() };
    let records = client.runs(&filter).await?;
    let runs: Vec<Run> = records.iter().filter(|c| c.scheduled_at_ms.is_some_and(|t| t <= until_ms)).map(run).collect();
    let mut violations = Vec::new();
    let mut summary = Summary::default();
    for (name, f) in spec.functions.iter().filter(|(_, f)| f.schedule.is_some()) {
        let Some(s) = schedules.iter().find(|s| s.function == *name) else {
            violations
                .push(Violation::new("schedule-exactly-once", format!("{APP}/{name}: the server lists no schedule")));
            continue;
        };
        if !(deployed.from_ms..=deployed.to_ms).contains(&s.anchor_ms) {
            violations.push(Violation::new(
                "schedule-exactly-once",
                format!("{APP}/{name}: anchor {} is not the deploy's time ({deployed:?})", rfc3339(s.anchor_ms)),
            ));
        }
        let expected = ticks(name, f, s.anchor_ms, until_ms);
        let mine: Vec<Run> = runs.iter().filter(|r| r.function == *name).cloned().collect();
        summary.ticks += expected.len();
        summary.skipped += mine.iter().filter(|r| r.state == "skipped").count();
        summary.succeeded += mine.iter().filter(|r| r.state == "succeeded").count();
        violations.extend(checker::check(&mine, &expected, &policy(f)));
    }
    Ok((violations, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR_MS: i64 = 1_790_000_000_000;

    fn runs_until(function: &str, until_ms: i64) -> Vec<Run> {
        ticks(function, &spec().functions[function], ANCHOR_MS, until_ms)
            .into_iter()
            .enumerate()
            .map(|(i, (app, function, at))| Run {
                id: format!("fc-{i}"),
                app,
                function,
                scheduled_at: Some(at),
                state: "succeeded".into(),
                error: None,
            })
            .collect()
    }

    #[test]
    fn ticks_run_from_the_first_to_the_end_with_the_deployed_policy() {
        let spec = spec();
        let f = &spec.functions["all"];
        let expected = ticks("all", f, ANCHOR_MS, ANCHOR_MS + 60_000);
        assert_eq!(expected.len(), 60);
        assert_eq!(expected[0].2, rfc3339(ANCHOR_MS + 1000));
        assert_eq!(expected[59].2, rfc3339(ANCHOR_MS + 60_000));
        assert_eq!(policy(f), Policy { overlap: Overlap::Allow, catch_up: CatchUp::All, catch_up_window_s: 600 });
        assert_eq!(policy(&spec.functions["none"]).catch_up, CatchUp::None);
        // Every tick recorded once passes; a scheduler that stopped 25 s in does not.
        assert!(checker::check(&runs_until("all", ANCHOR_MS + 60_000), &expected, &policy(f)).is_empty());
        let stopped = checker::check(&runs_until("all", ANCHOR_MS + 25_000), &expected, &policy(f));
        assert_eq!(stopped.len(), 35, "{stopped:?}");
    }
}
