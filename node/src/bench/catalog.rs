//! `flotilla bench catalog`: small catalog writes (an app redeploy, about 400 bytes of spec)
//! against a three-node Flotilla cluster and the same shape of load (a put of a value of the
//! same size) against a three-member etcd cluster, both on loopback with fsync on, then the
//! leader failover time (SIGKILL of the leader to the next acknowledged write).
//!
//! Clients are spread over the three members of each system (client i starts at member
//! i mod 3), so both pay for follower-to-leader forwarding the same way.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla::{AppSpec, Client, ClientOptions};
use flotilla_proto::etcd::kv_client::KvClient;
use flotilla_proto::etcd::PutRequest;

use super::load::{closed_loop, Figures};
use super::procs::{wait_until, Cluster};

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

async fn flotilla_run(cluster: &Cluster, clients: usize, duration: Duration) -> anyhow::Result<Figures> {
    let mut handles = Vec::new();
    for i in 0..clients {
        handles.push(Client::connect(rotated(&cluster.endpoints, i)).await?);
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

async fn etcd_run(cluster: &Cluster, clients: usize, duration: Duration, value_len: usize) -> anyhow::Result<Figures> {
    let mut handles = Vec::new();
    for i in 0..clients {
        let endpoint = cluster.endpoints[i % cluster.endpoints.len()].clone();
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

pub async fn run(args: &CatalogArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let value_len = serde_json::to_string(&spec(0))?.len();
    println!(
        "flotilla bench catalog: 3 nodes each, loopback, fsync on, {}s per run, {value_len}-byte writes",
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

    println!();
    println!(
        "{:<9} {:>8} {:>10} {:>8} {:>8} {:>7}   {:>14} {:>13}",
        "system", "ops", "ops/s", "p50 ms", "p99 ms", "errors", "ops/s ratio", "p50 ratio"
    );
    for &clients in &args.clients {
        println!("-- {clients} client(s)");
        let f = flotilla_run(&flotilla, clients, duration).await?;
        println!("{}", row("flotilla", &f));
        if let Some(etcd) = &etcd {
            let e = etcd_run(etcd, clients, duration, value_len).await?;
            println!("{}   {:>14.2} {:>13.2}", row("etcd", &e), f.ops_per_s / e.ops_per_s, f.p50_ms / e.p50_ms);
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
