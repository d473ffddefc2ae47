//! A Docker engine per node on one machine, so a test or a benchmark can have an image on one
//! node and not on another. Used by `flotilla bench images` and, through a `#[path]` module,
//! by the integration tests (`node/tests/it`).
//!
//! Each engine is a `dockerd` of its own: an empty config file, its own data root, exec root,
//! Unix socket, pid file and containerd namespaces, no iptables or masquerading, and a bridge
//! made first with a subnet of its own (never `--bridge none`: a dockerd
//! started with it deletes the host's `docker0`); names and subnets carry the test process's
//! id, so runs side by side do not collide. It uses the main engine's storage driver.
//! `flotilla/busybox` is copied in from the main engine. Dropping [`Engines`] removes every
//! container of each engine, stops it, unmounts its data root, and deletes its bridge and
//! files, whether the test (or benchmark) passed or not. Setup failures panic with the reason
//! (the drop still cleans up).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One test engine.
pub struct Engine {
    /// `unix://…/docker.sock`, for `--docker-host` and `docker -H`.
    pub host: String,
    dir: PathBuf,
    bridge: String,
    child: Option<Child>,
}

/// Engines for nodes 1..=n; removed on drop.
pub struct Engines(Vec<Engine>);

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// The main engine's storage driver (`fuse-overlayfs` on these machines).
fn storage_driver() -> String {
    let o = run(Command::new("docker").args(["info", "--format", "{{.Driver}}"]));
    assert!(o.status.success(), "docker info: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Engines {
    /// Starts `n` engines, each with `flotilla/busybox` loaded.
    pub fn start(n: u64) -> Engines {
        let driver = storage_driver();
        Engines((1..=n).map(|i| Engine::start(i, &driver)).collect())
    }

    /// The engine address of node `id` (1-based).
    pub fn host(&self, id: u64) -> String {
        self.0[id as usize - 1].host.clone()
    }
}

impl Engine {
    fn start(index: u64, driver: &str) -> Engine {
        // Names and a subnet of this process's own, so runs side by side do not collide.
        let tag = u64::from(std::process::id() % 60);
        let dir = tempfile::Builder::new().prefix("flt-engine-").tempdir().unwrap().keep();
        let host = format!("unix://{}", dir.join("docker.sock").display());
        // Built first, so whatever fails below is cleaned up by its drop.
        let mut engine = Engine { host, dir, bridge: format!("flt{tag}e{index}"), child: None };
        let subnet = format!("10.231.{}.1/24", tag * 4 + index);
        // A bridge left by a killed run with the same tag goes first.
        quietly(Command::new("ip").args(["link", "del", &engine.bridge]));
        for args in [
            vec!["link", "add", engine.bridge.as_str(), "type", "bridge"],
            vec!["addr", "add", subnet.as_str(), "dev", engine.bridge.as_str()],
            vec!["link", "set", engine.bridge.as_str(), "up"],
        ] {
            let o = run(Command::new("ip").args(&args));
            assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let dir = &engine.dir;
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("config.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--host", &engine.host])
            .args(["--containerd-namespace", &format!("flt{tag}e{index}")])
            .args(["--containerd-plugins-namespace", &format!("flt{tag}e{index}p")])
            .args(["--iptables=false", "--ip-masq=false", "--bridge", &engine.bridge, "--storage-driver", driver])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd (the Docker engine's daemon)");
        engine.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !run(Command::new("docker").args(["-H", &engine.host, "info"])).status.success() {
            assert!(Instant::now() < deadline, "engine {index} did not start: {}", engine.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        let load = format!("docker save flotilla/busybox | docker -H {} load", engine.host);
        let o = run(Command::new("sh").args(["-c", &load]));
        assert!(o.status.success(), "loading flotilla/busybox: {}", String::from_utf8_lossy(&o.stderr));
        engine
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

/// Runs `cmd` for its effect only: a cleanup step that fails leaves the next one to try.
fn quietly(cmd: &mut Command) -> String {
    cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.child.is_some() {
            let list = quietly(Command::new("docker").args(["-H", &self.host, "ps", "-aq"]));
            for id in list.split_whitespace() {
                quietly(Command::new("docker").args(["-H", &self.host, "rm", "-f", "-v", id]));
            }
        }
        if let Some(mut child) = self.child.take() {
            quietly(Command::new("kill").arg("-TERM").arg(child.id().to_string()));
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The engine mounts its data root (and layers under it); unmount all, deepest first.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(self.dir.to_str().unwrap_or("/nonexistent")))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            quietly(Command::new("umount").args(["-l", m]));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        quietly(Command::new("ip").args(["link", "del", &self.bridge]));
    }
}
