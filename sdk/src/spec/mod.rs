//! The app spec: what `flotilla app deploy app.toml` reads.
//!
//! ```toml
//! name = "etl"
//!
//! [functions.tick]
//! image = "flotilla/busybox"
//! command = ["sh", "-c", "cat; date +%s"]
//! mode = "exec"                 # exec | worker
//! cpu = 0.5                     # cores
//! memory_mib = 256
//! gpu = "any:1"                 # MODEL:N or any:N; omit for none
//! min_containers = 0
//! max_containers = 4
//! buffer_containers = 0
//! scaledown_window_s = 60
//! concurrency = 1               # inputs at once per container
//! timeout_s = 60
//! retries = 2                   # or { max = 2, initial_delay_ms = 1000, backoff = 2.0 }
//! env = { KEY = "value" }
//! schedule = { cron = "*/5 * * * *", timezone = "UTC" }   # or { period = "10s" }
//! overlap = "allow"             # allow | skip | buffer_one
//! catch_up = "latest"           # none | latest | all
//! catch_up_window_s = 3600
//! ```
//!
//! # Design
//!
//! **Two layers of types.** The public types ([`AppSpec`], [`FunctionSpec`],
//! [`Schedule`], ...) are the canonical form: every field present, defaults
//! already applied, strings such as `"10s"` or `"H100:2"` already decoded.
//! The server stores them as JSON and sends that JSON to clients, so they
//! round-trip through `serde_json` unchanged. Users write TOML in a looser
//! shape (optional keys, `retries = 2` *or* a table, `period = "1h30m"`,
//! an `anchor` as a TOML date-time or string), so TOML goes through private
//! `raw` structs: every key optional, `#[serde(deny_unknown_fields)]`, read
//! with `serde_path_to_error` so that an unknown or mistyped key is reported
//! with its full path (`functions.tick.schedul: unknown field, ...`). The raw
//! form is then converted (defaults applied) and [`AppSpec::validate`] checks
//! every rule. `validate` works on the public types alone, so specs decoded
//! from JSON or built in code are checked the same way.
//!
//! **Errors name the field.** [`SpecError::Invalid`] carries the dotted path
//! of the offending field (`functions.tick.max_containers`,
//! `functions.tick.command[0]`, `functions."a.b".image` for keys that are
//! not bare TOML keys) and a message such as `must be >= min_containers (2)`.
//! Validation stops at the first problem, visiting functions by name and
//! fields in declaration order.
//!
//! # Defaults and limits
//!
//! | key | default | accepted |
//! |---|---|---|
//! | `mode` | `exec` | `exec`, `worker` |
//! | `cpu` | 0.5 cores | finite, > 0, <= 256 |
//! | `memory_mib` | 256 | 16 ..= 1048576 |
//! | `gpu` | none | `MODEL:N` / `any:N`, N 1 ..= 16, MODEL `[A-Za-z0-9_-]+` |
//! | `min_containers` | 0 | 0 ..= `max_containers` |
//! | `max_containers` | 4 | 1 ..= 1000 |
//! | `buffer_containers` | 0 | 0 ..= `max_containers` |
//! | `scaledown_window_s` | 60 | >= 1 |
//! | `concurrency` | 1 | 1 ..= 1000 (also in worker mode) |
//! | `timeout_s` | 60 | 1 ..= 86400 |
//! | `retries` | 0 (1000 ms, x2.0) | max 0 ..= 10, delay <= 3600000 ms, backoff finite >= 1.0 |
//! | `env` | empty | keys `[A-Za-z_][A-Za-z0-9_]*`, values without NUL |
//! | `schedule` | none | exactly one of `cron` / `period` |
//! | `schedule.timezone` | `UTC` | an IANA name known to chrono-tz (cron only) |
//! | `schedule.period` | | `500ms`, `10s`, `5m`, `1h30m`, `2d`: 1s ..= 366d |
//! | `overlap` | `allow` | `allow`, `skip`, `buffer_one` |
//! | `catch_up` | `none` | `none`, `latest`, `all` |
//! | `catch_up_window_s` | 3600 | 0 ..= 604800 (7 days) |
//!
//! The values live in [`defaults`] and [`limits`].
//!
//! # Schedules
//!
//! **Cron** expressions have 5 fields (minute, hour, day of month, month,
//! day of week), or 6 with seconds first (`*/10 * * * * *`), parsed by `croner`: `*`, lists, ranges, steps, month
//! and weekday names (`JAN`, `MON`, case-insensitive), `0` and `7` both
//! Sunday, and croner's extensions (`L`, `W`, `#`, `@daily`, ...). When both
//! day of month and day of week are restricted a day matching either fires
//! (Vixie cron). Patterns that can never fire (`0 0 30 2 *`) are rejected.
//!
//! A cron schedule is a set of wall-clock times in its time zone; each is
//! placed on the time line by one rule, whatever the pattern:
//! - a time that exists once fires at that instant;
//! - a time in a repeated hour (clocks go back) fires once, at its first
//!   occurrence (e.g. `30 1 * * *` in `America/New_York` on 2026-11-01 fires
//!   at 01:30 EDT only; `*/30` fires at 01:00 and 01:30 EDT, then 02:00 EST);
//! - a time in a gap (clocks go forward) fires once at the first valid
//!   instant after the gap (`30 2 * * *` on 2026-03-08 fires at 03:00 EDT);
//!   several gap times that move to the same instant fire once.
//!
//! **Period** schedules are anchored, not drifting: they fire at
//! `anchor + k * period` for k = 0, 1, 2, ... where `anchor` is the spec's
//! own (first fire at the anchor itself) or the `default_anchor` the caller
//! passes to [`Schedule::next_fires`] (typically the deploy time). A late
//! run never shifts later fires.

mod app;
pub mod defaults;
mod duration;
mod error;
mod function;
mod image;
pub mod limits;
mod names;
mod raw;
mod schedule;
#[cfg(test)]
mod tests;

pub use app::AppSpec;
pub use duration::{format_duration_ms, parse_duration_ms};
pub use error::SpecError;
pub use function::{CatchUp, FunctionSpec, GpuRequest, ImageBuild, Mode, Overlap, RetryPolicy, CODE_DIR};
pub use schedule::Schedule;
