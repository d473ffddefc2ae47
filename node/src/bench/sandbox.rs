//! `flotilla bench sandbox`: what a sandbox costs through Flotilla compared with the raw
//! Docker API doing the same work from the same machine, in one run.
//!
//! - *create → first exec done*: create a sandbox (container) and run `true` in it. Raw:
//!   bollard create + start + exec with the very container spec Flotilla uses. Flotilla:
//!   SDK `create` (waits for running) + `exec(["true"]).output()`, on a one-node cluster,
//!   cold (no warm pool) and warm (`--warm-pool`, refilled between iterations, untimed).
//! - *create → running* on the warm path, which is what E2B and Daytona advertise.
//! - *exec round trip*: `true` in a running sandbox.
//! - *stdout throughput* of one exec writing 200 MB.
//!
//! Removal of each sandbox/container happens between iterations and is not timed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flotilla::Client;
use futures::StreamExt;

use super::procs::{wait_until, Cluster};
use crate::runtime::{images, ContainerSpec, Docker, ExecSpec, Limits};

const IMAGE: &str = "flotilla/busybox";
/// Bytes written by the throughput exec.
const THROUGHPUT_BYTES: u64 = 200_000_000;

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Iterations of each latency measurement.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Warm pool size of the warm-path node.
    #[arg(long, default_value_t = 4)]
    pool: usize,
}

/// Latency samples, summarised.
struct Samples(Vec<Duration>);

impl Samples {
    fn quantile(&self, q: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i].as_secs_f64() * 1000.0
    }
}

fn row(label: &str, s: &Samples) -> String {
    format!("{label:<44} {:>9.1} {:>9.1}", s.quantile(0.5), s.quantile(0.99))
}

fn ratio(label: &str, a: &Samples, b: &Samples) -> String {
    format!("{label:<44} {:>9.2} {:>9.2}", a.quantile(0.5) / b.quantile(0.5), a.quantile(0.99) / b.quantile(0.99))
}

fn raw_spec(i: usize) -> ContainerSpec {
    ContainerSpec {
        name: Some(format!("flotilla-bench-raw-{}-{i}", std::process::id())),
        image: IMAGE.into(),
        cmd: None,
        env: Vec::new(),
        workdir: None,
        limits: Limits { cpu: 1.0, memory_mib: 512, pids: crate::sandbox::actor::PIDS_LIMIT },
        block_network: false,
        runtime: None,
        labels: BTreeMap::from([super::procs::bench_label()]),
        gpu_devices: Vec::new(),
        disk_mib: None,
        writable_rootfs: false,
    }
}

async fn raw_exec(docker: &Docker, id: &str, cmd: &[&str]) -> anyhow::Result<(u64, i64)> {
    let spec =
        ExecSpec { cmd: cmd.iter().map(|s| s.to_string()).collect(), env: Vec::new(), workdir: None, stdin: false };
    let mut p = docker.exec(id, &spec).await?;
    let mut bytes = 0;
    while let Some(chunk) = p.output.next().await {
        if let crate::runtime::Output::Stdout(b) = chunk? {
            bytes += b.len() as u64;
        }
    }
    let code = docker.exec_exit_code(&p.exec_id).await?.unwrap_or(-1);
    Ok((bytes, code))
}

/// Raw engine: create + start + exec `true`, per iteration.
async fn raw_start(docker: &Docker, n: usize) -> anyhow::Result<Samples> {
    let mut samples = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let id = docker.create(&raw_spec(i)).await?;
        docker.start(&id).await?;
        raw_exec(docker, &id, &["true"]).await?;
        samples.push(t.elapsed());
        docker.remove(&id).await?;
    }
    Ok(Samples(samples))
}

/// Flotilla: create (waiting for running) + exec `true`; also returns create→running.
async fn flotilla_start(
    client: &Client,
    n: usize,
    before_each: impl AsyncFn() -> anyhow::Result<()>,
) -> anyhow::Result<(Samples, Samples)> {
    let (mut first_exec, mut running) = (Vec::new(), Vec::new());
    for _ in 0..n {
        before_each().await?;
        let t = Instant::now();
        let sb = client.sandbox().image(IMAGE).create().await?;
        running.push(t.elapsed());
        let r = sb.exec(["true"]).output().await?;
        anyhow::ensure!(r.exit_code == 0, "exec true exited {}", r.exit_code);
        first_exec.push(t.elapsed());
        client.terminate_sandbox(&sb.id).await?;
    }
    Ok((Samples(first_exec), Samples(running)))
}

/// Pooled containers of the node with data-dir instance label `instance` that run. The pool
/// adds a container to its ready set as soon as the engine has started it, so running here is
/// ready there. Other nodes' pools on the same engine are not counted.
async fn pooled(docker: &Docker, instance: &str) -> usize {
    let Ok(listed) = docker.list_named(instance).await else { return 0 };
    let mut running = 0;
    for c in listed.iter().filter(|c| c.labels.contains_key(crate::sandbox::pool::LABEL_POOL)) {
        running += usize::from(docker.state(&c.id).await.ok().flatten().is_some_and(|s| s.running));
    }
    running
}

pub async fn run(args: &SandboxArgs) -> anyhow::Result<()> {
    let n = args.iterations.max(2);
    let docker = Docker::connect().await?;
    if !docker.image_exists(IMAGE).await? {
        images::build_busybox(&docker, IMAGE, |s| eprintln!("  {s}")).await?;
    }
    println!("flotilla bench sandbox: {n} iterations each, image {IMAGE}, one node, same machine");
    println!();
    println!("{:<44} {:>9} {:>9}", "", "p50 ms", "p99 ms");

    let raw = raw_start(&docker, n).await?;
    println!("{}", row("raw API: create+start+exec true", &raw));

    let cold = Cluster::flotilla(1, &[])?;
    let client = Client::connect(cold.endpoints.clone()).await?;
    cold.ready(&client).await?;
    let (cold_exec, cold_running) = flotilla_start(&client, n, async || Ok(())).await?;
    println!("{}", row("flotilla cold: create -> running", &cold_running));
    println!("{}", row("flotilla cold: create -> first exec done", &cold_exec));

    // Exec round trip and throughput, in one running sandbox / container.
    let sb = client.sandbox().image(IMAGE).create().await?;
    let raw_id = docker.create(&raw_spec(n)).await?;
    docker.start(&raw_id).await?;
    let (mut fl, mut rw) = (Vec::new(), Vec::new());
    for _ in 0..n.max(100) {
        let t = Instant::now();
        sb.exec(["true"]).output().await?;
        fl.push(t.elapsed());
        let t = Instant::now();
        raw_exec(&docker, &raw_id, &["true"]).await?;
        rw.push(t.elapsed());
    }
    let (fl, rw) = (Samples(fl), Samples(rw));
    let cmd = format!("head -c {THROUGHPUT_BYTES} /dev/zero");
    let t = Instant::now();
    let mut p = sb.exec(["sh", "-c", &cmd]).spawn().await?;
    p.close_stdin().await?;
    let mut got = 0u64;
    while let Some(ev) = p.next_event().await? {
        if let flotilla::ExecEvent::Stdout(b) = ev {
            got += b.len() as u64;
        }
    }
    let fl_mbps = got as f64 / 1e6 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (raw_got, _) = raw_exec(&docker, &raw_id, &["sh", "-c", &cmd]).await?;
    let raw_mbps = raw_got as f64 / 1e6 / t.elapsed().as_secs_f64();
    docker.remove(&raw_id).await?;
    drop(cold);

    let warm = Cluster::flotilla(1, &["--warm-pool", &format!("{IMAGE}={}", args.pool)])?;
    let client = Client::connect(warm.endpoints.clone()).await?;
    warm.ready(&client).await?;
    let (full, instance) = (args.pool, warm.instance_label(0)?);
    let refilled =
        || wait_until(Duration::from_secs(30), "warm pool", || async { pooled(&docker, &instance).await >= full });
    let (warm_exec, warm_running) = flotilla_start(&client, n, refilled).await?;
    drop(warm);

    println!("{}", row("flotilla warm: create -> running", &warm_running));
    println!("{}", row("flotilla warm: create -> first exec done", &warm_exec));
    println!("{}", row("raw API: exec true round trip", &rw));
    println!("{}", row("flotilla: exec true round trip", &fl));
    println!();
    println!("{:<44} {:>9} {:>9}", "ratios (flotilla / raw)", "p50", "p99");
    println!("{}", ratio("cold create -> first exec done", &cold_exec, &raw));
    println!("{}", ratio("warm create -> first exec done", &warm_exec, &raw));
    println!("{}", ratio("exec round trip", &fl, &rw));
    println!("{:<44} {:>9.2} ms over raw", "exec round trip p50 overhead", fl.quantile(0.5) - rw.quantile(0.5));
    println!();
    println!(
        "stdout throughput of one exec ({} MB): flotilla {fl_mbps:.0} MB/s, raw API {raw_mbps:.0} MB/s, ratio {:.2}",
        THROUGHPUT_BYTES / 1_000_000,
        fl_mbps / raw_mbps
    );
    Ok(())
}
