//! Spawns and controls real node processes for the integration tests.
//!
//! Each node runs the built `flotilla` binary with its own data dir in a temp dir and a free
//! loopback port; its log goes to a file that is printed when a test fails. Every process is
//! killed when the [`TestCluster`] is dropped.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// Ports handed to test nodes: below the kernel's ephemeral range (32768 and up), where the
/// outgoing connections of every test process take their local ports. A node restarted on an
/// ephemeral port found it taken now and then ("Address already in use") in CI.
const NODE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port in [`NODE_PORTS`] that was free a moment ago, drawn at random so that test
/// processes running side by side seldom draw the same one at once.
pub fn free_port() -> u16 {
    loop {
        let port = rand::random_range(NODE_PORTS);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One node process and how to start it again.
pub struct TestNode {
    pub id: u64,
    pub addr: String,
    log: PathBuf,
    args: Vec<String>,
    /// Extra environment of the process (e.g. a PATH without a tool).
    pub envs: Vec<(String, String)>,
    child: Option<Child>,
}

impl TestNode {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id while the node runs (for signals such as SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(BIN)
            .args(&self.args)
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn flotilla");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether the exit status was success.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Waits up to `within` for the process to exit on its own; its exit code, or None if it
    /// still runs (or died of a signal).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A set of node processes in one temp dir.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, TestNode>,
    /// API token the cluster's own CLI calls carry (clusters started with `--auth`).
    pub token: Option<String>,
}

/// How a node is brought into the cluster.
pub enum How<'a> {
    Initial(&'a str),
    Bootstrap,
    Join(&'a str),
    Wait,
}

impl TestCluster {
    pub fn empty() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), nodes: BTreeMap::new(), token: None }
    }

    /// Starts `n` nodes that form a cluster with `--initial-cluster`; `extra` is added to
    /// every node's arguments.
    pub fn start(n: u64, extra: &[&str]) -> Self {
        Self::start_each(n, |_| extra.iter().map(|s| s.to_string()).collect(), &[])
    }

    /// [`Self::start`] with arguments of each node's own (e.g. its `--http` port) and
    /// environment variables for every node process.
    pub fn start_each(n: u64, extra: impl Fn(u64) -> Vec<String>, env: &[(&str, &str)]) -> Self {
        let mut c = Self::empty();
        let addrs: Vec<(u64, String)> = (1..=n).map(|id| (id, format!("127.0.0.1:{}", free_port()))).collect();
        let initial = addrs.iter().map(|(id, a)| format!("{id}={a}")).collect::<Vec<_>>().join(",");
        for (id, addr) in addrs {
            let args = extra(id);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            c.add_node_at(id, &addr, How::Initial(&initial), &args, env);
        }
        c
    }

    /// Starts one more node process.
    pub fn add_node(&mut self, id: u64, how: How, extra: &[&str]) -> String {
        self.add_node_with_env(id, how, extra, &[])
    }

    /// [`Self::add_node`] with environment variables for the node process.
    pub fn add_node_with_env(&mut self, id: u64, how: How, extra: &[&str], env: &[(&str, &str)]) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        self.add_node_at(id, &addr, how, extra, env);
        addr
    }

    pub fn add_node_at(&mut self, id: u64, addr: &str, how: How, extra: &[&str], env: &[(&str, &str)]) {
        let data_dir = self.dir.path().join(format!("n{id}"));
        let mut args: Vec<String> =
            ["node", "--node-id", &id.to_string(), "--data-dir", data_dir.to_str().unwrap(), "--listen", addr]
                .iter()
                .map(|s| s.to_string())
                .collect();
        match how {
            How::Initial(list) => args.extend(["--initial-cluster".into(), list.into()]),
            How::Bootstrap => args.push("--bootstrap".into()),
            How::Join(seed) => args.extend(["--join".into(), seed.into()]),
            How::Wait => {}
        }
        // Auth is on by default for nodes; tests other than the auth tests run without it.
        if extra.contains(&"--auth") {
            args.extend(extra.iter().filter(|a| **a != "--auth").map(|s| s.to_string()));
        } else {
            args.push("--no-auth".into());
            args.extend(extra.iter().map(|s| s.to_string()));
        }
        let envs = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let log = self.dir.path().join(format!("n{id}.log"));
        let mut node = TestNode { id, addr: addr.to_string(), log, args, envs, child: None };
        node.spawn();
        self.nodes.insert(id, node);
    }

    pub fn node(&mut self, id: u64) -> &mut TestNode {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Node `id`'s data dir.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("n{id}"))
    }

    /// Node `id`'s instance label selector (`flotilla.instance=…`), once it has started.
    pub fn instance_label(&self, id: u64) -> String {
        let instance = std::fs::read_to_string(self.data_dir(id).join("instance_id")).unwrap_or_default();
        format!("flotilla.instance={}", instance.trim())
    }

    /// Every node's endpoint, comma-separated, for `--endpoint`.
    pub fn endpoints(&self) -> String {
        self.nodes.values().map(|n| n.endpoint()).collect::<Vec<_>>().join(",")
    }

    /// Runs the CLI against `endpoint`, with the cluster's token if it has one.
    pub fn cli(&self, endpoint: &str, args: &[&str]) -> Output {
        match &self.token {
            Some(t) => cli(endpoint, &[&["--token", t.as_str()], args].concat()),
            None => cli(endpoint, args),
        }
    }

    /// Runs the CLI with `-o json` against one node and parses stdout; panics on failure.
    pub fn json(&self, id: u64, args: &[&str]) -> Value {
        let out = self.cli(&self.nodes[&id].endpoint(), &[&["-o", "json"], args].concat());
        assert!(
            out.status.success(),
            "flotilla {args:?} on node {id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `cluster status` as answered by node `id`, or None if it does not answer.
    pub fn status(&self, id: u64) -> Option<Value> {
        let out = self.cli(&self.nodes[&id].endpoint(), &["-o", "json", "cluster", "status"]);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Waits until every running node agrees on one leader among `candidates`, and returns it.
    pub fn wait_leader(&mut self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let running: Vec<u64> = self.nodes.iter_mut().filter_map(|(id, n)| n.is_running().then_some(*id)).collect();
            let leaders: Vec<Option<u64>> =
                running.iter().map(|id| self.status(*id).and_then(|s| s["leader"].as_u64())).collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) && running.contains(l) {
                    return *l;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader within {within:?}: {leaders:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `check` until it returns true.
    pub fn eventually(&self, within: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !check() {
            assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .values()
            .map(|n| {
                let text = n.log_text();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                // A panic is usually far above the last lines (the errors it causes follow it).
                let panics: Vec<&str> = text.lines().filter(|l| l.contains("panicked")).take(5).collect();
                format!(
                    "--- node {} log: panics ---\n{}\n--- node {} log (last 40 lines) ---\n{}",
                    n.id,
                    panics.join("\n"),
                    n.id,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in self.nodes.values_mut() {
            n.kill();
        }
        // Nodes leave sandbox and warm-pool containers running on purpose (a restarted node
        // adopts them); a test's nodes are gone for good, so remove what they left.
        for id in self.nodes.keys() {
            let Ok(instance) = std::fs::read_to_string(self.dir.path().join(format!("n{id}/instance_id"))) else {
                continue;
            };
            let label = format!("label=flotilla.instance={}", instance.trim());
            if let Ok(o) = Command::new("docker").args(["ps", "-aq", "--filter", &label]).output() {
                let ids: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
                if !ids.is_empty() {
                    // One frozen by a fence cannot be killed until thawed (cgroup v1 freezer).
                    // Both under a deadline: an engine call on a frozen container has been
                    // seen to hang for good, and a test must end anyway.
                    let _ = Command::new("timeout").args(["30", "docker", "unpause"]).args(&ids).output();
                    let _ = Command::new("timeout").args(["30", "docker", "rm", "-f", "-v"]).args(&ids).output();
                }
            }
        }
        // Then the sandboxes' `/work` disks, loop-mounted under the data dirs: a mount left
        // behind would keep its loop device after the folder is deleted.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&root)) {
            let _ = Command::new("umount").arg(point).output();
        }
    }
}

/// Runs the CLI against `endpoint` (comma-separated list allowed).
pub fn cli(endpoint: &str, args: &[&str]) -> Output {
    Command::new(BIN).arg("--endpoint").arg(endpoint).args(args).stdin(Stdio::null()).output().expect("run flotilla")
}

/// Writes an app spec with `functions` functions named f0, f1, … and returns its path.
pub fn write_app(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("name = \"{name}\"\n\n[functions.hello]\nimage = \"flotilla/busybox\"\ncommand = [\"echo\", \"hi\"]\n"),
    )
    .unwrap();
    path
}

/// Deploys app `name` through `endpoint` with the CLI and returns the version it got.
pub fn deploy(dir: &Path, endpoint: &str, name: &str) -> u64 {
    let path = write_app(dir, name);
    let out = cli(endpoint, &["-o", "json", "app", "deploy", path.to_str().unwrap()]);
    assert!(out.status.success(), "deploy {name} via {endpoint}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["version"].as_u64().unwrap()
}

/// App names visible through node `id`.
pub fn app_names(c: &TestCluster, id: u64) -> Vec<String> {
    let list = c.json(id, &["app", "list"]);
    list.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect()
}

/// Runs the docker CLI; returns stdout, panicking on failure.
pub fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker CLI");
    assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Ids of containers (running or not) with this label.
pub fn containers(label: &str) -> Vec<String> {
    let ids = docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("label={label}")]);
    ids.lines().map(str::to_string).collect()
}

/// Builds `flotilla/busybox` once per test run, through the CLI as a user would.
pub fn busybox_image() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let o = Command::new(BIN).args(["image", "build-base", "busybox"]).output().expect("run flotilla");
        assert!(o.status.success(), "build-base busybox: {}", String::from_utf8_lossy(&o.stderr));
    });
}

/// A tokio runtime for tests that use the SDK directly.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Deploys `n` apps `prefix-0..n` through the SDK, as fast as one client can.
pub fn deploy_many(endpoints: &str, prefix: &str, n: usize) {
    rt().block_on(async {
        let client = flotilla::Client::connect(endpoints.split(',')).await.unwrap();
        for i in 0..n {
            let spec = flotilla::AppSpec::from_toml_str(&format!(
                "name = \"{prefix}-{i}\"\n[functions.f]\nimage = \"flotilla/busybox\"\ncommand = [\"true\"]\n"
            ))
            .unwrap();
            client.deploy(spec).await.unwrap();
        }
    });
}

/// `sandbox wait ID` with `-o json`: the sandbox as printed, and the CLI's exit code (the
/// sandbox's own exit code once it has ended).
pub fn wait_sandbox(endpoint: &str, id: &str) -> (Value, Option<i32>) {
    let o = cli(endpoint, &["-o", "json", "sandbox", "wait", id, "--timeout", "20"]);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("sandbox wait {id}: {e}: {}", String::from_utf8_lossy(&o.stderr)));
    (v, o.status.code())
}

/// A one-node cluster with the busybox image built and a leader; returns it and its endpoint.
pub fn single() -> (TestCluster, String) {
    busybox_image();
    let mut c = TestCluster::start(1, &[]);
    c.wait_leader(Duration::from_secs(20));
    let ep = c.nodes[&1].endpoint();
    (c, ep)
}

/// `GET path` over HTTP/1.0 (so neither side chunks); the status code and body.
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// `n` nodes with API tokens on (the cluster secret from the environment), each serving
/// `--http` on a port of its own, with a leader. Returns the cluster (its CLI calls carry the
/// bootstrap token), each node's HTTP address, and the token.
pub fn with_tokens_and_http(n: u64) -> (TestCluster, Vec<String>, String) {
    let http: Vec<String> = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut c = TestCluster::start_each(
        n,
        |id| vec!["--auth".into(), "--http".into(), http[id as usize - 1].clone()],
        &[("FLOTILLA_CLUSTER_SECRET", "peer-secret")],
    );
    let token = c.json(1, &["token", "bootstrap"])["secret"].as_str().unwrap().to_string();
    c.token = Some(token.clone());
    c.wait_leader(Duration::from_secs(20));
    (c, http, token)
}

/// Image names a test made on the shared engine; removed on drop, pass or fail (never anyone
/// else's: only the names added here).
#[derive(Default)]
pub struct Tags(std::cell::RefCell<Vec<String>>);

impl Tags {
    pub fn add(&self, tag: &str) -> String {
        self.0.borrow_mut().push(tag.to_string());
        tag.to_string()
    }
}

impl Drop for Tags {
    fn drop(&mut self) {
        for tag in self.0.borrow().iter() {
            let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
        }
    }
}

/// Deploys app `app` with one function, `function`, running `true` on a one-second schedule
/// (at most one replica), through every endpoint of `c`.
pub fn deploy_every_second(c: &TestCluster, app: &str, function: &str) {
    let path = c.dir.path().join(format!("{app}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{app}\"\n\n[functions.{function}]\nimage = \"flotilla/busybox\"\ncommand = [\"true\"]\n\
             max_containers = 1\nschedule = {{ period = \"1s\" }}\n"
        ),
    )
    .unwrap();
    let o = c.cli(&c.endpoints(), &["app", "deploy", path.to_str().unwrap()]);
    assert!(o.status.success(), "deploy {app}: {}", String::from_utf8_lossy(&o.stderr));
}
