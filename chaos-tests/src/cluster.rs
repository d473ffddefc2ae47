//! Real `flotilla node` processes, each on its own loopback address (127.0.0.2, .3, .4, …).
//!
//! Linux routes all of 127.0.0.0/8 to `lo` with no set-up, and a node that listens on a
//! specific address also connects to its peers from it, so every packet between two nodes
//! names both of them and [`crate::net`] can cut any link. Nodes run without client auth and
//! with a small snapshot interval, so log compaction and snapshot installs happen under
//! faults too. Each node's output goes to a log file in the run's output folder; the last lines of every log are
//! printed when a run fails. Dropping the cluster SIGKILLs every process (a stopped one is
//! killed too: SIGKILL needs no SIGCONT).
//!
//! Nodes run the workloads' containers (scheduled runs, sandboxes) on the machine's Docker
//! engine: [`Cluster::start`] builds `flotilla/busybox` first (a no-op once built), and dropping
//! the cluster removes every container its nodes labelled with their instance ids.
//!
//! The addresses, and the firewall chain that cuts them, belong to one cluster at a time on
//! the machine: [`Cluster::start`] takes a file lock (`$TMPDIR/flotilla-chaos.lock`) that the
//! cluster holds until it is dropped. Start the cluster before the [`crate::net::Firewall`],
//! so the firewall is removed before the lock is released.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

/// The loopback address of node `id`: 127.0.0.(id + 1), so 127.0.0.1 stays for everything else.
pub fn node_ip(id: u64) -> String {
    format!("127.0.0.{}", id + 1)
}

/// Where the `flotilla` binary is: `FLOTILLA_BIN`, else the workspace's debug build.
pub fn flotilla_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FLOTILLA_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/flotilla");
    if !bin.exists() {
        bail!("{} not found: build it first (cargo build -p flotilla-node) or set FLOTILLA_BIN", bin.display());
    }
    Ok(bin)
}

/// Raft settings for chaos nodes: compaction every few hundred entries, so followers that
/// fall behind during a fault catch up by snapshot.
const NODE_CONFIG: &str = "[raft]\nsnapshot_every = 300\nlogs_kept_after_snapshot = 50\n";

/// One node process and how to start it again.
pub struct Node {
    pub id: u64,
    /// `127.0.0.X:PORT`, where it listens and what it advertises.
    pub addr: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    /// Whether the process is stopped with SIGSTOP.
    paused: bool,
}

impl Node {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn spawn(&mut self, bin: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(bin)
            .args(&self.args)
            // openraft at info narrates elections, votes and snapshot installs: what a failed
            // run's log tail needs.
            .env("RUST_LOG", "info,openraft=info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            // The process is ours and not yet reaped, so the pid is still its own.
            let _ = kill_process(Pid::from_child(c), sig);
        }
    }

    /// SIGKILL: no chance to flush or say goodbye. Returns whether a running process was
    /// reaped, killed by that signal.
    pub fn kill(&mut self) -> bool {
        self.paused = false;
        let Some(mut c) = self.child.take() else { return false };
        let _ = c.kill();
        c.wait().is_ok_and(|status| status.signal() == Some(Signal::KILL.as_raw()))
    }

    /// SIGSTOP: the process freezes with its sockets open, as a hung machine does. Returns
    /// whether the kernel then shows it stopped (state `T` in `/proc/PID/stat`, within 1 s).
    pub fn pause(&mut self) -> bool {
        self.signal(Signal::STOP);
        self.paused = self.child.is_some();
        let Some(pid) = self.child.as_ref().map(Child::id) else { return false };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            // The state is the field after the command name, which is in parentheses.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal(Signal::CONT);
        self.paused = false;
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// A cluster of node processes in one temp dir.
pub struct Cluster {
    /// The machine-wide lock on the chaos addresses, held while the cluster lives.
    _lock: std::fs::File,
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Node>,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) that form one cluster with `--initial-cluster`; their
    /// logs go to `log_dir/nID.log`.
    pub fn start(bin: PathBuf, n: u64, log_dir: &Path) -> Result<Self> {
        let lock_path = std::env::temp_dir().join("flotilla-chaos.lock");
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
        lock.lock().with_context(|| format!("lock {}", lock_path.display()))?;
        let image = Command::new(&bin).args(["image", "build-base", "busybox"]).output()?;
        if !image.status.success() {
            bail!("flotilla image build-base busybox: {}", String::from_utf8_lossy(&image.stderr));
        }
        let dir = tempfile::Builder::new().prefix("flotilla-chaos").tempdir()?;
        let config = dir.path().join("node.toml");
        std::fs::write(&config, NODE_CONFIG)?;
        let mut addrs = BTreeMap::new();
        for id in 1..=n {
            let ip = node_ip(id);
            let port = TcpListener::bind((ip.as_str(), 0))
                .and_then(|l| l.local_addr())
                .with_context(|| format!("bind {ip}: loopback addresses other than 127.0.0.1 must work"))?
                .port();
            addrs.insert(id, format!("{ip}:{port}"));
        }
        let initial = addrs.iter().map(|(id, a)| format!("{id}={a}")).collect::<Vec<_>>().join(",");
        let mut c = Cluster { _lock: lock, bin, dir, nodes: BTreeMap::new() };
        for (id, addr) in addrs {
            let data = c.dir.path().join(format!("n{id}"));
            let args = [
                "node",
                "--node-id",
                &id.to_string(),
                "--data-dir",
                &data.to_string_lossy(),
                "--listen",
                &addr,
                "--initial-cluster",
                &initial,
                "--config",
                &config.to_string_lossy(),
                "--no-auth",
            ]
            .map(str::to_string)
            .to_vec();
            let log = log_dir.join(format!("n{id}.log"));
            let _ = std::fs::remove_file(&log);
            let mut node = Node { id, addr, args, log, child: None, paused: false };
            node.spawn(&c.bin)?;
            c.nodes.insert(id, node);
        }
        Ok(c)
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).expect("node id of this cluster")
    }

    /// Starts a killed node again on its data dir.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        let bin = self.bin.clone();
        let node = self.node(id);
        if node.child.is_none() {
            node.spawn(&bin)?;
        }
        Ok(())
    }

    /// Every node's endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(Node::endpoint).collect()
    }

    /// Every node's data dir.
    pub fn data_dirs(&self) -> BTreeMap<u64, PathBuf> {
        self.nodes.keys().map(|id| (*id, self.dir.path().join(format!("n{id}")))).collect()
    }

    /// Every node's address.
    pub fn ips(&self) -> BTreeMap<u64, String> {
        self.nodes.keys().map(|id| (*id, node_ip(*id))).collect()
    }

    /// Resumes paused nodes and restarts killed ones: the start of the liveness phase.
    pub fn heal(&mut self) -> Result<()> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.node(id).resume();
            self.restart(id)?;
        }
        Ok(())
    }

    /// The engine's containers (running or not) that node `id` labelled as its own, and with
    /// `label` (`KEY=VALUE`) too when given; none when the node never started.
    pub fn containers(&self, id: u64, label: Option<&str>) -> Vec<String> {
        let Ok(instance) = std::fs::read_to_string(self.dir.path().join(format!("n{id}/instance_id"))) else {
            return Vec::new();
        };
        let mut args = vec!["ps".to_string(), "-aq".to_string(), "--filter".to_string()];
        args.push(format!("label=flotilla.instance={}", instance.trim()));
        if let Some(l) = label {
            args.extend(["--filter".to_string(), format!("label={l}")]);
        }
        match Command::new("docker").args(&args).output() {
            Ok(o) => String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The last lines of every node's log, for a failure report.
    pub fn logs(&self, lines: usize) -> String {
        self.nodes
            .values()
            .map(|n| format!("--- node {} ({}) log, last {lines} lines ---\n{}", n.id, n.addr, n.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            n.kill();
        }
        // Nodes leave containers running on purpose (a restarted node adopts them); these
        // nodes are gone for good, so remove what they left.
        for id in self.nodes.keys() {
            let ids = self.containers(*id, None);
            if !ids.is_empty() {
                // One frozen by a fence cannot be killed until thawed (cgroup v1 freezer).
                // Both under a deadline: an engine call on a frozen container has been
                // seen to hang for good, and a test must end anyway.
                let _ = Command::new("timeout").args(["30", "docker", "unpause"]).args(&ids).output();
                let _ = Command::new("timeout").args(["30", "docker", "rm", "-f", "-v"]).args(&ids).output();
            }
        }
        // Then the sandboxes' `/work` disks, loop-mounted under the data dirs: a mount left
        // behind keeps its loop device after the folder is deleted.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&root)) {
            let _ = Command::new("umount").arg(point).output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node record around `sleep`, standing in for a node process.
    fn sleeper(dir: &Path) -> Node {
        let mut n = Node {
            id: 1,
            addr: "127.0.0.2:1".into(),
            args: vec!["30".into()],
            log: dir.join("n1.log"),
            child: None,
            paused: false,
        };
        n.spawn(Path::new("sleep")).unwrap();
        n
    }

    #[test]
    fn pause_and_kill_report_what_the_kernel_shows() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = sleeper(dir.path());
        assert!(n.pause(), "a SIGSTOPped process shows state T");
        n.resume();
        assert!(n.kill(), "a SIGKILLed process is reaped with SIGKILL");
        // Nothing left to stop or kill: no effect to report.
        assert!(!n.pause());
        assert!(!n.kill());
        // A process that exits on its own is not counted as killed.
        n.spawn(Path::new("true")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!n.kill(), "a process that had exited by itself counted as killed");
    }
}
