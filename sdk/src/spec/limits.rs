//! Accepted ranges of the numeric fields, inclusive at both ends.
//!
//! Both the TOML parser and [`AppSpec::validate`](super::AppSpec::validate)
//! check against these, so the two always agree.

use std::ops::RangeInclusive;

/// `cpu`, in cores: must also be finite and strictly greater than zero.
pub const CPU_MAX: f64 = 256.0;
/// `memory_mib`, in MiB (16 MiB to 1 TiB).
pub const MEMORY_MIB: RangeInclusive<u64> = 16..=1_048_576;
/// The `N` of `gpu = "MODEL:N"`, in devices.
pub const GPU_COUNT: RangeInclusive<u64> = 1..=16;
/// `min_containers`, in containers (also bounded by `max_containers`).
pub const MIN_CONTAINERS: RangeInclusive<u64> = 0..=1000;
/// `max_containers`, in containers.
pub const MAX_CONTAINERS: RangeInclusive<u64> = 1..=1000;
/// `buffer_containers`, in containers (also bounded by `max_containers`).
pub const BUFFER_CONTAINERS: RangeInclusive<u64> = 0..=1000;
/// `scaledown_window_s`, in seconds.
pub const SCALEDOWN_WINDOW_S: RangeInclusive<u64> = 1..=u64::MAX;
/// `concurrency`, in inputs at once per container.
pub const CONCURRENCY: RangeInclusive<u64> = 1..=1000;
/// `timeout_s`, in seconds (one day at most).
pub const TIMEOUT_S: RangeInclusive<u64> = 1..=86_400;
/// `retries.max`, in retries.
pub const RETRY_MAX: RangeInclusive<u64> = 0..=10;
/// `retries.initial_delay_ms`, in milliseconds (one hour at most).
pub const RETRY_INITIAL_DELAY_MS: RangeInclusive<u64> = 0..=3_600_000;
/// `retries.backoff`: must also be finite.
pub const RETRY_BACKOFF_MIN: f64 = 1.0;
/// `catch_up_window_s`, in seconds (seven days at most).
pub const CATCH_UP_WINDOW_S: RangeInclusive<u64> = 0..=604_800;
/// `runs_kept`, in runs.
pub const RUNS_KEPT: RangeInclusive<u64> = 1..=100_000;
/// `schedule.period`, in milliseconds (one second to 366 days).
pub const PERIOD_MS: RangeInclusive<u64> = 1_000..=31_622_400_000;
/// Length of the app name and of function names, in characters.
pub const NAME_LEN: RangeInclusive<usize> = 1..=63;
