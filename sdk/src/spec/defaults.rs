//! Default values applied when a key is omitted from `app.toml`.
//!
//! The canonical JSON form always carries every field, so these defaults are
//! only consulted when parsing TOML (and by [`FunctionSpec::new`]).
//!
//! [`FunctionSpec::new`]: super::FunctionSpec::new

/// `cpu`, in cores.
pub const CPU: f64 = 0.5;
/// `memory_mib`, in MiB.
pub const MEMORY_MIB: u64 = 256;
/// `min_containers`, in containers.
pub const MIN_CONTAINERS: u32 = 0;
/// `max_containers`, in containers.
pub const MAX_CONTAINERS: u32 = 4;
/// `buffer_containers`, in containers.
pub const BUFFER_CONTAINERS: u32 = 0;
/// `scaledown_window_s`, in seconds.
pub const SCALEDOWN_WINDOW_S: u64 = 60;
/// `concurrency`, in inputs at once per container.
pub const CONCURRENCY: u32 = 1;
/// `timeout_s`, in seconds per input.
pub const TIMEOUT_S: u64 = 60;
/// `retries.max` (and `retries` when omitted), in retries after the first attempt.
pub const RETRY_MAX: u32 = 0;
/// `retries.initial_delay_ms`, in milliseconds.
pub const RETRY_INITIAL_DELAY_MS: u64 = 1000;
/// `retries.backoff`, a multiplier applied to the delay after each retry.
pub const RETRY_BACKOFF: f64 = 2.0;
/// `schedule.timezone` for cron schedules (an IANA name).
pub const TIMEZONE: &str = "UTC";
/// `catch_up_window_s`, in seconds.
pub const CATCH_UP_WINDOW_S: u64 = 3600;
/// `runs_kept`: final runs of a schedule the catalog keeps (older ones are compacted).
pub const RUNS_KEPT: u32 = 1000;

/// [`RUNS_KEPT`] for specs recorded before the field existed.
pub(crate) fn runs_kept() -> u32 {
    RUNS_KEPT
}
