//! `flotilla bench functions`: warm synchronous calls through Flotilla in worker and exec
//! mode, against the raw Docker API doing the same work (an exec of `cat` with the input on
//! stdin, in a container made from the same spec), in one run on a one-node cluster; plus
//! cold calls (scale from zero).
//!
//! Worker mode runs the SDK's example worker (`sdk/examples/upper_worker.rs`, found next to
//! this binary under `examples/`), which is why the bench wants the examples built. Each
//! point is a closed loop of N callers after an untimed warm-up, over a window of at least
//! `--seconds` and long enough for 20 calls per caller at the warm-up's latency
//! (`load::sized_loop`); the window and calls per caller are printed with each point.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla::{AppSpec, Client};

use super::load::{sized_loop, Figures};
use super::procs::Cluster;
use crate::runtime::{images, ContainerSpec, Docker, Limits};

const BUSYBOX: &str = "flotilla/busybox";
const WORKER_IMAGE: &str = "flotilla-bench/upper-worker";
/// Host libraries the dynamically linked example worker needs in a busybox image.
const LIBS: [&str; 4] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/x86_64-linux-gnu/libgcc_s.so.1",
    "/lib/x86_64-linux-gnu/libm.so.6",
    "/lib64/ld-linux-x86-64.so.2",
];

#[derive(Debug, clap::Args)]
pub struct FunctionsArgs {
    /// Seconds per measured point.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Replicas of each function (and raw containers).
    #[arg(long, default_value_t = 2)]
    replicas: u32,
    /// Cold calls to time (each on a new app).
    #[arg(long, default_value_t = 5)]
    cold: usize,
    /// Concurrent callers per point, comma-separated.
    #[arg(long, default_value = "1,8,64", value_delimiter = ',')]
    callers: Vec<usize>,
}

/// The example worker built next to this binary.
fn worker_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().map(|d| d.join("examples/upper_worker")).unwrap_or_default();
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it with `cargo build --example upper_worker -p flotilla` (same profile as this binary)",
        bin.display()
    );
    Ok(bin)
}

/// Builds the worker image: busybox, the worker and the host libraries it links.
fn build_worker_image(dir: &Path) -> anyhow::Result<()> {
    let ctx = dir.join("worker-image");
    std::fs::create_dir_all(&ctx)?;
    let mut dockerfile = format!("FROM {BUSYBOX}\nCOPY worker /app/upper_worker\n");
    std::fs::copy(worker_binary()?, ctx.join("worker"))?;
    for (i, lib) in LIBS.iter().enumerate() {
        std::fs::copy(lib, ctx.join(format!("lib{i}")))?;
        dockerfile.push_str(&format!("COPY lib{i} {lib}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile)?;
    let out = std::process::Command::new("docker")
        .args(["build", "-q", "-t", WORKER_IMAGE])
        .arg(&ctx)
        .env("DOCKER_BUILDKIT", "0")
        .output()?;
    anyhow::ensure!(out.status.success(), "docker build: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn app(name: &str, replicas: u32, min: u32) -> anyhow::Result<AppSpec> {
    Ok(AppSpec::from_toml_str(&format!(
        r#"name = "{name}"
[functions.worker]
image = "{WORKER_IMAGE}"
command = ["/app/upper_worker"]
mode = "worker"
min_containers = {min}
max_containers = {replicas}
concurrency = 32
[functions.exec]
image = "{BUSYBOX}"
command = ["cat"]
min_containers = {min}
max_containers = {replicas}
concurrency = 32
"#
    ))?)
}

fn line(label: &str, callers: usize, f: &Figures) {
    println!(
        "{label:<34} {:>9.0} {:>9.2} {:>9.2} {:>7} {:>8.1} {:>9.0}",
        f.ops_per_s,
        f.p50_ms,
        f.p99_ms,
        f.errors,
        f.window.as_secs_f64(),
        f.ops as f64 / callers as f64
    );
}

async fn calls(client: &Client, function: &'static str, callers: usize, seconds: u64) -> Figures {
    let f = client.function("fnbench", function);
    sized_loop(callers, Duration::from_secs(seconds), move |c, seq| {
        let f = f.clone();
        async move {
            let input = format!("caller {c} input {seq}");
            let out = f.call(input.clone().into_bytes()).await?;
            anyhow::ensure!(out.len() >= input.len(), "short output");
            Ok(())
        }
    })
    .await
}

async fn raw_calls(docker: &Docker, containers: &[String], callers: usize, seconds: u64) -> Figures {
    let (docker, containers) = (docker.clone(), containers.to_vec());
    sized_loop(callers, Duration::from_secs(seconds), move |c, seq| {
        let (docker, container) = (docker.clone(), containers[c % containers.len()].clone());
        async move {
            let input = format!("caller {c} input {seq}").into_bytes();
            let cmd = ["cat".to_string()];
            let out = crate::function::exec_mode::run(
                &docker,
                &container,
                &cmd,
                input.clone(),
                Duration::from_secs(60),
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
            anyhow::ensure!(out == input, "wrong output");
            Ok(())
        }
    })
    .await
}

pub async fn run(args: &FunctionsArgs) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    if !docker.image_exists(BUSYBOX).await? {
        images::build_busybox(&docker, BUSYBOX, |s| eprintln!("  {s}")).await?;
    }
    let dir = tempfile::tempdir()?;
    build_worker_image(dir.path())?;
    let cluster = Cluster::flotilla(1, &[])?;
    let client = Client::connect(cluster.endpoints.clone()).await?;
    cluster.ready(&client).await?;
    client.deploy(app("fnbench", args.replicas, args.replicas)?).await?;
    // Warm up: every replica started and answering.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.function_status("fnbench").await?;
        if status.iter().all(|f| f.replicas_ready == args.replicas) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "replicas did not start: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for f in ["worker", "exec"] {
        client.function("fnbench", f).call(b"warm".to_vec()).await?;
    }
    let mut raw = Vec::new();
    for i in 0..args.replicas {
        let spec = ContainerSpec {
            name: Some(format!("flotilla-bench-fn-{}-{i}", std::process::id())),
            image: BUSYBOX.into(),
            cmd: None,
            env: Vec::new(),
            workdir: None,
            limits: Limits { cpu: 0.5, memory_mib: 256, pids: 1024 },
            block_network: false,
            runtime: None,
            labels: [super::procs::bench_label()].into(),
            gpu_devices: Vec::new(),
            disk_mib: None,
            writable_rootfs: false,
        };
        let id = docker.create(&spec).await?;
        docker.start(&id).await?;
        raw.push(id);
    }

    println!(
        "flotilla bench functions: at least {}s and {} calls per caller per point (after an untimed warm-up), \
         {} replicas per function (concurrency 32), one node, same machine",
        args.seconds,
        super::load::CALLS_PER_CLIENT,
        args.replicas
    );
    println!();
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>7} {:>8} {:>9}",
        "warm sync calls", "calls/s", "p50 ms", "p99 ms", "errors", "window s", "per caller"
    );
    let mut table = Vec::new();
    for &callers in &args.callers {
        let w = calls(&client, "worker", callers, args.seconds).await;
        let e = calls(&client, "exec", callers, args.seconds).await;
        let r = raw_calls(&docker, &raw, callers, args.seconds).await;
        line(&format!("worker mode, {callers} callers"), callers, &w);
        line(&format!("exec mode, {callers} callers"), callers, &e);
        line(&format!("raw API exec cat, {callers} callers"), callers, &r);
        table.push((callers, e, r));
    }
    println!();
    println!("{:<34} {:>9} {:>9} {:>9}", "exec mode / raw API", "calls/s", "p50", "p99");
    for (callers, e, r) in &table {
        println!(
            "{:<34} {:>9.2} {:>9.2} {:>9.2}",
            format!("{callers} callers"),
            e.ops_per_s / r.ops_per_s,
            e.p50_ms / r.p50_ms,
            e.p99_ms / r.p99_ms
        );
    }
    for id in &raw {
        docker.remove(id).await?;
    }

    println!();
    let mut cold = Vec::new();
    for i in 0..args.cold {
        let name = format!("fncold-{i}");
        client.deploy(app(&name, 1, 0)?).await?;
        let t = Instant::now();
        client.function(&name, "exec").call(b"cold".to_vec()).await?;
        cold.push(t.elapsed().as_secs_f64() * 1000.0);
        client.stop_app(&name).await?;
    }
    cold.sort_by(f64::total_cmp);
    println!(
        "cold call (scale from zero, exec mode): p50 {:.0} ms, max {:.0} ms over {} calls",
        cold[cold.len() / 2],
        cold.last().copied().unwrap_or_default(),
        cold.len()
    );
    // Stopped apps' replicas are drained and removed by the node; wait for that before the
    // node is killed, so no container is left behind.
    client.stop_app("fnbench").await?;
    let apps: Vec<String> =
        std::iter::once("fnbench".to_string()).chain((0..args.cold).map(|i| format!("fncold-{i}"))).collect();
    super::procs::wait_until(Duration::from_secs(60), "replicas removed", || async {
        let mut left = 0;
        for a in &apps {
            left += client.function_status(a).await.map_or(1, |fs| fs.iter().map(|f| f.replicas.len()).sum());
        }
        left == 0
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(cluster);
    let _ = std::process::Command::new("docker").args(["rmi", "-f", WORKER_IMAGE]).output();
    Ok(())
}
