//! Which ticks of a due schedule to fire and which to record as skipped: pure, so the catch-up
//! rules are table-tested without a cluster.
//!
//! A tick fired within [`ON_TIME_MS`] of its time is on time and always fires. A later one was
//! missed (no leader could fire it: an outage, a long election) and the schedule's `catch_up`
//! decides: `none` skips it, `all` fires it if it is within `catch_up_window_s`, `latest`
//! fires only the last missed tick within the window. Skipped ticks are recorded one call per
//! tick; a run of more than [`MERGE_SKIPS_OVER`] of them (a long outage of a fast schedule) is
//! recorded as one call for the whole range, so a day's outage of a 1-second schedule does not
//! add 86,400 records to the catalog.

use chrono::{DateTime, Utc};
use flotilla::spec::Schedule;
use flotilla_raft::{CatchUp, ScheduleRecord};

/// How late a tick may be fired and still count as on time, ms. Leader failover takes about
/// 2 s here, so a leader change alone never makes a tick "missed".
pub const ON_TIME_MS: i64 = 5_000;
/// Skipped ticks in a row beyond which they are recorded as one range.
pub const MERGE_SKIPS_OVER: usize = 100;
/// Ticks looked at per schedule and round, which bounds the work of one round after a very
/// long outage; the next round goes on from where this one stopped.
const ENUMERATE_MAX: usize = 100_000;

/// One tick to propose: fire it, or record it as skipped for `skip`'s reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub scheduled_at_ms: i64,
    /// The tick after it (after the whole range, for a merged skip); `None` if there is none.
    pub next_fire_at_ms: Option<i64>,
    pub skip: Option<String>,
}

/// The ticks of `s` (whose parsed spec is `spec`) due at `now_ms`, in order, at most `max`
/// of them (the rest are planned on the next round, from the schedule's new next tick).
pub fn plan(s: &ScheduleRecord, spec: &Schedule, now_ms: i64, max: usize) -> Vec<Tick> {
    let mut out = Vec::new();
    let mut skips: Vec<Tick> = Vec::new();
    let mut t = s.next_fire_at_ms;
    let window_ms = i64::try_from(s.catch_up_window_s).unwrap_or(i64::MAX / 2).saturating_mul(1000);
    // What `out` will hold once the pending skips are flushed.
    let planned =
        |out: &Vec<Tick>, skips: &Vec<Tick>| out.len() + if skips.len() > MERGE_SKIPS_OVER { 1 } else { skips.len() };
    let mut seen = 0;
    while let Some(at) = t.filter(|at| *at <= now_ms) {
        if seen == ENUMERATE_MAX || planned(&out, &skips) >= max {
            break;
        }
        seen += 1;
        let next = next_after(spec, s.anchor_ms, at);
        match skip_reason(s.catch_up, window_ms, at, next, now_ms) {
            None => {
                flush(&mut out, &mut skips);
                out.push(Tick { scheduled_at_ms: at, next_fire_at_ms: next, skip: None });
            }
            Some(reason) => skips.push(Tick { scheduled_at_ms: at, next_fire_at_ms: next, skip: Some(reason) }),
        }
        t = next;
    }
    flush(&mut out, &mut skips);
    out
}

/// The tick after `at_ms`.
pub fn next_after(spec: &Schedule, anchor_ms: i64, at_ms: i64) -> Option<i64> {
    let at = DateTime::<Utc>::from_timestamp_millis(at_ms)?;
    let anchor = DateTime::<Utc>::from_timestamp_millis(anchor_ms)?;
    spec.next_fires(at, 1, anchor).first().map(|t| t.timestamp_millis())
}

/// Why the catch-up policy drops the tick at `at`, or `None` to fire it.
fn skip_reason(policy: CatchUp, window_ms: i64, at: i64, next: Option<i64>, now_ms: i64) -> Option<String> {
    let late = now_ms - at;
    if late <= ON_TIME_MS {
        return None;
    }
    let late_s = late as f64 / 1000.0;
    let in_window = late <= window_ms;
    match policy {
        CatchUp::None => Some(format!("missed by {late_s:.1} s; catch_up=none")),
        CatchUp::All | CatchUp::Latest if !in_window => {
            Some(format!("missed by {late_s:.1} s, beyond catch_up_window_s ({} s)", window_ms / 1000))
        }
        CatchUp::All => None,
        CatchUp::Latest => {
            // The last missed tick is the one whose successor is on time (or not due yet).
            let next_missed = next.is_some_and(|n| now_ms - n > ON_TIME_MS);
            next_missed.then(|| format!("missed by {late_s:.1} s; catch_up=latest runs a later missed tick"))
        }
    }
}

/// Moves the pending skips to `out`: one tick each, or one merged tick for a long run.
fn flush(out: &mut Vec<Tick>, skips: &mut Vec<Tick>) {
    if skips.len() <= MERGE_SKIPS_OVER {
        out.append(skips);
        return;
    }
    let (first, last) = (&skips[0], &skips[skips.len() - 1]);
    let until = DateTime::<Utc>::from_timestamp_millis(last.scheduled_at_ms).map_or(String::new(), |t| t.to_rfc3339());
    let reason = format!(
        "{} ({} ticks in a row, up to {until}, are recorded by this one run)",
        first.skip.as_deref().unwrap_or("skipped"),
        skips.len()
    );
    out.push(Tick {
        scheduled_at_ms: first.scheduled_at_ms,
        next_fire_at_ms: last.next_fire_at_ms,
        skip: Some(reason),
    });
    skips.clear();
}

#[cfg(test)]
mod tests {
    use flotilla_raft::Overlap;

    use super::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const SEC: i64 = 1_000;

    fn every_second() -> Schedule {
        Schedule::Period { every_ms: 1_000, anchor: None }
    }

    fn record(next: i64, catch_up: CatchUp, window_s: u64) -> ScheduleRecord {
        ScheduleRecord {
            app: "etl".into(),
            function: "tick".into(),
            spec_json: String::new(),
            anchor_ms: T0,
            revision: 1,
            next_fire_at_ms: Some(next),
            last_fired_at_ms: None,
            last_fired_by: None,
            active_call: None,
            buffered_call: None,
            paused: false,
            overlap: Overlap::Allow,
            catch_up,
            catch_up_window_s: window_s,
            created_at_ms: T0,
            updated_at_ms: T0,
        }
    }

    /// (scheduled_at - T0 in seconds, fired?) for each planned tick.
    fn shape(ticks: &[Tick]) -> Vec<(i64, bool)> {
        ticks.iter().map(|t| ((t.scheduled_at_ms - T0) / SEC, t.skip.is_none())).collect()
    }

    #[test]
    fn on_time_ticks_fire_whatever_the_policy() {
        for policy in [CatchUp::None, CatchUp::Latest, CatchUp::All] {
            // Ticks 1..=3 are due at 3.5 s: at most 2.5 s late.
            let ticks = plan(&record(T0 + SEC, policy, 0), &every_second(), T0 + 3_500, 100);
            assert_eq!(shape(&ticks), [(1, true), (2, true), (3, true)], "{policy:?}");
            assert_eq!(ticks[2].next_fire_at_ms, Some(T0 + 4 * SEC));
        }
    }

    #[test]
    fn nothing_is_due_before_the_next_tick() {
        assert!(plan(&record(T0 + SEC, CatchUp::All, 60), &every_second(), T0 + 999, 100).is_empty());
    }

    #[test]
    fn catch_up_after_a_twenty_second_outage() {
        // Ticks 1..=20 are due at 20 s: 1..=14 are missed (more than 5 s late), 15..=20 on time.
        let now = T0 + 20 * SEC;
        let on_time: Vec<(i64, bool)> = (15..=20).map(|k| (k, true)).collect();
        let none = plan(&record(T0 + SEC, CatchUp::None, 3600), &every_second(), now, 100);
        assert_eq!(shape(&none), [(1..=14).map(|k| (k, false)).collect(), on_time.clone()].concat());
        assert!(none[0].skip.as_deref().unwrap().contains("catch_up=none"));
        // all, with a 10 s window: ticks 10..=14 are caught up, 1..=9 are too old.
        let all = plan(&record(T0 + SEC, CatchUp::All, 10), &every_second(), now, 100);
        let want: Vec<(i64, bool)> = (1..=20).map(|k| (k, k >= 10)).collect();
        assert_eq!(shape(&all), want);
        assert!(all[0].skip.as_deref().unwrap().contains("beyond catch_up_window_s (10 s)"));
        // latest: only tick 14, the last missed one, is caught up.
        let latest = plan(&record(T0 + SEC, CatchUp::Latest, 3600), &every_second(), now, 100);
        let want: Vec<(i64, bool)> = (1..=20).map(|k| (k, k >= 14)).collect();
        assert_eq!(shape(&latest), want);
        assert!(latest[0].skip.as_deref().unwrap().contains("catch_up=latest"));
        // latest, with the last missed tick outside the window: nothing is caught up.
        let old = plan(&record(T0 + SEC, CatchUp::Latest, 5), &every_second(), now, 100);
        assert_eq!(shape(&old), [(1..=14).map(|k| (k, false)).collect(), on_time].concat());
    }

    #[test]
    fn every_tick_is_planned_once_and_in_order() {
        let ticks = plan(&record(T0 + SEC, CatchUp::Latest, 8), &every_second(), T0 + 30 * SEC, 1000);
        for w in ticks.windows(2) {
            assert_eq!(w[0].next_fire_at_ms, Some(w[1].scheduled_at_ms));
        }
        assert_eq!(ticks.len(), 30);
    }

    #[test]
    fn a_long_run_of_skips_is_one_record_for_the_range() {
        // A day's outage of a 1-second schedule with catch_up=none.
        let now = T0 + 86_400 * SEC;
        let ticks = plan(&record(T0 + SEC, CatchUp::None, 3600), &every_second(), now, 1000);
        let first = &ticks[0];
        assert_eq!(first.scheduled_at_ms, T0 + SEC);
        assert!(first.skip.as_deref().unwrap().contains("ticks in a row"), "{:?}", first.skip);
        // The range ends where enumeration stopped; the next round goes on from there.
        assert!(ticks.len() <= 1000);
        for w in ticks.windows(2) {
            assert_eq!(w[0].next_fire_at_ms, Some(w[1].scheduled_at_ms));
        }
    }

    #[test]
    fn at_most_max_ticks_per_round() {
        let ticks = plan(&record(T0 + SEC, CatchUp::All, 3600), &every_second(), T0 + 600 * SEC, 50);
        assert_eq!(ticks.len(), 50);
        assert_eq!(ticks[49].next_fire_at_ms, Some(T0 + 51 * SEC));
    }

    #[test]
    fn cron_ticks_follow_the_expression() {
        let spec = Schedule::Cron { expr: "*/2 * * * * *".into(), timezone: "UTC".into() };
        let ticks = plan(&record(T0 + 2 * SEC, CatchUp::All, 60), &spec, T0 + 6 * SEC, 10);
        assert_eq!(shape(&ticks), [(2, true), (4, true), (6, true)]);
        assert_eq!(ticks[2].next_fire_at_ms, Some(T0 + 8 * SEC));
    }
}
