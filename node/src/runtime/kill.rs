//! Killing one exec'd process, for exec timeouts. The engine has no "kill exec" call, so
//! the node signals the process itself by the host pid the engine reports. That needs the
//! node to see host pids: true for a node running on the host, and for a containerized node
//! started with `pid: host` (as docker-compose.yml does).

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

use super::{Docker, RuntimeError};

impl Docker {
    /// SIGKILLs the process of exec `exec_id` (its process group first, so children it
    /// started go too). A process that has already exited is not an error.
    pub async fn kill_exec(&self, exec_id: &str) -> Result<(), RuntimeError> {
        let inspect = self.inner.inspect_exec(exec_id).await.map_err(|e| RuntimeError::for_container(exec_id, e))?;
        if !inspect.running.unwrap_or(false) {
            return Ok(());
        }
        let pid = inspect
            .pid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw)
            .ok_or_else(|| RuntimeError::Engine(format!("exec {exec_id} has no host pid")))?;
        if kill_process_group(pid, Signal::KILL).is_ok() {
            return Ok(());
        }
        match kill_process(pid, Signal::KILL) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
            Err(e) => Err(RuntimeError::Engine(format!("kill exec {exec_id} (pid {}): {e}", pid.as_raw_nonzero()))),
        }
    }
}
