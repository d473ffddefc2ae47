//! Tests against the real local Docker engine. They fail (never skip) when it is unreachable.
//! `flotilla/busybox` is built once per test process; every container a test makes has a
//! unique name and label and is removed at the end, also when the test fails.

mod errors;
mod exec;
mod files;
mod isolation;
mod lifecycle;

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::OnceCell;

use super::images::build_busybox;
use super::{ContainerSpec, Docker, ExecSpec, Limits, Output};

pub(super) const IMAGE: &str = "flotilla/busybox";

/// Label key that marks test containers; the value is unique per container.
pub(super) const TEST_LABEL: &str = "flotilla.test";

/// Upper bound for one test body.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

static IMAGE_BUILT: OnceCell<()> = OnceCell::const_new();

/// A connection to the engine, with `flotilla/busybox` built (once per process).
pub(super) async fn docker() -> Docker {
    let docker = Docker::connect().await.expect("these tests need a reachable Docker engine");
    IMAGE_BUILT.get_or_init(|| build_once_per_run(&docker)).await;
    docker
}

/// Builds [`IMAGE`]. Under cargo-nextest every test is its own process, so the processes of
/// one run (`NEXTEST_RUN_ID`) agree through a locked marker file that only the first builds.
async fn build_once_per_run(docker: &Docker) {
    let marker = std::env::var("NEXTEST_RUN_ID")
        .ok()
        .map(|run| std::env::temp_dir().join(format!("flotilla-runtime-tests-{run}")));
    let lock = marker.map(|path| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .expect("marker file");
        file.lock().expect("lock marker file");
        file
    });
    let built = lock.as_ref().is_some_and(|file| file.metadata().map(|m| m.len() > 0).unwrap_or(false));
    if !built {
        build_busybox(docker, IMAGE, |step| eprintln!("build_busybox: {step}"))
            .await
            .expect("building flotilla/busybox (needs busybox-static)");
        if let Some(mut file) = lock {
            std::io::Write::write_all(&mut file, b"built").expect("write marker");
        }
    }
}

/// A name no other test (or test process) uses.
pub(super) fn unique(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("rt-test-{tag}-{}-{n}", std::process::id())
}

pub(super) fn small_limits() -> Limits {
    Limits { cpu: 1.0, memory_mib: 128, pids: 128 }
}

/// A keepalive busybox spec named `name`, labelled `flotilla.test=<name>`.
pub(super) fn spec(name: &str) -> ContainerSpec {
    let mut spec = ContainerSpec::new(IMAGE, small_limits());
    spec.name = Some(name.to_string());
    spec.labels = BTreeMap::from([(TEST_LABEL.to_string(), name.to_string())]);
    spec
}

/// Creates and starts a sandbox from `spec` (after `configure`), runs `body` with its id,
/// then removes it, whatever `body` did (panic or timeout included).
pub(super) async fn with_sandbox<F, Fut>(tag: &str, configure: impl FnOnce(&mut ContainerSpec), body: F)
where
    F: FnOnce(Docker, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let docker = docker().await;
    let mut spec = spec(&unique(tag));
    configure(&mut spec);
    let id = docker.create(&spec).await.expect("create");
    let outcome = async {
        docker.start(&id).await.expect("start");
        tokio::time::timeout(TEST_TIMEOUT, body(docker.clone(), id.clone())).await.expect("test body timed out");
    };
    let outcome = AssertUnwindSafe(outcome).catch_unwind().await;
    docker.remove(&id).await.expect("remove");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// What a finished exec produced.
#[derive(Debug)]
pub(super) struct Ran {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: Option<i64>,
}

impl Ran {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `spec` to completion and collects its output and exit code.
pub(super) async fn run_spec(docker: &Docker, id: &str, spec: &ExecSpec) -> Ran {
    let mut process = docker.exec(id, spec).await.expect("exec");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(chunk) = process.output.next().await {
        match chunk.expect("output chunk") {
            Output::Stdout(b) => stdout.extend_from_slice(&b),
            Output::Stderr(b) => stderr.extend_from_slice(&b),
        }
    }
    let code = docker.exec_exit_code(&process.exec_id).await.expect("exit code");
    Ran { stdout, stderr, code }
}

/// Runs a shell script with `sh -c`.
pub(super) async fn sh(docker: &Docker, id: &str, script: &str) -> Ran {
    run_spec(docker, id, &ExecSpec::new(["sh", "-c", script])).await
}
