//! Schedules on the node side: what a deploy declares ([`declare`]), which ticks are due and
//! what the catch-up policy does with late ones ([`plan`], pure), the leader's [`scheduler`]
//! loop that proposes them, and its figures ([`Stats`]).
//!
//! The exactly-once guarantee itself lives in the catalog (`flotilla_raft::catalog::schedule`):
//! `apply` accepts a Fire only for a schedule's next tick and records the tick's call in the
//! same entry. The node computes what the catalog cannot (cron in a time zone, the clock).
//! docs/architecture/schedules.md tells the whole story.

pub mod plan;
pub mod scheduler;
mod stats;

use chrono::{DateTime, Utc};
use flotilla::spec::{self, AppSpec};
use flotilla_raft::{CatchUp, Overlap, ScheduleRecord, ScheduleSpec};
pub use stats::Stats;

use crate::error::NodeError;

/// The schedules a validated `spec` declares, as deployed at `now_ms`: a period without an
/// anchor of its own is anchored at `now_ms` (the catalog keeps an unchanged schedule's
/// earlier anchor), and the first tick is the first one after `now_ms`.
pub fn declare(spec: &AppSpec, now_ms: i64) -> Result<Vec<ScheduleSpec>, NodeError> {
    let now = DateTime::<Utc>::from_timestamp_millis(now_ms).ok_or_else(|| NodeError::Internal("clock".into()))?;
    let mut out = Vec::new();
    for (function, f) in &spec.functions {
        let Some(schedule) = &f.schedule else { continue };
        let anchor = match schedule {
            spec::Schedule::Period { anchor: Some(a), .. } => *a,
            _ => now,
        };
        let spec_json = serde_json::to_string(schedule).map_err(|e| NodeError::Internal(e.to_string()))?;
        out.push(ScheduleSpec {
            function: function.clone(),
            spec_json,
            anchor_ms: anchor.timestamp_millis(),
            first_fire_at_ms: schedule.next_fires(now, 1, anchor).first().map(DateTime::timestamp_millis),
            overlap: match f.overlap {
                spec::Overlap::Allow => Overlap::Allow,
                spec::Overlap::Skip => Overlap::Skip,
                spec::Overlap::BufferOne => Overlap::BufferOne,
            },
            catch_up: match f.catch_up {
                spec::CatchUp::None => CatchUp::None,
                spec::CatchUp::Latest => CatchUp::Latest,
                spec::CatchUp::All => CatchUp::All,
            },
            catch_up_window_s: f.catch_up_window_s,
        });
    }
    Ok(out)
}

/// A fresh durable-call id: `fc-`, this node's clock, and random hex digits (the time tells a
/// compacted call from one that never existed; see `flotilla_raft::catalog::retention`).
pub fn new_call_id() -> String {
    let random = uuid::Uuid::new_v4().as_u64_pair().0;
    flotilla_raft::catalog::retention::call_id(chrono::Utc::now().timestamp_millis(), random)
}

/// The first tick of `s` after `now_ms`, for a resume.
pub fn next_tick(s: &ScheduleRecord, now_ms: i64) -> Result<Option<i64>, NodeError> {
    let spec: spec::Schedule = serde_json::from_str(&s.spec_json)
        .map_err(|e| NodeError::Internal(format!("schedule {}: stored spec does not parse: {e}", s.key())))?;
    Ok(plan::next_after(&spec, s.anchor_ms, now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_declares_each_schedule_with_its_first_tick() {
        let spec = AppSpec::from_toml_str(
            r#"name = "etl"
[functions.a]
image = "x"
command = ["true"]
schedule = { period = "10s" }
overlap = "buffer_one"
catch_up = "all"
catch_up_window_s = 30
[functions.b]
image = "x"
command = ["true"]
schedule = { cron = "0 9 * * *", timezone = "Europe/Berlin" }
[functions.c]
image = "x"
command = ["true"]
"#,
        )
        .unwrap();
        let now = 1_767_225_600_123; // 2026-01-01T00:00:00.123Z
        let d = declare(&spec, now).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].function.as_str(), d[0].anchor_ms, d[0].first_fire_at_ms), ("a", now, Some(now + 10_000)));
        assert_eq!((d[0].overlap, d[0].catch_up, d[0].catch_up_window_s), (Overlap::BufferOne, CatchUp::All, 30));
        // 09:00 in Berlin (CET, +01:00) is 08:00Z.
        assert_eq!(d[1].first_fire_at_ms, Some(1_767_225_600_000 + 8 * 3_600_000));
        assert_eq!((d[1].overlap, d[1].catch_up), (Overlap::Allow, CatchUp::None));
    }
}
