//! `flotilla bench schedules`: a three-node cluster loaded with N period schedules whose
//! anchors are spread evenly over one period, so the leader fires a steady `rate` ticks a
//! second (N = 10,000 fire every 10 s, N = 100,000 every 100 s, at 1,000 fires/s). It prints
//! the load time, the fire rate achieved, the commit lateness of fires (`scheduled_at` to the
//! leader seeing the Fire applied, p50/p99/max over the last 10-20 s, from the leader's
//! `/status`), each node's memory per 100k schedules, the time from SIGKILL of the leader to
//! the first fire committed by the new one, and an audit of every run record.
//!
//! The fire rate is counted from the replicated run records (runs whose `scheduled_at` falls in
//! the window), so a leader change in the window does not reset it. The audit checks ticks by
//! time: every tick of every schedule due between the end of the load and 10 s before the
//! audit (the firing window and the leader kills: several periods for small counts) must have
//! exactly one run; a missing one is a miss, a second one a duplicate.
//!
//! Lateness to execution start (`scheduled_at` to `started_at`) is computed from the runs that
//! started. Every fire queues a call that the functions layer runs, so the schedule count is
//! also the number of functions that want a container: keep it to what the engine can run.

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
    /// Periods covered by the time-checked span of the audit.
    checked_periods: f64,
}

#[derive(Default)]
struct Audit {
    runs: usize,
    duplicates: usize,
    misses: usize,
    skipped: usize,
    /// Ticks checked by time.
    checked: usize,
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

/// When the schedules were loaded: their anchor base, and the epoch ms by which every deploy
/// was acknowledged.
struct Loaded {
    seconds: f64,
    base_ms: i64,
    done_ms: i64,
}

async fn load(client: &Client, args: &SchedulesArgs, n: usize, period_ms: u64) -> anyhow::Result<Loaded> {
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
    Ok(Loaded { seconds: started.elapsed().as_secs_f64(), base_ms, done_ms: chrono::Utc::now().timestamp_millis() })
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

/// What the audit checks the runs against: every tick of every schedule that falls in
/// `[from_ms, until_ms]` must have exactly one run.
struct Expected {
    n: usize,
    per_app: usize,
    period_ms: u64,
    base_ms: i64,
    from_ms: i64,
    until_ms: i64,
}

impl Expected {
    /// Schedule `i`'s ticks in the checked span (anchors as `app_spec` lays them out).
    fn ticks(&self, i: usize) -> impl Iterator<Item = i64> + '_ {
        let (p, anchor) =
            (self.period_ms as i64, self.base_ms + (self.period_ms as i64) * (i as i64) / (self.n as i64));
        let first = anchor + ((self.from_ms - anchor).max(0) as u64).div_ceil(self.period_ms) as i64 * p;
        (0..).map(move |k| first + k * p).take_while(|t| *t <= self.until_ms)
    }
}

/// Reads every run back and checks each schedule's ticks by time: a tick due in the checked
/// span without a run is a miss, a tick with two runs a duplicate. Also counts the runs
/// scheduled in `[w1_ms, w2_ms]`, the fire rate from the replicated records (the same source
/// whichever node led when).
async fn audit(client: &Client, e: &Expected, (w1_ms, w2_ms): (i64, i64)) -> anyhow::Result<(Audit, u64)> {
    let mut a = Audit::default();
    let mut in_window = 0u64;
    for app in 0..e.n.div_ceil(e.per_app) {
        let name = format!("bench-{app}");
        let filter = RunsFilter { app: Some(name.clone()), scheduled: true, limit: 100_000, ..Default::default() };
        let runs = client.runs(&filter).await?;
        if runs.len() == 100_000 {
            bail!("app {name} has more than 100,000 runs: run the audit with fewer seconds");
        }
        let mut ticks: BTreeMap<&str, BTreeMap<i64, usize>> = BTreeMap::new();
        for r in &runs {
            let at = r.scheduled_at_ms.unwrap_or(0);
            *ticks.entry(&r.function).or_default().entry(at).or_default() += 1;
            a.skipped += usize::from(r.state == "skipped");
            in_window += u64::from((w1_ms..=w2_ms).contains(&at));
            if let (Some(started), Some(at)) = (r.started_at_ms, r.scheduled_at_ms) {
                a.start_lateness_ms.push(started - at);
            }
        }
        a.runs += runs.len();
        for i in app * e.per_app..((app + 1) * e.per_app).min(e.n) {
            let seen = ticks.get(format!("f{i:06}").as_str());
            a.duplicates += seen.map_or(0, |t| t.values().map(|c| c - 1).sum());
            for tick in e.ticks(i) {
                a.checked += 1;
                a.misses += usize::from(!seen.is_some_and(|t| t.contains_key(&tick)));
            }
        }
    }
    Ok((a, in_window))
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
    let loaded = load(&client, args, n, period_ms).await?;
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
    let w1_ms = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let w2_ms = chrono::Utc::now().timestamp_millis();
    let (_, s2) = leader_status(&cluster, &client).await?;
    let rss_fired_mib = per_100k(&cluster);
    let failover_ms = failovers(&mut cluster, &client, args.kills).await?;
    cluster.ready(&client).await?;
    // Ticks due up to 10 s before the audit must have fired by then (a failover's catch-up included).
    let expected = Expected {
        n,
        per_app: args.per_app,
        period_ms,
        base_ms: loaded.base_ms,
        from_ms: loaded.done_ms,
        until_ms: chrono::Utc::now().timestamp_millis() - 10_000,
    };
    let checked_s = (expected.until_ms - expected.from_ms) as f64 / 1000.0;
    let (audit, in_window) = audit(&client, &expected, (w1_ms, w2_ms)).await?;
    // The cluster's containers, those of killed nodes included, go when `cluster` is dropped.
    Ok(Outcome {
        load_s: loaded.seconds,
        fires_per_s: in_window as f64 * 1000.0 / (w2_ms - w1_ms) as f64,
        lateness: s2["scheduler"]["commit_lateness_ms"].clone(),
        rss_loaded_mib,
        rss_fired_mib,
        failover_ms,
        audit,
        checked_periods: checked_s * 1000.0 / period_ms as f64,
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
        println!(
            "fires/s achieved (runs scheduled in the window, from the replicated run records): {:.0}",
            o.fires_per_s
        );
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
            _ => println!("lateness to execution start: n/a (no run started)"),
        }
        println!(
            "node memory per 100k schedules (RSS growth, nodes 1,2,3): {} MiB after the load, {} MiB after firing",
            mib(&o.rss_loaded_mib),
            mib(&o.rss_fired_mib)
        );
        println!("leader SIGKILL -> first fire by the new leader: median {median} ms {failover:?}");
        println!(
            "audit: {} runs; {} ticks due in the checked span ({:.1} periods, leader kills included) checked by time: \
             {} misses; {} duplicates, {} skipped",
            o.audit.runs, o.audit.checked, o.checked_periods, o.audit.misses, o.audit.duplicates, o.audit.skipped
        );
    }
    Ok(())
}
