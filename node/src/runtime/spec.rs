//! Plain data types of the runtime API: what to create, what to run, what the engine reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::RuntimeError;

/// Resource limits of one sandbox container.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time in cores (1.5 = one and a half cores' worth of CPU time); must be > 0.
    pub cpu: f64,
    /// Memory limit in MiB (1 MiB = 1,048,576 bytes); swap is never allowed on top. At least 6.
    pub memory_mib: u64,
    /// Maximum number of processes and threads alive at once in the container; must be > 0.
    pub pids: i64,
}

/// Docker's smallest accepted memory limit, in MiB.
const MIN_MEMORY_MIB: u64 = 6;

impl Limits {
    /// Rejects values the engine would read as "unlimited" (0) or refuse outright.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if !(self.cpu.is_finite() && self.cpu > 0.0) {
            return Err(RuntimeError::InvalidSpec(format!("cpu must be a positive number of cores, got {}", self.cpu)));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(RuntimeError::InvalidSpec(format!(
                "memory must be at least {MIN_MEMORY_MIB} MiB, got {} MiB",
                self.memory_mib
            )));
        }
        if self.pids <= 0 {
            return Err(RuntimeError::InvalidSpec(format!("pids must be positive, got {}", self.pids)));
        }
        Ok(())
    }

    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> i64 {
        i64::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX)
    }

    /// The CPU limit in billionths of a core (Docker's `NanoCpus`).
    pub fn nano_cpus(&self) -> i64 {
        // Float-to-int `as` saturates; validate() keeps the value positive and finite.
        (self.cpu * 1e9).round() as i64
    }
}

/// What [`Docker::create`](super::Docker::create) makes: one sandbox container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Container name; `None` lets the engine pick one. Must be unique on the engine.
    pub name: Option<String>,
    /// Image reference (`repo:tag` or id); it must already exist locally.
    pub image: String,
    /// Command run as the main process; `None` runs a keepalive (`sleep infinity`) so the
    /// container stays up for [`Docker::exec`](super::Docker::exec) calls.
    pub cmd: Option<Vec<String>>,
    /// Environment variables of the main process (execs inherit them).
    pub env: Vec<(String, String)>,
    /// Working directory of the main process; `None` means `/work`.
    pub workdir: Option<String>,
    /// CPU, memory and process limits.
    pub limits: Limits,
    /// No network at all (only a loopback interface) when true.
    pub block_network: bool,
    /// OCI runtime registered with the engine, e.g. `"runsc"` for gVisor; `None` for the default.
    pub runtime: Option<String>,
    /// Labels to put on the container; `flotilla=1` is always added.
    pub labels: BTreeMap<String, String>,
    /// NVIDIA GPU indices to hand to the container (a device request); empty for none.
    pub gpu_devices: Vec<String>,
    /// Size of the container's own `/work` filesystem, MiB (see [`super::disk`]); `None`,
    /// or a node without disks, gives the unlimited volume.
    pub disk_mib: Option<u64>,
    /// A writable root filesystem instead of the read-only default.
    pub writable_rootfs: bool,
}

impl ContainerSpec {
    /// A keepalive sandbox of `image` with `limits`, networked, default runtime, no extras.
    #[cfg(test)]
    pub fn new(image: impl Into<String>, limits: Limits) -> Self {
        ContainerSpec {
            name: None,
            image: image.into(),
            cmd: None,
            env: Vec::new(),
            workdir: None,
            limits,
            block_network: false,
            runtime: None,
            labels: BTreeMap::new(),
            gpu_devices: Vec::new(),
            disk_mib: None,
            writable_rootfs: false,
        }
    }
}

/// A command to run inside a running container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// Program and arguments (no shell is involved unless you run one).
    pub cmd: Vec<String>,
    /// Extra environment variables, on top of the container's.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` uses the container's.
    pub workdir: Option<String>,
    /// Whether to attach stdin (see [`ExecProcess::stdin`](super::ExecProcess::stdin)).
    pub stdin: bool,
}

impl ExecSpec {
    /// Runs `cmd` with no extra environment, the container's working directory and no stdin.
    #[cfg(test)]
    pub fn new<S: Into<String>>(cmd: impl IntoIterator<Item = S>) -> Self {
        ExecSpec { cmd: cmd.into_iter().map(Into::into).collect(), env: Vec::new(), workdir: None, stdin: false }
    }
}

/// One tagged image in the local engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `repo:tag`.
    pub name: String,
    /// Content id, `sha256:...`.
    pub id: String,
    /// Size of the image in bytes.
    pub size_bytes: u64,
    /// Creation time in seconds since the Unix epoch.
    pub created_unix: i64,
}

/// What the engine reports about a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// Whether the main process is running (a paused container counts as running).
    pub running: bool,
    /// Whether its processes are frozen (`docker pause`).
    pub paused: bool,
    /// Exit code of the main process once it has exited; `None` while created or running.
    pub exit_code: Option<i64>,
    /// Whether the kernel OOM killer ended the main process (set when the container exits).
    pub oom_killed: bool,
    /// All labels of the container.
    pub labels: BTreeMap<String, String>,
}
