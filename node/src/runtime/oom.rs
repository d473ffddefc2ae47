//! Telling whether the kernel's OOM killer struck in a container, so an exec that ends with
//! SIGKILL (137) can say it ran out of memory instead of ending without a word.
//!
//! The engine records an OOM only for the container's main process (`OOMKilled`), never for
//! an exec. The kernel counts every OOM kill in the container's memory cgroup, though:
//! `oom_kill` in `memory.oom_control` (cgroup v1) or `memory.events` (v2). The node finds
//! that file through the main process's `/proc/PID/cgroup`, which works with either cgroup
//! driver. Like the exec timeout's kill, it needs the node to see host pids and
//! `/sys/fs/cgroup` (a node on the host, or a containerized one with `pid: host`); where it
//! cannot, there is simply no counter and no message.

use std::path::{Path, PathBuf};

use super::Docker;

/// Where cgroup hierarchies are mounted on the host.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The OOM-kill counter of one container's memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCounter {
    /// `memory.oom_control` (v1) or `memory.events` (v2); both have an `oom_kill N` line.
    file: PathBuf,
}

impl OomCounter {
    /// OOM kills in the cgroup so far; `None` if the file cannot be read (container gone).
    pub fn read(&self) -> Option<u64> {
        oom_kills(&std::fs::read_to_string(&self.file).ok()?)
    }
}

impl Docker {
    /// The OOM-kill counter of running container `id`, with its current value; `None` where
    /// the node cannot see it (see the module docs).
    pub async fn oom_counter(&self, id: &str) -> Option<(OomCounter, u64)> {
        let pid = self.inner.inspect_container(id, None).await.ok()?.state?.pid.filter(|p| *p > 0)?;
        let cgroups = tokio::fs::read_to_string(format!("/proc/{pid}/cgroup")).await.ok()?;
        let counter = OomCounter { file: counter_file(Path::new(CGROUP_ROOT), &cgroups)? };
        let now = counter.read()?;
        Some((counter, now))
    }
}

/// The counter file for a process whose `/proc/PID/cgroup` reads `cgroups`: its v1 memory
/// hierarchy if it has one, else its v2 (unified) group.
fn counter_file(root: &Path, cgroups: &str) -> Option<PathBuf> {
    let mut unified = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            return Some(root.join("memory").join(rel).join("memory.oom_control"));
        }
        if controllers.is_empty() {
            unified = Some(root.join(rel).join("memory.events"));
        }
    }
    unified
}

/// The `oom_kill N` value of a `memory.oom_control` or `memory.events` file.
fn oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_memory_hierarchy_or_the_v2_group() {
        let root = Path::new("/sys/fs/cgroup");
        let v1 = "12:pids:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n";
        assert_eq!(counter_file(root, v1), Some(PathBuf::from("/sys/fs/cgroup/memory/docker/abc/memory.oom_control")));
        let v2 = "0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            counter_file(root, v2),
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/docker-abc.scope/memory.events"))
        );
        assert_eq!(counter_file(root, "garbage"), None);
    }

    #[test]
    fn reads_the_oom_kill_count() {
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), Some(3));
        assert_eq!(oom_kills("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n"), Some(2));
        assert_eq!(oom_kills("oom_kill_disable 0\n"), None);
    }
}
