//! Schedules: cron expressions evaluated in a time zone, or fixed periods
//! anchored to an instant. See the module docs for the DST rules.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

use super::error::{invalid, join, SpecError};
use super::{format_duration_ms, limits};

/// When a function runs on its own.
///
/// In TOML: `schedule = { cron = "*/5 * * * *", timezone = "UTC" }` or
/// `schedule = { period = "10s", anchor = 2026-01-01T00:00:00Z }`.
/// In JSON it is tagged: `{"kind": "cron", "expr": ..., "timezone": ...}` or
/// `{"kind": "period", "every_ms": ..., "anchor": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// A 5-field Unix crontab expression (minute hour day-of-month month
    /// day-of-week), or 6 fields with seconds first, or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, evaluated on the wall clock of `timezone`.
    Cron {
        /// The expression as written, e.g. `*/5 * * * *`, `0 9 * * MON-FRI` or `*/10 * * * * *`.
        expr: String,
        /// IANA time zone name the expression is evaluated in, e.g. `Europe/Berlin`.
        timezone: String,
    },
    /// Fires at `anchor + k * every_ms` for k = 0, 1, 2, ...
    Period {
        /// The period, in milliseconds (at least 1000).
        every_ms: u64,
        /// The first fire; `None` to use the caller's default anchor
        /// (typically the deploy time).
        anchor: Option<DateTime<Utc>>,
    },
}

/// Parses a 5-field crontab expression, or 6 fields with seconds first (no year field).
pub(crate) fn parse_cron(expr: &str) -> Result<Cron, String> {
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    parser.parse(expr).map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// Parses an IANA time zone name (case-sensitive, as in the tz database).
pub(crate) fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name:?} (expected an IANA name such as \"UTC\" or \"Europe/Berlin\")"))
}

impl Schedule {
    /// Checks the schedule; `path` is its path, e.g. `functions.tick.schedule`.
    /// Errors about `every_ms` name the TOML key, `period`.
    pub(crate) fn validate(&self, path: &str) -> Result<(), SpecError> {
        match self {
            Schedule::Cron { expr, timezone } => {
                let cron = parse_cron(expr).map_err(|m| invalid(join(path, "cron"), m))?;
                parse_timezone(timezone).map_err(|m| invalid(join(path, "timezone"), m))?;
                // Patterns such as "0 0 30 2 *" parse but never fire.
                let probe = DateTime::<Utc>::UNIX_EPOCH;
                if cron.find_next_occurrence(&probe, false).is_err() {
                    return Err(invalid(join(path, "cron"), format!("cron expression {expr:?} never fires")));
                }
                Ok(())
            }
            Schedule::Period { every_ms, .. } => {
                if limits::PERIOD_MS.contains(every_ms) {
                    Ok(())
                } else {
                    Err(invalid(
                        join(path, "period"),
                        format!("must be between 1s and 366d (got {})", format_duration_ms(*every_ms)),
                    ))
                }
            }
        }
    }

    /// The next `n` fire instants strictly after `after`, in order.
    ///
    /// `default_anchor` is the anchor of a period schedule that has none of
    /// its own; cron schedules ignore it. Returns fewer than `n` instants (or
    /// none) only when the schedule is invalid or runs out of representable
    /// time; call [`AppSpec::validate`](super::AppSpec::validate) first.
    pub fn next_fires(&self, after: DateTime<Utc>, n: usize, default_anchor: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        match self {
            Schedule::Cron { expr, timezone } => cron_fires(expr, timezone, after, n),
            Schedule::Period { every_ms, anchor } => {
                period_fires(*every_ms, anchor.unwrap_or(default_anchor), after, n)
            }
        }
    }
}

/// Cron fires. Croner walks the wall clock (fed as UTC, so it sees no DST);
/// each matching wall-clock time is then placed on the time line by
/// [`wall_to_instant`], and duplicates (several gap times moved to the same
/// instant) are dropped. That mapping never goes backwards, so the result is
/// sorted.
fn cron_fires(expr: &str, timezone: &str, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let (Ok(cron), Ok(tz)) = (parse_cron(expr), parse_timezone(timezone)) else {
        return Vec::new();
    };
    let wall_after = after.with_timezone(&tz).naive_local();
    // Whole seconds: croner steps one second past an exclusive start.
    let Some(mut cursor) = wall_after.with_nanosecond(0).map(|t| t.and_utc()) else {
        return Vec::new();
    };
    let mut fires: Vec<DateTime<Utc>> = Vec::with_capacity(n.min(1024));
    while fires.len() < n {
        let Ok(wall) = cron.find_next_occurrence(&cursor, false) else {
            break;
        };
        cursor = wall;
        let Some(instant) = wall_to_instant(&tz, wall.naive_utc()) else {
            break;
        };
        // Wall times after `wall_after` can still map to instants at or
        // before `after` when `after` lies in the second pass of a repeated hour.
        if instant > after && fires.last().is_none_or(|last| *last < instant) {
            fires.push(instant);
        }
    }
    fires
}

/// Places a wall-clock time of `tz` on the time line: the instant itself when
/// unique, the first of the two in a repeated (fall-back) range, and the
/// first instant after the gap for a time skipped by a spring-forward.
fn wall_to_instant(tz: &Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // Gaps end on a whole minute; the longest on record is a day.
            let start = wall.with_second(0)?;
            (1..=48 * 60).find_map(|minutes| {
                let probe = start.checked_add_signed(TimeDelta::minutes(minutes))?;
                tz.from_local_datetime(&probe).earliest().map(|t| t.with_timezone(&Utc))
            })
        }
    }
}

/// Period fires: `anchor + k * every_ms` for the smallest k >= 0 that lands
/// strictly after `after`, then the next ones.
fn period_fires(every_ms: u64, anchor: DateTime<Utc>, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let Ok(every) = i64::try_from(every_ms) else {
        return Vec::new();
    };
    if every == 0 {
        return Vec::new();
    }
    let first_k = if after < anchor {
        0
    } else {
        // num_milliseconds truncates; for a non-negative span that is the
        // floor, and k * every > span holds exactly when k * every > floor.
        (after - anchor).num_milliseconds() / every + 1
    };
    (0..n)
        .map_while(|i| {
            let k = first_k.checked_add(i64::try_from(i).ok()?)?;
            let offset = TimeDelta::try_milliseconds(k.checked_mul(every)?)?;
            anchor.checked_add_signed(offset)
        })
        .collect()
}
