//! The schedule workload: 1-second schedules that tick through the whole run.
//!
//! [`deploy`] deploys app `chaos-sched` before the faults start: function `all` catches up
//! every missed tick (`catch_up = "all"`), function `none` skips them (`catch_up = "none"`),
//! both with `overlap = "allow"`. Their runs execute (`true` in `flotilla/busybox`), so the
//! executors claim and finish calls under the same faults. [`check`] runs after the liveness
//! phase: it reads each schedule (anchor, policies, last tick committed) and every scheduled
//! run back through the SDK (`runs ls --scheduled`), lists the ticks `anchor + k × period`
//! from each schedule's first tick to the last tick *every* schedule has committed, and hands
//! both to [`crate::check::schedule`].

use chrono::{DateTime, SecondsFormat};
use flotilla::{AppSpec, CallRecord, Client, RunsFilter, ScheduleInfo};

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

/// Deploys the schedules; their first tick is one period after the deploy.
pub async fn deploy(client: &Client) -> anyhow::Result<()> {
    client.deploy(AppSpec::from_toml_str(SPEC)?).await?;
    Ok(())
}

/// A Unix-ms time as `runs ls` prints it: RFC 3339, UTC.
fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map_or_else(|| format!("{ms} ms"), |t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn policy(s: &ScheduleInfo) -> anyhow::Result<Policy> {
    let overlap = match s.overlap.as_str() {
        "allow" => Overlap::Allow,
        "skip" => Overlap::Skip,
        "buffer_one" => Overlap::BufferOne,
        other => anyhow::bail!("{}/{}: unknown overlap {other:?}", s.app, s.function),
    };
    let catch_up = match s.catch_up.as_str() {
        "none" => CatchUp::None,
        "latest" => CatchUp::Latest,
        "all" => CatchUp::All,
        other => anyhow::bail!("{}/{}: unknown catch_up {other:?}", s.app, s.function),
    };
    Ok(Policy { overlap, catch_up, catch_up_window_s: s.catch_up_window_s })
}

/// The ticks of `s` from its first (one period after the anchor) through `until_ms`.
fn ticks(s: &ScheduleInfo, until_ms: i64) -> Vec<Tick> {
    let Some(anchor) = DateTime::from_timestamp_millis(s.anchor_ms) else { return Vec::new() };
    // Periods are at least a second, so this many ticks reach past `until_ms`.
    let n = usize::try_from((until_ms - s.anchor_ms) / 1000 + 2).unwrap_or(0);
    s.spec
        .next_fires(anchor, n, anchor)
        .into_iter()
        .map(|t| t.timestamp_millis())
        .take_while(|t| *t <= until_ms)
        .map(|t| (s.app.clone(), s.function.clone(), rfc3339(t)))
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

/// Reads the schedules and their runs back and checks every tick up to the last one all of
/// them have committed.
pub async fn check(client: &Client) -> anyhow::Result<(Vec<Violation>, Summary)> {
    let schedules = client.schedules(Some(APP)).await?;
    anyhow::ensure!(schedules.len() == 2, "{APP} has {} schedules, not 2: {schedules:?}", schedules.len());
    let Some(until_ms) = schedules.iter().map(|s| s.last_fired_at_ms).min().flatten() else {
        return Ok((
            vec![Violation::new("schedule-exactly-once", format!("a schedule never fired: {schedules:?}"))],
            Summary::default(),
        ));
    };
    let filter = RunsFilter { app: Some(APP.to_string()), scheduled: true, limit: 100_000, ..Default::default() };
    let records = client.runs(&filter).await?;
    let runs: Vec<Run> = records.iter().filter(|c| c.scheduled_at_ms.is_some_and(|t| t <= until_ms)).map(run).collect();
    let mut violations = Vec::new();
    let mut summary = Summary::default();
    for s in &schedules {
        let expected = ticks(s, until_ms);
        let mine: Vec<Run> = runs.iter().filter(|r| r.function == s.function).cloned().collect();
        summary.ticks += expected.len();
        summary.skipped += mine.iter().filter(|r| r.state == "skipped").count();
        summary.succeeded += mine.iter().filter(|r| r.state == "succeeded").count();
        violations.extend(checker::check(&mine, &expected, &policy(s)?));
    }
    Ok((violations, summary))
}
