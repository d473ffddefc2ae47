//! `flotilla bench catalog`: small catalog writes (an app redeploy, about 400 bytes of spec)
//! against a three-node Flotilla cluster and the same shape of load (a put of a value of the
//! same size) against a three-member etcd cluster, both on loopback with fsync on, then the
//! leader failover time (SIGKILL of the leader to the next acknowledged write).
//!
//! Two routings, each run on both systems (`--routing`):
//! - `leader`: every write goes straight to the leader. Flotilla's SDK follows the leader
//!   named in its first reply; etcd's clients all connect to the member whose `/metrics` says
//!   `etcd_server_is_leader 1`.
//! - `spread`: client i stays on member i mod 3 (Flotilla clients are given that one endpoint),
//!   so two thirds of the writes pay a follower-to-leader hop on both systems.
//!
//! Every point is run `--runs` times (interleaved: Flotilla, etcd, Flotilla, ...) and printed as
//! min / median / max, never the best run alone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla::{AppSpec, Client, ClientOptions};
use flotilla_proto::etcd::kv_client::KvClient;
use flotilla_proto::etcd::PutRequest;

use super::load::{closed_loop, Figures};
use super::procs::{http_get, wait_until, Cluster};

#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    /// Concurrent clients per run, comma-separated.
    #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Length of each run, seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The etcd server binary (Debian: `apt-get install etcd-server`).
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Skip the etcd comparison.
    #[arg(long)]
    no_etcd: bool,
    /// Leader kills for the failover figure (the median is printed).
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Where clients send their writes, comma-separated (see the module doc).
    #[arg(long, default_value = "leader,spread", value_delimiter = ',')]
    routing: Vec<Routing>,
    /// Runs of each point; the spread over them is printed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Where a client sends its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Routing {
    /// Straight to the leader.
    Leader,
    /// Client i stays on member i mod 3.
    Spread,
}

fn spec(client: usize) -> AppSpec {
    AppSpec::from_toml_str(&format!(
        "name = \"bench-{client}\"\n[functions.tick]\nimage = \"flotilla/busybox\"\ncommand = [\"sh\", \"-c\", \"date\"]\n"
    ))
    .expect("the benchmark spec is valid")
}

/// Endpoints rotated so that client `i` tries member `i mod n` first.
fn rotated(endpoints: &[String], i: usize) -> Vec<String> {
    let n = endpoints.len();
    (0..n).map(|k| endpoints[(i + k) % n].clone()).collect()
}

async fn flotilla_run(
    cluster: &Cluster,
    clients: usize,
    duration: Duration,
    routing: Routing,
) -> anyhow::Result<Figures> {
    let mut handles = Vec::new();
    for i in 0..clients {
        let endpoints = match routing {
            // The SDK follows the leader named in each reply.
            Routing::Leader => rotated(&cluster.endpoints, i),
            // With one endpoint it has no other member to follow the leader to.
            Routing::Spread => vec![cluster.endpoints[i % cluster.endpoints.len()].clone()],
        };
        handles.push(Client::connect(endpoints).await?);
    }
    let handles = std::sync::Arc::new(handles);
    let specs: std::sync::Arc<Vec<AppSpec>> = std::sync::Arc::new((0..clients).map(spec).collect());
    Ok(closed_loop(clients, duration, move |client, _| {
        let (handles, specs) = (handles.clone(), specs.clone());
        async move {
            handles[client].deploy(specs[client].clone()).await?;
            Ok(())
        }
    })
    .await)
}

/// The index of the etcd member that is leader, from its Prometheus metrics.
async fn etcd_leader(cluster: &Cluster) -> anyhow::Result<usize> {
    for (i, e) in cluster.endpoints.iter().enumerate() {
        let addr = e.trim_start_matches("http://");
        if http_get(addr, "/metrics").await?.lines().any(|l| l.trim() == "etcd_server_is_leader 1") {
            return Ok(i);
        }
    }
    anyhow::bail!("no etcd member reports etcd_server_is_leader 1")
}

async fn etcd_run(
    cluster: &Cluster,
    clients: usize,
    duration: Duration,
    value_len: usize,
    routing: Routing,
) -> anyhow::Result<Figures> {
    let leader = etcd_leader(cluster).await?;
    let mut handles = Vec::new();
    for i in 0..clients {
        let member = match routing {
            Routing::Leader => leader,
            Routing::Spread => i % cluster.endpoints.len(),
        };
        let endpoint = cluster.endpoints[member].clone();
        handles
            .push(KvClient::new(tonic::transport::Endpoint::from_shared(endpoint)?.tcp_nodelay(true).connect_lazy()));
    }
    let handles = std::sync::Arc::new(handles);
    let value = vec![b'x'; value_len];
    Ok(closed_loop(clients, duration, move |client, _| {
        let mut kv = handles[client].clone();
        let req = PutRequest { key: format!("bench-{client}").into_bytes(), value: value.clone() };
        async move {
            kv.put(req).await?;
            Ok(())
        }
    })
    .await)
}

async fn flotilla_ready(cluster: &Cluster) -> anyhow::Result<()> {
    let client = Client::connect(cluster.endpoints.clone()).await?;
    cluster.ready(&client).await?;
    // The first write after an election also waits for the node registrations.
    client.deploy(spec(0)).await?;
    Ok(())
}

async fn etcd_ready(cluster: &Cluster) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(30), "etcd cluster", || async {
        let mut ok = true;
        for e in &cluster.endpoints {
            let Ok(ep) = tonic::transport::Endpoint::from_shared(e.clone()) else { return false };
            let mut kv = KvClient::new(ep.connect_lazy());
            ok &= kv.put(PutRequest { key: b"ready".to_vec(), value: b"1".to_vec() }).await.is_ok();
        }
        ok
    })
    .await
}

/// SIGKILLs the leader `kills` times and measures kill -> next acknowledged write.
async fn failover(cluster: &mut Cluster, kills: usize) -> anyhow::Result<Vec<Duration>> {
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        retry_for: Duration::ZERO,
        token: None,
        tls_ca: None,
    };
    let all = Client::connect_with(cluster.endpoints.clone(), options).await?;
    let mut times = Vec::new();
    for _ in 0..kills {
        flotilla_ready(cluster).await?;
        let leader = all.cluster_status().await?.leader.context("no leader")?;
        let index = (leader - 1) as usize;
        cluster.kill(index);
        let t0 = Instant::now();
        loop {
            if all.deploy(spec(1)).await.is_ok() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("no write acknowledged within 30 s of killing leader {leader}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        times.push(t0.elapsed());
        cluster.restart(index)?;
    }
    Ok(times)
}

fn row(label: &str, f: &Figures) -> String {
    format!("{label:<9} {:>8} {:>10.0} {:>8.2} {:>8.2} {:>7}", f.ops, f.ops_per_s, f.p50_ms, f.p99_ms, f.errors)
}

/// min / median / max of `value` over the runs.
fn spread(runs: &[Figures], value: impl Fn(&Figures) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = runs.iter().map(value).collect();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn summary(label: &str, runs: &[Figures]) -> String {
    let (a, b, c) = spread(runs, |f| f.ops_per_s);
    let (d, e, g) = spread(runs, |f| f.p50_ms);
    let (h, i, j) = spread(runs, |f| f.p99_ms);
    format!(
        "{label:<9} ops/s {b:>7.0} [{a:.0}-{c:.0}]   p50 ms {e:>6.2} [{d:.2}-{g:.2}]   p99 ms {i:>6.2} [{h:.2}-{j:.2}]"
    )
}

pub async fn run(args: &CatalogArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let value_len = serde_json::to_string(&spec(0))?.len();
    let runs = args.runs.max(1);
    println!(
        "flotilla bench catalog: 3 nodes each, loopback, fsync on (Flotilla: fdatasync of its log file; etcd: \
         fdatasync of its WAL), {}s per run, {runs} runs per point, {value_len}-byte writes",
        args.seconds
    );

    let mut flotilla = Cluster::flotilla(3, &[])?;
    flotilla_ready(&flotilla).await?;
    let etcd = if args.no_etcd {
        None
    } else {
        let c = Cluster::etcd(&args.etcd)
            .with_context(|| format!("etcd binary {:?} (apt-get install etcd-server)", args.etcd))?;
        etcd_ready(&c).await?;
        Some(c)
    };

    for &routing in &args.routing {
        println!();
        println!("== routing: {routing:?} (see `--routing`)");
        println!("{:<9} {:>8} {:>10} {:>8} {:>8} {:>7}", "system", "ops", "ops/s", "p50 ms", "p99 ms", "errors");
        for &clients in &args.clients {
            println!("-- {clients} client(s)");
            let (mut fl, mut et) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let f = flotilla_run(&flotilla, clients, duration, routing).await?;
                println!("{}", row("flotilla", &f));
                fl.push(f);
                if let Some(etcd) = &etcd {
                    let e = etcd_run(etcd, clients, duration, value_len, routing).await?;
                    println!("{}", row("etcd", &e));
                    et.push(e);
                }
            }
            println!("{}", summary("flotilla", &fl));
            if !et.is_empty() {
                println!("{}", summary("etcd", &et));
                let median = |r: &[Figures], v: fn(&Figures) -> f64| spread(r, v).1;
                println!(
                    "ratio of medians (flotilla / etcd): ops/s {:.2}, p50 {:.2}",
                    median(&fl, |f| f.ops_per_s) / median(&et, |f| f.ops_per_s),
                    median(&fl, |f| f.p50_ms) / median(&et, |f| f.p50_ms)
                );
            }
        }
    }
    drop(etcd);

    if args.kills > 0 {
        let mut times = failover(&mut flotilla, args.kills).await?;
        times.sort();
        let ms: Vec<String> = times.iter().map(|t| format!("{}", t.as_millis())).collect();
        println!();
        println!(
            "leader failover (SIGKILL -> next acknowledged write): median {} ms over {} kills [{} ms]",
            times[times.len() / 2].as_millis(),
            times.len(),
            ms.join(", ")
        );
    }
    Ok(())
}
