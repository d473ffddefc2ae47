//! `flotilla bench snapshots`: snapshot and restore through Flotilla against the raw engine
//! doing the comparable work, memory snapshots per GB, and failover time, in one run on a
//! three-node cluster on loopback (replication factor 2, so every snapshot crosses once
//! between two nodes).
//!
//! - *fs snapshot* of N MB written in `/work`: SDK `snapshot_filesystem` (store the blob
//!   locally, push it to one peer, commit ready). Raw: the engine's archive of `/work` (what
//!   `docker cp` reads; `docker commit`/`export` do not see `/work`, a volume) written to a
//!   file, plus a file copy standing in for the transfer to another node.
//! - *restore*: SDK create from the snapshot, to running (on a node chosen by placement,
//!   fetching the blob if it holds no copy). Raw: create + upload the archive file + start.
//! - *replication throughput*: bytes per second from the start of the snapshot until the
//!   peer has recorded its copy (the push runs while the blob is written), from the node's
//!   own timing.
//! - *memory snapshot*: a process holding N MB of resident memory; checkpoint + store, and
//!   the whole call, per GB; restore to running. Raw: the engine's checkpoint of the same
//!   process (leave running), and create + copy the checkpoint in + start from it. The ratio
//!   compares the whole SDK call with the raw checkpoint, both timed by this process (the
//!   node's own checkpoint + store time is printed beside them, not used in the ratio).
//! - *failover*: SIGKILL the node hosting a `--restore-on-failure` sandbox (and remove its
//!   containers); from the kill, the time until the survivors report it down (detection,
//!   measured) and until an exec answers on another node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flotilla::Client;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::procs::{wait_until, Cluster};
use crate::runtime::{images, ContainerSpec, Docker, ExecSpec, Limits};

const IMAGE: &str = "flotilla/busybox";
/// Prints the resident memory of every process in the container, kB.
const RESIDENT_KB: &str = "grep VmRSS /proc/[0-9]*/status | awk '{ s += $2 } END { print s }'";

#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// Data sizes written in the sandbox, MB (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    sizes: Vec<u64>,
    /// Resident memory sizes for memory snapshots, MB (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "256,1024")]
    memory: Vec<u64>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

async fn sh(sb: &flotilla::Sandbox, script: &str) -> anyhow::Result<String> {
    let out = sb.exec(["sh", "-c", script]).output().await?;
    anyhow::ensure!(out.exit_code == 0, "{script}: exit {}: {}", out.exit_code, String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn raw_spec(tag: &str) -> ContainerSpec {
    raw_spec_with(tag, None, 512)
}

fn raw_spec_with(tag: &str, cmd: Option<Vec<String>>, memory_mib: u64) -> ContainerSpec {
    ContainerSpec {
        name: Some(format!("flotilla-bench-snap-{}-{tag}", std::process::id())),
        image: IMAGE.into(),
        cmd,
        env: Vec::new(),
        workdir: None,
        limits: Limits { cpu: 1.0, memory_mib, pids: crate::sandbox::actor::PIDS_LIMIT },
        block_network: false,
        runtime: None,
        labels: BTreeMap::from([super::procs::bench_label()]),
        gpu_devices: Vec::new(),
        disk_mib: None,
        writable_rootfs: false,
    }
}

async fn raw_sh(docker: &Docker, id: &str, script: &str) -> anyhow::Result<()> {
    let spec =
        ExecSpec { cmd: vec!["sh".into(), "-c".into(), script.into()], env: Vec::new(), workdir: None, stdin: false };
    let mut p = docker.exec(id, &spec).await?;
    while p.output.next().await.transpose()?.is_some() {}
    Ok(())
}

/// Raw engine: archive of `/work` to a file + a file copy; then create + upload + start.
async fn raw_round_trip(docker: &Docker, mb: u64, scratch: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let src = docker.create(&raw_spec(&format!("src-{mb}"))).await?;
    docker.start(&src).await?;
    raw_sh(docker, &src, &format!("head -c {}000000 /dev/urandom > /work/data", mb)).await?;
    let (file, copy) = (scratch.join(format!("raw-{mb}.tar")), scratch.join(format!("raw-{mb}-copy.tar")));
    let t = Instant::now();
    let mut out = tokio::fs::File::create(&file).await?;
    let mut archive = Box::pin(docker.get_archive(&src, "/work/."));
    while let Some(chunk) = archive.next().await {
        out.write_all(&chunk?).await?;
    }
    out.sync_all().await?;
    tokio::fs::copy(&file, &copy).await?;
    let snap = t.elapsed();
    let t = Instant::now();
    let dst = docker.create(&raw_spec(&format!("dst-{mb}"))).await?;
    let body = tokio_util_stream(copy.clone()).await?;
    docker.put_archive_stream(&dst, "/work", body).await?;
    docker.start(&dst).await?;
    let restore = t.elapsed();
    for id in [src, dst] {
        docker.remove(&id).await?;
    }
    let _ = tokio::fs::remove_file(file).await;
    let _ = tokio::fs::remove_file(copy).await;
    Ok((secs(snap), secs(restore)))
}

/// The sandbox command that holds `mb` MB of resident memory: awk doubles a string up to the
/// size, then sleeps holding it.
fn memory_hog(mb: u64) -> Vec<String> {
    let awk =
        format!("awk 'BEGIN {{ s = \"x\"; while (length(s) < {mb} * 1000000) s = s s; system(\"sleep 100000\") }}'");
    vec!["sh".into(), "-c".into(), awk]
}

/// Raw engine: checkpoint (leave running) a container holding `mb` MB, then create a new
/// one, copy the checkpoint in and start from it. Returns both times.
async fn raw_memory(docker: &Docker, mb: u64) -> anyhow::Result<(f64, f64)> {
    let memory = mb * 3 + 256;
    let src = docker.create(&raw_spec_with(&format!("msrc-{mb}"), Some(memory_hog(mb)), memory)).await?;
    docker.start(&src).await?;
    let want_kb = mb * 900_000 / 1024;
    wait_until(Duration::from_secs(120), "raw memory filled", || async {
        let spec = ExecSpec {
            cmd: vec!["sh".into(), "-c".into(), RESIDENT_KB.into()],
            env: Vec::new(),
            workdir: None,
            stdin: false,
        };
        let Ok(mut p) = docker.exec(&src, &spec).await else { return false };
        let mut out = Vec::new();
        while let Some(Ok(crate::runtime::Output::Stdout(b))) = p.output.next().await {
            out.extend_from_slice(&b);
        }
        String::from_utf8_lossy(&out).trim().parse::<u64>().unwrap_or(0) >= want_kb
    })
    .await?;
    let t = Instant::now();
    docker.checkpoint(&src, "bench").await?;
    let checkpoint = secs(t.elapsed());
    let from = docker.checkpoint_dir(&src, "bench").await?;
    let t = Instant::now();
    let dst = docker.create(&raw_spec_with(&format!("mdst-{mb}"), Some(memory_hog(mb)), memory)).await?;
    let to = docker.checkpoint_dir(&dst, "bench").await?;
    tokio::task::spawn_blocking(move || copy_dir(&from, &to)).await??;
    docker.start_from_checkpoint(&dst, "bench").await?;
    let restore = secs(t.elapsed());
    for id in [src, dst] {
        docker.remove(&id).await?;
    }
    Ok((checkpoint, restore))
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// A file as a stream of 1 MiB chunks.
async fn tokio_util_stream(
    path: std::path::PathBuf,
) -> anyhow::Result<impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static> {
    let file = tokio::fs::File::open(path).await?;
    Ok(futures::stream::try_unfold(file, |mut f| async move {
        let mut buf = bytes::BytesMut::with_capacity(1 << 20);
        let n = tokio::io::AsyncReadExt::read_buf(&mut f, &mut buf).await?;
        Ok((n > 0).then(|| (buf.freeze(), f)))
    }))
}

pub async fn run(args: &SnapshotsArgs) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    if !docker.image_exists(IMAGE).await? {
        images::build_busybox(&docker, IMAGE, |s| eprintln!("  {s}")).await?;
    }
    let scratch = tempfile::tempdir()?;
    let mut cluster = Cluster::flotilla(3, &[])?;
    let client = Client::connect(cluster.endpoints.clone()).await?;
    cluster.ready(&client).await?;
    println!("flotilla bench snapshots: three nodes on loopback, replication factor 2, image {IMAGE}");
    println!();
    println!(
        "{:<10} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8} {:>12}",
        "data", "snap s", "raw s", "ratio", "restore s", "raw s", "ratio", "2 nodes MB/s"
    );
    for &mb in &args.sizes {
        let sb = client.sandbox().image(IMAGE).create().await?;
        sh(&sb, &format!("head -c {mb}000000 /dev/urandom > /work/data")).await?;
        let t = Instant::now();
        let (snap, timings) = sb.snapshot("fs", None, |_| {}).await?;
        let snap_s = secs(t.elapsed());
        let t = Instant::now();
        let copy = client.sandbox().from_snapshot(&snap).create().await?;
        let restore_s = secs(t.elapsed());
        anyhow::ensure!(
            sh(&copy, "wc -c < /work/data").await?.trim() == format!("{mb}000000"),
            "restored data differs"
        );
        client.terminate_sandbox(&copy.id).await?;
        client.terminate_sandbox(&sb.id).await?;
        client.remove_snapshot(&snap.id).await?;
        let (raw_snap, raw_restore) = raw_round_trip(&docker, mb, scratch.path()).await?;
        println!(
            "{:<10} {:>10.2} {:>10.2} {:>8.2} {:>10.2} {:>10.2} {:>8.2} {:>12.0}",
            format!("{mb} MB"),
            snap_s,
            raw_snap,
            snap_s / raw_snap,
            restore_s,
            raw_restore,
            restore_s / raw_restore,
            snap.size_bytes as f64 / 1e6 / (timings.store_s + timings.replicate_s).max(1e-9)
        );
    }
    println!();
    println!(
        "{:<10} {:>9} {:>10} {:>7} {:>8} {:>8} {:>9} {:>8} {:>7}",
        "memory", "RSS MB", "ckpt+st s", "s/GB", "total s", "raw s", "restore s", "raw s", "ratio"
    );
    for &mb in &args.memory {
        let cmd = memory_hog(mb);
        let sb = client.sandbox().image(IMAGE).memory_mib(mb * 3 + 256).command(cmd).create().await?;
        let want_kb = mb * 900_000 / 1024;
        let resident =
            || async { sh(&sb, RESIDENT_KB).await.ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0) };
        wait_until(Duration::from_secs(120), "memory filled", || async { resident().await >= want_kb }).await?;
        let rss_kb = resident().await;
        let t = Instant::now();
        let (snap, timings) = sb.snapshot("memory", None, |_| {}).await?;
        let total = secs(t.elapsed());
        let t = Instant::now();
        let copy = client.sandbox().from_snapshot(&snap).create().await?;
        let restore = secs(t.elapsed());
        let gb = rss_kb as f64 * 1024.0 / 1e9;
        client.terminate_sandbox(&copy.id).await?;
        client.terminate_sandbox(&sb.id).await?;
        client.remove_snapshot(&snap.id).await?;
        let (raw_ckpt, raw_restore) = raw_memory(&docker, mb).await?;
        println!(
            "{:<10} {:>9.0} {:>10.2} {:>7.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>7.2}",
            format!("{mb} MB"),
            rss_kb as f64 * 1024.0 / 1e6,
            timings.store_s,
            timings.store_s / gb,
            total,
            raw_ckpt,
            restore,
            raw_restore,
            total / raw_ckpt
        );
    }
    println!(
        "(ckpt+st: checkpoint and store, as the node times it; total: the whole SDK call incl. replication, timed \
         here; raw: the engine's own checkpoint, and create + copy + start from it, timed here; ratio: total / raw \
         checkpoint, both timed here around the call)"
    );
    println!();
    failover(&mut cluster, &client, &docker).await?;
    // Nodes leave their containers behind when they stop; the benchmark's are of no use.
    for i in 0..cluster.endpoints.len() {
        for c in docker.list_named(&cluster.instance_label(i)?).await? {
            docker.remove(&c.id).await?;
        }
    }
    Ok(())
}

/// Kills the node hosting a `--restore-on-failure` sandbox and times the way back, all from
/// the kill: the survivors reporting the node down (detection, polled every 50 ms), and an
/// exec answering on another node. A dead machine takes its containers with it; here the
/// engine is shared, so the bench removes them itself, inside the timed span.
async fn failover(cluster: &mut Cluster, client: &Client, docker: &Docker) -> anyhow::Result<()> {
    let sb = client.sandbox().image(IMAGE).restore_on_failure(true).create().await?;
    sh(&sb, "echo state > /work/state").await?;
    sb.snapshot_filesystem().await?;
    let node = sb.info.node as usize;
    let live: Vec<String> =
        cluster.endpoints.iter().enumerate().filter(|(i, _)| *i != node - 1).map(|(_, e)| e.clone()).collect();
    let survivors = Client::connect(live).await?;
    let t = Instant::now();
    cluster.kill(node - 1);
    for c in docker.list_named(&cluster.instance_label(node - 1)?).await? {
        docker.remove(&c.id).await?;
    }
    let removed = t.elapsed();
    let detected = async {
        wait_until(Duration::from_secs(60), "the node reported down", || async {
            survivors
                .cluster_status()
                .await
                .is_ok_and(|st| st.nodes.iter().any(|n| n.id as usize == node && n.status == "down"))
        })
        .await
        .map(|()| t.elapsed())
    };
    let answered = async {
        wait_until(Duration::from_secs(60), "the sandbox answering elsewhere", || async {
            match survivors.sandbox_from_id(&sb.id).await {
                Ok(s) if s.info.state == "running" && s.info.node as usize != node => {
                    s.exec(["cat", "/work/state"]).output().await.is_ok_and(|o| o.stdout == b"state\n")
                }
                _ => false,
            }
        })
        .await
        .map(|()| t.elapsed())
    };
    let (detected, answered) = tokio::join!(detected, answered);
    let (detected, answered) = (detected?, answered?);
    let moved = survivors.sandbox_info(&sb.id).await?;
    println!(
        "failover (all from the SIGKILL of node {node}; the bench's removal of its containers took {:.2} s of it):",
        secs(removed)
    );
    println!(
        "  node reported down by the survivors after {:.2} s; exec answered on node {} (generation {}) after {:.2} s, \
         {:.2} s after detection",
        secs(detected),
        moved.node,
        moved.generation,
        secs(answered),
        secs(answered) - secs(detected)
    );
    survivors.terminate_sandbox(&sb.id).await?;
    Ok(())
}
