//! `flotilla bench schedules`: a three-node cluster loaded with N period schedules whose
//! anchors are spread evenly over one period, so the leader fires a steady `rate` ticks a
//! second (N = 10,000 fire every 10 s, N = 100,000 every 100 s, at 1,000 fires/s). It prints
//! the load time, the fire rate achieved, the commit lateness of fires (`scheduled_at` to the
//! leader seeing the Fire applied, p50/p99/max over the last 10-20 s, from the leader's
//! `/status`), each node's memory per 100k schedules, the time from SIGKILL of the leader to
//! the first fire committed by the new one, and an audit of every run record: duplicates,
//! gaps (misses) and skips.
//!
//! Lateness to execution start (`scheduled_at` to `started_at`) is computed from the runs that
//! started; without function execution none do, and it is printed as n/a.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla::spec::{CatchUp, FunctionSpec, Schedule};
use flotilla::{AppSpec, Client, RunsFilter};

use super::procs::{http_json, Cluster};

#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    /// Schedule counts to load, one fresh cluster each, comma-separated.
    #[arg(long, default_value = "10000,100000", value_delimiter = ',')]
    schedules: Vec<usize>,
    /// Ticks per second over all schedules (each schedule's period is count / rate seconds).
    #[arg(long, default_value_t = 1000)]
    rate: usize,
    /// Seconds of steady firing measured after the load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Leader kills for the failover figure (the median is printed).
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// Schedules per app: they are deployed as apps of this many scheduled functions.
    #[arg(long, default_value_t = 1000)]
    per_app: usize,
    /// The nodes' `raft.snapshot_every` (log entries between catalog snapshots); the node's
    /// default when unset. Each snapshot encodes and writes the whole catalog.
    #[arg(long)]
    snapshot_every: Option<u64>,
}

/// What one schedule count measured.
struct Outcome {
    load_s: f64,
    fires_per_s: f64,
    lateness: serde_json::Value,
    /// RSS growth per node scaled to 100k schedules: right after the load, and after firing.
    rss_loaded_mib: Vec<f64>,
    rss_fired_mib: Vec<f64>,
    failover_ms: Vec<u128>,
    audit: Audit,
}

#[derive(Default)]
struct Audit {
    runs: usize,
    duplicates: usize,
    misses: usize,
    skipped: usize,
    /// `scheduled_at` to `started_at` of every run that started, ms (empty without execution).
    start_lateness_ms: Vec<i64>,
}

fn app_spec(app: usize, first: usize, count: usize, period_ms: u64, base_ms: i64, total: usize) -> AppSpec {
    let functions = (first..first + count)
        .map(|i| {
            let mut f = FunctionSpec::new("flotilla/busybox", vec!["true".into()]);
            // Anchors spread evenly over one period: schedule i fires at base + i * period / N.
            let offset = (period_ms as i64) * (i as i64) / (total as i64);
            f.schedule = Some(Schedule::Period {
                every_ms: period_ms,
                anchor: chrono::DateTime::from_timestamp_millis(base_ms + offset),
            });
            // A failover can make ticks late; they are caught up, not skipped.
            f.catch_up = CatchUp::All;
            f.catch_up_window_s = 600;
            (format!("f{i:06}"), f)
        })
        .collect();
    AppSpec { name: format!("bench-{app}"), functions }
}

/// The leader's id and `/status`, waiting up to 30 s for a leader (an election may be under
/// way on a busy machine).
async fn leader_status(cluster: &Cluster, client: &Client) -> anyhow::Result<(u64, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = client.cluster_status().await.ok().and_then(|s| s.leader) {
            if let Ok(status) = http_json(&cluster.http[(leader - 1) as usize], "/status").await {
                return Ok((leader, status));
            }
        }
        if Instant::now() > deadline {
            bail!("no leader within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fired(status: &serde_json::Value) -> u64 {
    status["scheduler"]["fired"].as_u64().unwrap_or(0)
}

async fn load(client: &Client, args: &SchedulesArgs, n: usize, period_ms: u64) -> anyhow::Result<f64> {
    let base_ms = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let apps: Vec<AppSpec> = (0..n.div_ceil(args.per_app))
        .map(|a| {
            let first = a * args.per_app;
            app_spec(a, first, args.per_app.min(n - first), period_ms, base_ms, n)
        })
        .collect();
    // Four deploys at a time.
    for chunk in apps.chunks(4) {
        let deploys = chunk.iter().map(|spec| client.deploy(spec.clone()));
        for r in futures::future::join_all(deploys).await {
            r?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Kills the leader `kills` times; each time, the time until a survivor reports a fire it
/// committed as the new leader.
async fn failovers(cluster: &mut Cluster, client: &Client, kills: usize) -> anyhow::Result<Vec<u128>> {
    let mut times = Vec::new();
    for _ in 0..kills {
        cluster.ready(client).await?;
        let (leader, _) = leader_status(cluster, client).await?;
        let index = (leader - 1) as usize;
        cluster.kill(index);
        let t0 = Instant::now();
        let survivors: Vec<usize> = (0..cluster.http.len()).filter(|i| *i != index).collect();
        let mut before = BTreeMap::new();
        for i in &survivors {
            before.insert(*i, fired(&http_json(&cluster.http[*i], "/status").await?));
        }
        'wait: loop {
            for i in &survivors {
                if let Ok(s) = http_json(&cluster.http[*i], "/status").await {
                    if fired(&s) > before[i] {
                        break 'wait;
                    }
                }
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("no fire by a new leader within 30 s of killing leader {leader}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times.push(t0.elapsed().as_millis());
        cluster.restart(index)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(times)
}

/// Checks every schedule's runs: one per tick, `period_ms` apart, up to its last fire.
async fn audit(client: &Client, apps: usize, period_ms: u64) -> anyhow::Result<Audit> {
    let mut a = Audit::default();
    for app in 0..apps {
        let name = format!("bench-{app}");
        // Last fires first: the runs listed after them include every tick up to them.
        let last: BTreeMap<String, i64> = client
            .schedules(Some(&name))
            .await?
            .into_iter()
            .filter_map(|s| Some((s.function, s.last_fired_at_ms?)))
            .collect();
        let filter = RunsFilter { app: Some(name.clone()), scheduled: true, limit: 100_000, ..Default::default() };
        let runs = client.runs(&filter).await?;
        if runs.len() == 100_000 {
            bail!("app {name} has more than 100,000 runs: run the audit with fewer seconds");
        }
        let mut ticks: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for r in &runs {
            ticks.entry(&r.function).or_default().push(r.scheduled_at_ms.unwrap_or(0));
            a.skipped += usize::from(r.state == "skipped");
            if let (Some(started), Some(at)) = (r.started_at_ms, r.scheduled_at_ms) {
                a.start_lateness_ms.push(started - at);
            }
        }
        a.runs += runs.len();
        for (f, mut t) in ticks {
            t.sort_unstable();
            for w in t.windows(2) {
                let gap = w[1] - w[0];
                a.duplicates += usize::from(gap == 0);
                a.misses += usize::try_from((gap / period_ms as i64).saturating_sub(1)).unwrap_or(0);
            }
            // A tick committed before the listing but not listed would be a miss too.
            if let (Some(l), Some(end)) = (last.get(f), t.last()) {
                a.misses += usize::try_from((l - end).max(0) / period_ms as i64).unwrap_or(0);
            }
        }
    }
    Ok(a)
}

async fn measure(args: &SchedulesArgs, n: usize) -> anyhow::Result<Outcome> {
    let period_ms = (n as u64 * 1000) / args.rate as u64;
    if period_ms < 1000 {
        bail!("{n} schedules at {} fires/s would need a period under 1 s", args.rate);
    }
    let config = tempfile::NamedTempFile::new()?;
    let mut extra = Vec::new();
    if let Some(every) = args.snapshot_every {
        std::fs::write(config.path(), format!("[raft]\nsnapshot_every = {every}\n"))?;
        extra = vec!["--config", config.path().to_str().context("temp path is not UTF-8")?];
    }
    let mut cluster = Cluster::flotilla(3, &extra)?;
    let client = Client::connect(cluster.endpoints.clone()).await?;
    cluster.ready(&client).await?;
    let rss_before: Vec<u64> = (0..3).map(|i| cluster.rss_kib(i).unwrap_or(0)).collect();
    let load_s = load(&client, args, n, period_ms).await?;
    let per_100k = |cluster: &Cluster| -> Vec<f64> {
        (0..3)
            .map(|i| {
                let grown = cluster.rss_kib(i).unwrap_or(0).saturating_sub(rss_before[i]) as f64 / 1024.0;
                grown * 100_000.0 / n as f64
            })
            .collect()
    };
    let rss_loaded_mib = per_100k(&cluster);
    // Every schedule's first tick is at most one period after its deploy.
    tokio::time::sleep(Duration::from_millis(period_ms.min(10_000))).await;
    let (_, s1) = leader_status(&cluster, &client).await?;
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (_, s2) = leader_status(&cluster, &client).await?;
    let fires_per_s = fired(&s2).saturating_sub(fired(&s1)) as f64 / t1.elapsed().as_secs_f64();
    let rss_fired_mib = per_100k(&cluster);
    let failover_ms = failovers(&mut cluster, &client, args.kills).await?;
    cluster.ready(&client).await?;
    let audit = audit(&client, n.div_ceil(args.per_app), period_ms).await?;
    Ok(Outcome {
        load_s,
        fires_per_s,
        lateness: s2["scheduler"]["commit_lateness_ms"].clone(),
        rss_loaded_mib,
        rss_fired_mib,
        failover_ms,
        audit,
    })
}

pub async fn run(args: &SchedulesArgs) -> anyhow::Result<()> {
    let snapshots = args.snapshot_every.map_or("default".to_string(), |n| n.to_string());
    println!(
        "flotilla bench schedules: 3 nodes, loopback, fsync on, {} fires/s target, {} s measured, {} leader kills, \
         snapshot_every {snapshots}",
        args.rate, args.seconds, args.kills
    );
    for &n in &args.schedules {
        let o = measure(args, n).await?;
        let l = &o.lateness;
        let mut failover = o.failover_ms.clone();
        failover.sort_unstable();
        let median = failover.get(failover.len() / 2).map_or("-".to_string(), |m| m.to_string());
        let mib = |v: &[f64]| v.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(", ");
        println!();
        println!("-- {n} schedules (period {} s)", n / args.rate);
        println!("load (deploys of {} schedules each): {:.1} s", args.per_app, o.load_s);
        println!("fires/s achieved: {:.0}", o.fires_per_s);
        println!(
            "commit lateness (scheduled_at -> applied on the leader): p50 {} ms, p99 {} ms, max {} ms over {} fires",
            l["p50"], l["p99"], l["max"], l["count"]
        );
        let mut starts = o.audit.start_lateness_ms.clone();
        starts.sort_unstable();
        match (starts.get(starts.len() / 2), starts.get(starts.len() * 99 / 100)) {
            (Some(p50), Some(p99)) => println!(
                "lateness to execution start (scheduled_at -> started_at): p50 {p50} ms, p99 {p99} ms over {} runs",
                starts.len()
            ),
            _ => println!("lateness to execution start: n/a (no run started: function execution is not in this build)"),
        }
        println!(
            "node memory per 100k schedules (RSS growth, nodes 1,2,3): {} MiB after the load, {} MiB after firing",
            mib(&o.rss_loaded_mib),
            mib(&o.rss_fired_mib)
        );
        println!("leader SIGKILL -> first fire by the new leader: median {median} ms {failover:?}");
        println!(
            "audit: {} runs, {} duplicates, {} misses, {} skipped",
            o.audit.runs, o.audit.duplicates, o.audit.misses, o.audit.skipped
        );
    }
    Ok(())
}
