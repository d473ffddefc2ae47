//! One function of an app: what to run, on what resources, how to scale and
//! retry it, and optionally when to run it on a schedule.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{check_range, index, invalid, join, SpecError};
use super::{defaults, image, limits, names, Schedule};

/// How a container runs inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One process per input: the input arrives on stdin, stdout is the output.
    #[default]
    Exec,
    /// A long-running process that pulls inputs itself.
    Worker,
}

/// What a schedule does when a fire is due while the previous run still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start the new run anyway.
    #[default]
    Allow,
    /// Drop the new run.
    Skip,
    /// Keep at most one pending run, started when the current one ends.
    BufferOne,
}

/// What a schedule does with fires missed while the cluster was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Forget missed fires.
    #[default]
    None,
    /// Run once for the most recent missed fire.
    Latest,
    /// Run every missed fire, in order.
    All,
}

/// A GPU request, written `MODEL:N` or `any:N` in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuRequest {
    /// GPU model such as `H100` (`[A-Za-z0-9_-]+`), or `None` for any model.
    pub model: Option<String>,
    /// Number of GPUs per container, 1 to 16.
    pub count: u32,
}

impl fmt::Display for GpuRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.model.as_deref().unwrap_or("any"), self.count)
    }
}

impl FromStr for GpuRequest {
    type Err = String;

    /// Parses `MODEL:N` or `any:N` (`any` in any case). The count range is
    /// checked by validation, not here.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected MODEL:N or any:N, e.g. \"H100:1\" (got {s:?})");
        let (model, count) = s.split_once(':').ok_or_else(bad)?;
        if count.is_empty() || !count.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let count: u32 = count.parse().map_err(|_| format!("GPU count must be between 1 and 16 (got {count})"))?;
        check_gpu_model(model).map_err(|_| bad())?;
        let model = (!model.eq_ignore_ascii_case("any")).then(|| model.to_string());
        Ok(GpuRequest { model, count })
    }
}

fn check_gpu_model(model: &str) -> Result<(), String> {
    if !model.is_empty() && model.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err(format!("GPU model must match [A-Za-z0-9_-]+ (got {model:?})"))
    }
}

/// How failed inputs are retried. In TOML either `retries = 2` (defaults for
/// the rest) or `retries = { max = 2, initial_delay_ms = 1000, backoff = 2.0 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt, 0 to 10 (0: no retry).
    pub max: u32,
    /// Delay before the first retry, in milliseconds (at most one hour).
    pub initial_delay_ms: u64,
    /// Factor applied to the delay after each retry, finite and >= 1.0.
    pub backoff: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max: defaults::RETRY_MAX,
            initial_delay_ms: defaults::RETRY_INITIAL_DELAY_MS,
            backoff: defaults::RETRY_BACKOFF,
        }
    }
}

impl RetryPolicy {
    /// `max` retries with the default delay and backoff (the `retries = N` form).
    pub fn with_max(max: u32) -> Self {
        RetryPolicy { max, ..RetryPolicy::default() }
    }

    pub(crate) fn validate(&self, path: &str) -> Result<(), SpecError> {
        check_range(&join(path, "max"), self.max.into(), &limits::RETRY_MAX)?;
        check_range(&join(path, "initial_delay_ms"), self.initial_delay_ms.into(), &limits::RETRY_INITIAL_DELAY_MS)?;
        if !(self.backoff.is_finite() && self.backoff >= limits::RETRY_BACKOFF_MIN) {
            return Err(invalid(
                join(path, "backoff"),
                format!("must be a finite number >= 1.0 (got {})", self.backoff),
            ));
        }
        Ok(())
    }
}

/// One function of an app. See the module docs for the TOML form and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// Container image reference, e.g. `flotilla/busybox` or `ghcr.io/org/app:1.2`.
    pub image: String,
    /// Program and arguments run in the container; never empty.
    pub command: Vec<String>,
    /// How inputs reach the process.
    pub mode: Mode,
    /// CPU per container, in cores (fractional allowed, > 0 and <= 256).
    pub cpu: f64,
    /// Memory per container, in MiB (16 to 1048576).
    pub memory_mib: u64,
    /// GPUs per container; `None` for none.
    pub gpu: Option<GpuRequest>,
    /// Containers kept running even when idle, in containers.
    pub min_containers: u32,
    /// Upper bound on running containers, in containers (1 to 1000, >= `min_containers`).
    pub max_containers: u32,
    /// Idle containers kept warm beyond current demand, in containers (<= `max_containers`).
    pub buffer_containers: u32,
    /// How long a container may sit idle before it is stopped, in seconds (>= 1).
    pub scaledown_window_s: u64,
    /// Inputs one container handles at once, 1 to 1000.
    pub concurrency: u32,
    /// Time limit for one input, in seconds (1 to 86400).
    pub timeout_s: u64,
    /// Retry policy for failed inputs.
    pub retries: RetryPolicy,
    /// Environment variables set in the container (names `[A-Za-z_][A-Za-z0-9_]*`).
    pub env: BTreeMap<String, String>,
    /// When to run the function on its own; `None` for on-demand only.
    pub schedule: Option<Schedule>,
    /// What a schedule does when a fire is due while the previous run still runs.
    pub overlap: Overlap,
    /// What a schedule does with fires missed while the cluster was down.
    pub catch_up: CatchUp,
    /// How far back missed fires are considered, in seconds (at most 7 days).
    pub catch_up_window_s: u64,
    /// Final runs of the schedule the cluster keeps, newest first (1 to 100000); older ones
    /// are compacted away, as are runs older than the cluster's retention window.
    #[serde(default = "defaults::runs_kept")]
    pub runs_kept: u32,
    /// `image = { dockerfile, context }`: the image is built from this context at deploy
    /// ([`crate::Client::build_app_images`]), which then sets `image` and clears this. Never
    /// sent to the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<ImageBuild>,
    /// A writable root filesystem for the function's containers (read-only by default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable_rootfs: bool,
    /// A tar archive in the cluster's blob store, by its hex sha256 (what `PutBlob`
    /// answered; [`crate::Client::put_blob`]), unpacked at [`CODE_DIR`] in each of the
    /// function's containers before its command starts (the image needs `tar`). Python apps
    /// ship their module and local packages this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Where a function's `code` is unpacked in its containers (also in their `FLOTILLA_CODE`).
pub const CODE_DIR: &str = "/tmp/flotilla/code";

/// An image to build at deploy: the context folder and the Dockerfile's path inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBuild {
    /// Path of the Dockerfile, relative to `context` (default `Dockerfile`).
    pub dockerfile: String,
    /// The context folder; relative paths are relative to the app spec file's folder.
    pub context: String,
}

impl FunctionSpec {
    /// A function running `command` in `image`, every other field at its default.
    pub fn new(image: impl Into<String>, command: Vec<String>) -> Self {
        FunctionSpec {
            image: image.into(),
            command,
            mode: Mode::default(),
            cpu: defaults::CPU,
            memory_mib: defaults::MEMORY_MIB,
            gpu: None,
            min_containers: defaults::MIN_CONTAINERS,
            max_containers: defaults::MAX_CONTAINERS,
            buffer_containers: defaults::BUFFER_CONTAINERS,
            scaledown_window_s: defaults::SCALEDOWN_WINDOW_S,
            concurrency: defaults::CONCURRENCY,
            timeout_s: defaults::TIMEOUT_S,
            retries: RetryPolicy::default(),
            env: BTreeMap::new(),
            schedule: None,
            overlap: Overlap::default(),
            catch_up: CatchUp::default(),
            catch_up_window_s: defaults::CATCH_UP_WINDOW_S,
            runs_kept: defaults::RUNS_KEPT,
            build: None,
            writable_rootfs: false,
            code: None,
        }
    }

    /// Checks every rule; `path` is this function's path, e.g. `functions.tick`.
    pub(crate) fn validate(&self, path: &str) -> Result<(), SpecError> {
        let at = |field: &str| join(path, field);
        match &self.build {
            Some(build) if build.context.is_empty() => {
                return Err(invalid(join(&at("image"), "context"), "must not be empty"))
            }
            Some(build) if build.dockerfile.is_empty() => {
                return Err(invalid(join(&at("image"), "dockerfile"), "must not be empty"))
            }
            Some(_) => {}
            None => image::check_image(&self.image).map_err(|m| invalid(at("image"), m))?,
        }
        self.validate_command(&at("command"))?;
        if let Some(code) = &self.code {
            if code.len() != 64 || !code.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(invalid(
                    at("code"),
                    format!("must be a blob's sha256, 64 lowercase hex digits (got {code:?})"),
                ));
            }
        }
        if !(self.cpu.is_finite() && self.cpu > 0.0 && self.cpu <= limits::CPU_MAX) {
            return Err(invalid(at("cpu"), format!("must be a finite number > 0 and <= 256 (got {})", self.cpu)));
        }
        check_range(&at("memory_mib"), self.memory_mib.into(), &limits::MEMORY_MIB)?;
        if let Some(gpu) = &self.gpu {
            if let Some(model) = &gpu.model {
                check_gpu_model(model).map_err(|m| invalid(at("gpu"), m))?;
            }
            if !limits::GPU_COUNT.contains(&u64::from(gpu.count)) {
                return Err(invalid(at("gpu"), format!("GPU count must be between 1 and 16 (got {})", gpu.count)));
            }
        }
        self.validate_scaling(path)?;
        self.retries.validate(&at("retries"))?;
        for (key, value) in &self.env {
            let key_path = join(&at("env"), key);
            names::check_env_key(key).map_err(|m| invalid(&key_path, m))?;
            if value.contains('\0') {
                return Err(invalid(key_path, "must not contain NUL characters"));
            }
        }
        if let Some(schedule) = &self.schedule {
            schedule.validate(&at("schedule"))?;
        }
        check_range(&at("catch_up_window_s"), self.catch_up_window_s.into(), &limits::CATCH_UP_WINDOW_S)?;
        check_range(&at("runs_kept"), self.runs_kept.into(), &limits::RUNS_KEPT)
    }

    fn validate_command(&self, path: &str) -> Result<(), SpecError> {
        if self.command.is_empty() {
            return Err(invalid(path, "must be a non-empty array"));
        }
        if self.command[0].is_empty() {
            return Err(invalid(index(path, 0), "must not be empty"));
        }
        match self.command.iter().position(|arg| arg.contains('\0')) {
            Some(i) => Err(invalid(index(path, i), "must not contain NUL characters")),
            None => Ok(()),
        }
    }

    fn validate_scaling(&self, path: &str) -> Result<(), SpecError> {
        let at = |field: &str| join(path, field);
        check_range(&at("min_containers"), self.min_containers.into(), &limits::MIN_CONTAINERS)?;
        check_range(&at("max_containers"), self.max_containers.into(), &limits::MAX_CONTAINERS)?;
        if self.max_containers < self.min_containers {
            return Err(invalid(at("max_containers"), format!("must be >= min_containers ({})", self.min_containers)));
        }
        check_range(&at("buffer_containers"), self.buffer_containers.into(), &limits::BUFFER_CONTAINERS)?;
        if self.buffer_containers > self.max_containers {
            return Err(invalid(
                at("buffer_containers"),
                format!("must be <= max_containers ({})", self.max_containers),
            ));
        }
        check_range(&at("scaledown_window_s"), self.scaledown_window_s.into(), &limits::SCALEDOWN_WINDOW_S)?;
        check_range(&at("concurrency"), self.concurrency.into(), &limits::CONCURRENCY)?;
        check_range(&at("timeout_s"), self.timeout_s.into(), &limits::TIMEOUT_S)
    }
}
