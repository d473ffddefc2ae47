//! Real processes for benchmarks: a three-node Flotilla cluster started from this binary and
//! a three-member etcd cluster, each on free loopback ports in a temp dir, killed on drop.
//!
//! **Nothing is left behind.** Dropping a [`Cluster`] kills its processes, then removes every
//! container labelled with one of its nodes' instance ids (sandboxes and replicas), whether
//! the benchmark ended, failed with an error, panicked or was interrupted (`bench` turns
//! Ctrl-C into dropping the benchmark, see `bench::BenchCmd::run`). Containers a benchmark
//! starts on the engine directly carry [`BENCH_LABEL`] with this process's id and go the
//! same way through a [`Cleanup`] guard.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One process and how to start it again with the same arguments.
struct Proc {
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Label of the containers a benchmark starts on the engine directly; the value is the
/// benchmark process's id.
pub const BENCH_LABEL: &str = "flotilla.bench";

/// `BENCH_LABEL=<this process's id>`, as a container label pair.
pub fn bench_label() -> (String, String) {
    (BENCH_LABEL.to_string(), std::process::id().to_string())
}

/// Removes every container (running, paused or stopped) with label `selector` (`KEY=VALUE`)
/// through the docker CLI, each engine call under a deadline (an engine call on a frozen
/// container was seen to hang). Best effort: used on the way out, so it reports nothing.
pub fn remove_containers(selector: &str) {
    let filter = format!("label={selector}");
    let Ok(o) = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
    if ids.is_empty() {
        return;
    }
    let _ = Command::new("timeout").args(["30", "docker", "unpause"]).args(&ids).stderr(Stdio::null()).output();
    let _ = Command::new("timeout").args(["30", "docker", "rm", "-f", "-v"]).args(&ids).stdout(Stdio::null()).output();
}

/// Removes the containers with a label when dropped.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_containers(&self.0);
    }
}

/// A group of server processes with client endpoints.
pub struct Cluster {
    procs: Vec<Proc>,
    /// Client endpoints (`http://127.0.0.1:PORT`), one per member, in member order.
    pub endpoints: Vec<String>,
    /// Each Flotilla node's `--http` address (`127.0.0.1:PORT`), in member order; empty for etcd.
    pub http: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` Flotilla nodes (this binary) forming a cluster with `--initial-cluster`; `extra`
    /// is added to every node's arguments.
    pub fn flotilla(n: usize, extra: &[&str]) -> anyhow::Result<Self> {
        Self::flotilla_each(n, |_| extra.iter().map(|s| s.to_string()).collect())
    }

    /// [`Self::flotilla`] with arguments of each node's own (`extra(i)`, 0-based).
    pub fn flotilla_each(n: usize, extra: impl Fn(usize) -> Vec<String>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let exe = std::env::current_exe()?;
        let addrs: Vec<String> =
            (0..n).map(|_| free_port().map(|p| format!("127.0.0.1:{p}"))).collect::<Result<_, _>>()?;
        let initial = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let http: Vec<String> =
            (0..n).map(|_| free_port().map(|p| format!("127.0.0.1:{p}"))).collect::<Result<_, _>>()?;
        let mut procs = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let data = dir.path().join(format!("flotilla-{}", i + 1));
            let args = ["node", "--node-id", &(i + 1).to_string(), "--data-dir", path(&data)?, "--listen", addr];
            let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            args.extend(["--http".to_string(), http[i].clone()]);
            // Benchmarks measure the data path; they run the nodes without client tokens.
            args.extend(["--initial-cluster".to_string(), initial.clone(), "--no-auth".to_string()]);
            args.extend(extra(i));
            procs.push(Proc {
                program: exe.clone(),
                args,
                log: dir.path().join(format!("flotilla-{}.log", i + 1)),
                child: None,
            });
        }
        let endpoints = addrs.iter().map(|a| format!("http://{a}")).collect();
        let mut c = Cluster { procs, endpoints, http, _dir: dir };
        for p in &mut c.procs {
            p.start()?;
        }
        Ok(c)
    }

    /// Three etcd members with default timing (100 ms heartbeat, 1 s election) and fsync on.
    pub fn etcd(etcd: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ports: Vec<(u16, u16)> = (0..3).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<_>>()?;
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = dir.path().join(format!("etcd-{}", i + 1));
            let args = vec![
                format!("--name=e{}", i + 1),
                format!("--data-dir={}", path(&data)?),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster={initial}"),
                "--initial-cluster-state=new".to_string(),
                "--initial-cluster-token=flotilla-bench".to_string(),
                "--log-level=error".to_string(),
            ];
            procs.push(Proc {
                program: etcd.to_path_buf(),
                args,
                log: dir.path().join(format!("etcd-{}.log", i + 1)),
                child: None,
            });
        }
        let endpoints = ports.iter().map(|(c, _)| format!("http://127.0.0.1:{c}")).collect();
        let mut c = Cluster { procs, endpoints, http: Vec::new(), _dir: dir };
        for p in &mut c.procs {
            p.start()?;
        }
        Ok(c)
    }

    /// Waits until a Flotilla cluster has a leader and every node is up and registered.
    pub async fn ready(&self, client: &flotilla::Client) -> anyhow::Result<()> {
        let n = self.endpoints.len();
        wait_until(Duration::from_secs(30), "flotilla cluster", || async {
            match client.cluster_status().await {
                Ok(s) => {
                    s.leader.is_some() && s.nodes.len() == n && s.nodes.iter().all(|n| n.status == "up" && n.cpus > 0)
                }
                Err(_) => false,
            }
        })
        .await
    }

    /// Member `i`'s log so far (0-based).
    pub fn log(&self, i: usize) -> std::io::Result<String> {
        std::fs::read_to_string(&self.procs[i].log)
    }

    /// SIGKILLs member `i` (0-based).
    pub fn kill(&mut self, i: usize) {
        self.procs[i].kill();
    }

    /// The container label selector of Flotilla member `i` (0-based), once it has started.
    pub fn instance_label(&self, i: usize) -> anyhow::Result<String> {
        let id = std::fs::read_to_string(self._dir.path().join(format!("flotilla-{}/instance_id", i + 1)))?;
        Ok(format!("{}={}", crate::sandbox::LABEL_INSTANCE, id.trim()))
    }

    /// The container label selectors of every Flotilla member that has started (none for etcd).
    fn instance_labels(&self) -> Vec<String> {
        (0..self.procs.len()).filter_map(|i| self.instance_label(i).ok()).collect()
    }

    /// Starts member `i` again with its data dir.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.procs[i].start()
    }

    /// Resident memory of member `i` (0-based), KiB, from /proc; `None` if it is not running.
    pub fn rss_kib(&self, i: usize) -> Option<u64> {
        let pid = self.procs[i].child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Cluster {
    /// Kills the processes first (so no node starts another container), then removes the
    /// containers of every member, then their sandboxes' `/work` disks.
    fn drop(&mut self) {
        self.procs.iter_mut().for_each(Proc::kill);
        for label in self.instance_labels() {
            remove_containers(&label);
        }
        crate::runtime::disk::unmount_under(self._dir.path());
    }
}

/// `GET path` on a node's `--http` endpoint, parsed as JSON (a plain HTTP/1.0 request: the
/// endpoint is on loopback and answers small documents).
pub async fn http_json(addr: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&http_get(addr, path).await?)?)
}

/// The body of `GET http://addr/path` (HTTP/1.0, read to the end).
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).context("HTTP reply without a body")?;
    Ok(body.to_string())
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("temp dir path is not UTF-8")
}

/// Retries `probe` until it succeeds or `within` has passed.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, probe: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !probe().await {
        if Instant::now() > deadline {
            bail!("{what} not ready within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
