//! Killing one exec'd process, for exec timeouts. The engine has no "kill exec" call, so
//! the node signals the process itself by the host pid the engine reports. That needs the
//! node to see host pids: true for a node running on the host, and for a containerized node
//! started with `pid: host` (as docker-compose.yml does).

use std::time::Duration;

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

use super::{Docker, RuntimeError};

/// How long [`Docker::kill_exec`] waits for the engine to record a new exec's pid.
const PID_GRACE: Duration = Duration::from_secs(2);

impl Docker {
    /// SIGKILLs the process of exec `exec_id` (its process group first, so children it
    /// started go too). A process that has already exited is not an error.
    pub async fn kill_exec(&self, exec_id: &str) -> Result<(), RuntimeError> {
        let Some(pid) = self.exec_host_pid(exec_id).await? else {
            return Ok(());
        };
        if kill_process_group(pid, Signal::KILL).is_ok() {
            return Ok(());
        }
        match kill_process(pid, Signal::KILL) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
            Err(e) => Err(RuntimeError::Engine(format!("kill exec {exec_id} (pid {}): {e}", pid.as_raw_nonzero()))),
        }
    }

    /// The host pid of a running exec, `None` once it has exited. The engine records the pid
    /// a moment after the process starts (its output can come first), so a running exec
    /// without a pid is asked about again for up to [`PID_GRACE`].
    async fn exec_host_pid(&self, exec_id: &str) -> Result<Option<Pid>, RuntimeError> {
        self.inspect_exec_until(exec_id, PID_GRACE, |inspect, late| {
            if !inspect.running.unwrap_or(false) {
                return Some(Ok(None));
            }
            match inspect.pid.and_then(|p| i32::try_from(p).ok()).and_then(Pid::from_raw) {
                Some(pid) => Some(Ok(Some(pid))),
                None if late => Some(Err(RuntimeError::Engine(format!("exec {exec_id} has no host pid")))),
                None => None,
            }
        })
        .await?
    }
}
