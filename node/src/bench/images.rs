//! `flotilla bench images`: an image moving between nodes through the blob store, against the
//! floor of `docker save | docker load` between the same engines, in one run. Three nodes,
//! each on an engine of its own (see `engines`); the images are built on node 1's engine only.
//!
//! - *floor*: `docker save A` from engine 1 piped into `docker load` on engines 2 and 3 at once
//!   (the two loads run side by side, as the two fetches do), to both loaded. Then A is
//!   removed from engines 2 and 3 again.
//! - *warm start*: a sandbox of A on node 1, which has it: create to running.
//! - *cold start on two peers*: two sandboxes of A created at once, placed on nodes 2 and 3
//!   (node 1 is made busier first), each fetching A from node 1: create to both running. The
//!   ratio is against the floor.
//! - *second image*: B is A plus a 1 MB file, created on node 2, which has A's layers: create
//!   to running, and the bytes that moved, against the floor of `docker save B | docker load`
//!   into engine 3 (which has A and not B, as engine 2 had: the engine skips A's layers, as
//!   the fetch does).
//!
//! Image A is busybox plus one layer of `--mb` MB of random bytes (incompressible, the worst
//! case for a transfer), so a fetch moves about that much.

use std::process::Command;
use std::time::{Duration, Instant};

use flotilla::Client;

use super::engines::Engines;
use super::procs::Cluster;

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Size of the image's large layer, MB.
    #[arg(long, default_value_t = 300)]
    mb: usize,
}

fn sh(script: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let o = Command::new("sh").args(["-c", script]).output()?;
    anyhow::ensure!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    Ok(started.elapsed())
}

/// Builds `FROM base` plus a file of `mb` MB of random bytes as `tag` on engine `host`.
fn build(host: &str, base: &str, tag: &str, mb: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut data = vec![0u8; mb << 20];
    rand::fill(data.as_mut_slice());
    std::fs::write(dir.path().join("data"), data)?;
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {base}\nCOPY data /data-{mb}\n"))?;
    let o = Command::new("docker")
        .args(["-H", host, "build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()?;
    anyhow::ensure!(o.status.success(), "docker build {tag}: {}", String::from_utf8_lossy(&o.stderr));
    Ok(())
}

/// Creates a sandbox of `image` with `cpu` cores; its node and the time to running.
async fn start(client: &Client, image: &str, cpu: f64) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let sb = client.sandbox().image(image).cpu(cpu).create().await?;
    Ok((sb.info.node, started.elapsed()))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Field `key` of the line node `i` (0-based) logged when it fetched `image`.
fn fetched(cluster: &Cluster, i: usize, image: &str, key: &str) -> Option<f64> {
    let log = cluster.log(i).ok()?;
    let line = log.lines().rev().find(|l| l.contains("image fetched from a peer and loaded") && l.contains(image))?;
    line.split(&format!(" {key}=")).nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Where node `i`'s fetch of `image` spent its time, from its log.
fn phases(cluster: &Cluster, i: usize, image: &str) -> String {
    let f = |key| fetched(cluster, i, image, key).map_or("?".to_string(), |v| format!("{v:.2}"));
    format!("export {} s, fetch {} s, rebuild+load {} s", f("export_secs"), f("fetch_secs"), f("load_secs"))
}

pub async fn run(args: &ImagesArgs) -> anyhow::Result<()> {
    let engines = tokio::task::spawn_blocking(|| Engines::start(3)).await?;
    let run_id = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let (a, b) = (format!("flotilla-bench/image-a:{run_id}"), format!("flotilla-bench/image-b:{run_id}"));
    let (e1, e2, e3) = (engines.host(1), engines.host(2), engines.host(3));
    println!("building image A (busybox + {} MB) and B (A + 1 MB) on engine 1", args.mb);
    build(&e1, "flotilla/busybox", &a, args.mb)?;
    build(&e1, &a, &b, 1)?;

    let floor = sh(&format!(
        "docker -H {e1} save {a} | docker -H {e2} load -q & docker -H {e1} save {a} | docker -H {e3} load -q & wait"
    ))?;
    for host in [&e2, &e3] {
        sh(&format!("docker -H {host} rmi {a}"))?;
    }

    let hosts = [e1.clone(), e2.clone(), e3.clone()];
    let cluster = Cluster::flotilla_each(3, |i| vec!["--docker-host".to_string(), hosts[i].clone()])?;
    let client = Client::connect(cluster.endpoints.clone()).await?;
    cluster.ready(&client).await?;
    // Image inventories travel in liveness pings; give them a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cores = client.cluster_status().await?.nodes.iter().map(|n| n.cpus).min().unwrap_or(1);
    // A tenth of a node's offered CPU (cores times 4): one sandbox is twice placement's
    // preference for a node with the image.
    let cpu = cores as f64 * 4.0 / 10.0;

    let (node, warm) = start(&client, &a, cpu).await?;
    anyhow::ensure!(node == 1, "the warm start ran on node {node}, not node 1");
    let started = Instant::now();
    let (x, y) = tokio::join!(start(&client, &a, cpu), start(&client, &a, cpu));
    let (cold_two, (nx, tx), (ny, ty)) = (started.elapsed(), x?, y?);
    let mut peers = [nx, ny];
    peers.sort();
    anyhow::ensure!(peers == [2, 3], "the two cold starts ran on nodes {peers:?}, not 2 and 3");
    let moved_a: f64 = (1..3).filter_map(|i| fetched(&cluster, i, &a, "fetched_bytes")).sum();
    let phases_a = [phases(&cluster, 1, &a), phases(&cluster, 2, &a)];

    // Node 1 busier again, so B goes to node 2 (equal room with node 3; the lower id).
    start(&client, &a, cpu).await?;
    let (node_b, cold_b) = start(&client, &b, cpu).await?;
    anyhow::ensure!(node_b == 2, "image B ran on node {node_b}, not node 2");
    let moved_b = fetched(&cluster, 1, &b, "fetched_bytes").unwrap_or(0.0);
    let phases_b = phases(&cluster, 1, &b);
    // Engine 3 has A (fetched above) and not B: what engine 2 had before B's fetch.
    let floor_b = sh(&format!("docker -H {e1} save {b} | docker -H {e3} load -q"))?;
    drop(cluster);
    drop(engines);

    let mb = |bytes: f64| bytes / 1e6;
    println!();
    println!("{:<52} {:>9} {:>12}", "", "seconds", "vs floor");
    println!("{:<52} {:>9.2} {:>12}", "floor: docker save A | docker load, to 2 engines", secs(floor), "1.00x");
    println!("{:<52} {:>9.2} {:>12}", "warm start of A (node 1 has it)", secs(warm), "");
    println!(
        "{:<52} {:>9.2} {:>11.2}x",
        "cold start of A on 2 peers at once (both running)",
        secs(cold_two),
        secs(cold_two) / secs(floor)
    );
    println!("{:<52} {:>9.2} {:>12}", "  node 2 / node 3 each, create to running", secs(tx.max(ty)), "");
    println!("{:<52} {:>9.2} {:>12}", "floor: docker save B | docker load (engine has A)", secs(floor_b), "1.00x");
    println!(
        "{:<52} {:>9.2} {:>11.2}x",
        "cold start of B on node 2 (has A's layers)",
        secs(cold_b),
        secs(cold_b) / secs(floor_b)
    );
    println!("{:<52} {:>9.2} {:>11.2}x", "  vs the first transfer of A", secs(cold_b), secs(cold_b) / secs(cold_two));
    println!();
    println!("moved between nodes: A {:.1} MB (to two nodes), B {:.1} MB", mb(moved_a), mb(moved_b));
    println!("A on node 2: {}; on node 3: {}", phases_a[0], phases_a[1]);
    println!("B on node 2: {phases_b}");
    Ok(())
}
