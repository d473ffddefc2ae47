//! One chaos run, start to finish.
//!
//! 1. Start the cluster, create the firewall chain, wait for a leader.
//! 2. **Safety phase**: workload clients and status samplers run while the nemesis strikes
//!    and heals faults from the seeded plan, bounded by the profile's steps and time.
//! 3. **Liveness phase**: everything healed (rules gone, paused nodes resumed, killed ones
//!    restarted). The cluster must recover completely within `recover_within`: every node
//!    answers, all agree on one leader and term, every node reports every other up, and
//!    every node has applied what the leader had logged when healing began. Then the workload
//!    runs on for `liveness`, and every operation invoked there must succeed.
//! 4. Final reads of every key through every node, the schedules' runs read back, then the
//!    checkers over the history.
//!
//! Beside the register clients, the schedule workload's app is deployed before the faults
//! start, and its 1-second schedules tick (and their runs execute) through both phases; a
//! `--restore-on-failure` sandbox is created then too, and exec'd through every node
//! throughout; its snapshots' replicas are hashed at the end.
//!
//! The history, the status samples, the nemesis log and the node logs are written to the
//! run's output folder (`FLOTILLA_CHAOS_OUT`, or a folder named for the seed in the temp dir).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flotilla::{Client, ClientOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::watch;

use crate::check::{self, Violation};
use crate::cluster::{flotilla_bin, Cluster};
use crate::history::{History, Op, Ret};
use crate::nemesis::{self, Fault, Kind, Nemesis, Role, Target};
use crate::net::Firewall;
use crate::profile::Profile;
use crate::workload;

/// How long the sandbox's node is cut off at the end of the safety phase: the fence lease
/// (3 s), the leader's wait (lease + 1 s) and a restore, with room to spare.
const SANDBOX_CUT: Duration = Duration::from_secs(10);

/// What a run did and found.
#[derive(Debug)]
pub struct Report {
    pub profile: Profile,
    /// Operations in the history (workload and final reads).
    pub ops: usize,
    pub acknowledged_writes: usize,
    pub unknown: usize,
    pub status_samples: usize,
    /// Schedule ticks checked, and how many of them were recorded skipped.
    pub schedule: workload::schedule::Summary,
    /// Execs of the sandbox workload, the copies that answered, snapshots checked.
    pub sandbox: workload::sandbox::Summary,
    /// Terms in which some node named a leader.
    pub terms: usize,
    pub faults: Vec<String>,
    /// Faults whose effect was seen, by kind and role of the node struck.
    pub injected: BTreeMap<(Kind, Role), usize>,
    pub violations: Vec<Violation>,
    pub out_dir: PathBuf,
    /// The tail of every node's log when there are violations.
    pub logs: Option<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.profile;
        writeln!(f, "chaos run: profile {}, seed {} (replay: FLOTILLA_CHAOS_SEED={})", p.name, p.seed, p.seed)?;
        writeln!(
            f,
            "  {} operations checked ({} acknowledged writes, {} unknown outcomes) on {} keys by {} clients",
            self.ops, self.acknowledged_writes, self.unknown, p.keys, p.clients
        )?;
        writeln!(f, "  {} status samples over {} terms with a leader", self.status_samples, self.terms)?;
        let (sc, sb) = (&self.schedule, &self.sandbox);
        writeln!(
            f,
            "  {} schedule ticks checked ({} ran and succeeded, {} recorded skipped)",
            sc.ticks, sc.succeeded, sc.skipped
        )?;
        writeln!(
            f,
            "  {} sandbox execs answered ({} failed) by {} copies; generation {} on node {} at the end; \
             {} ready snapshots, {} replica copies hashed",
            sb.answered,
            sb.failed,
            sb.copies.len(),
            sb.generation,
            sb.node,
            sb.snapshots,
            sb.replicas
        )?;
        writeln!(f, "  faults injected (effect seen): {}", Nemesis::summary(&self.injected))?;
        writeln!(f, "  {} nemesis log lines; history and logs in {}", self.faults.len(), self.out_dir.display())?;
        for v in &self.violations {
            writeln!(f, "  VIOLATION {v}")?;
        }
        if let Some(logs) = &self.logs {
            writeln!(f, "{logs}")?;
        }
        Ok(())
    }
}

/// How recent a status sample must be to say who leads now.
const FRESH: Duration = Duration::from_secs(1);

/// The leader named by the sample with the highest term among those taken in the last
/// [`FRESH`] that name one (latest first); `start` is the samples' time base.
fn current_leader(samples: &Mutex<Vec<check::leader::StatusSample>>, start: Instant) -> Option<u64> {
    let since = start.elapsed().saturating_sub(FRESH).as_micros() as u64;
    let samples = samples.lock().expect("samples lock poisoned");
    samples
        .iter()
        .rev()
        .take_while(|s| s.at_us >= since)
        .filter(|s| s.leader.is_some())
        .max_by_key(|s| s.term)
        .and_then(|s| s.leader)
}

/// How long a fault waits for the samplers to name the current leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// The current leader, waiting up to `within` for the samplers to name one.
async fn wait_leader(
    samples: &Mutex<Vec<check::leader::StatusSample>>,
    start: Instant,
    within: Duration,
) -> Option<u64> {
    let deadline = Instant::now() + within;
    loop {
        match current_leader(samples, start) {
            Some(l) => return Some(l),
            None if Instant::now() >= deadline => return None,
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Asks each node alone for its status; `None` for a node that does not answer.
async fn statuses(cluster: &Cluster) -> BTreeMap<u64, Option<flotilla::ClusterStatus>> {
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        retry_for: Duration::ZERO,
        ..Default::default()
    };
    let mut out = BTreeMap::new();
    for (id, node) in &cluster.nodes {
        let status = match Client::connect_with([node.endpoint()], options.clone()).await {
            Ok(c) => c.cluster_status().await.ok(),
            Err(_) => None,
        };
        out.insert(*id, status);
    }
    out
}

/// Waits until the cluster has fully recovered (see the module doc); `Err` says what is
/// still wrong when `within` runs out.
async fn recovered(cluster: &Cluster, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut target: Option<u64> = None;
    loop {
        let all = statuses(cluster).await;
        let problem = (|| {
            let answered: Vec<&flotilla::ClusterStatus> = all.values().flatten().collect();
            if answered.len() != all.len() {
                let silent: Vec<u64> = all.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| *id).collect();
                return Some(format!("nodes {silent:?} do not answer"));
            }
            let leaders: Vec<(Option<u64>, u64)> = answered.iter().map(|s| (s.leader, s.term)).collect();
            let Some(leader) = leaders[0].0.filter(|_| leaders.iter().all(|l| *l == leaders[0])) else {
                return Some(format!("no agreed leader and term: {leaders:?}"));
            };
            let lead = answered.iter().find(|s| s.answered_by == leader)?;
            let target = *target.get_or_insert(lead.last_log_index);
            for s in &answered {
                if let Some(down) = s.nodes.iter().find(|n| n.status != "up") {
                    return Some(format!("node {} reports node {} {}", s.answered_by, down.id, down.status));
                }
                if s.last_applied < target {
                    return Some(format!("node {} has applied {} of {target}", s.answered_by, s.last_applied));
                }
            }
            None
        })();
        match problem {
            None => return Ok(()),
            Some(p) if Instant::now() >= deadline => return Err(p),
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Writes `value` as pretty JSON to `dir/name`.
fn save(dir: &std::path::Path, name: &str, value: &impl serde::Serialize) -> Result<()> {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

/// Runs the profile against a fresh cluster and checks every invariant.
pub async fn run(profile: Profile) -> Result<Report> {
    eprintln!(
        "chaos: profile {}, seed {} (replay with FLOTILLA_CHAOS_SEED={})",
        profile.name, profile.seed, profile.seed
    );
    let out_dir = match std::env::var_os("FLOTILLA_CHAOS_OUT") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("flotilla-chaos-{}", profile.seed)),
    };
    std::fs::create_dir_all(&out_dir)?;
    let mut cluster = Cluster::start(flotilla_bin()?, profile.nodes, &out_dir)?;
    let mut firewall = Firewall::new()?;
    let start = Instant::now();
    let mut violations = Vec::new();
    if let Err(why) = recovered(&cluster, Duration::from_secs(30)).await {
        anyhow::bail!("the cluster did not form: {why}\n{}", cluster.logs(40));
    }

    let admin = Client::connect_with(cluster.endpoints(), workload::catalog::client_options()).await?;
    let deployed = workload::schedule::deploy(&admin).await.context("deploy the schedule workload")?;
    let sandbox_id = workload::sandbox::create(&admin).await.context("the sandbox workload")?;

    let history = Arc::new(History::new(start));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for endpoint in cluster.endpoints() {
        tasks.push(tokio::spawn(workload::status::sampler(endpoint, start, samples.clone(), stop_rx.clone())));
    }
    let execs = Arc::new(Mutex::new(workload::sandbox::Execs::default()));
    tasks.push(tokio::spawn(workload::sandbox::execer(
        cluster.endpoints(),
        sandbox_id.clone(),
        start,
        execs.clone(),
        stop_rx.clone(),
    )));
    for p in 0..profile.clients {
        let (endpoints, history, stop) = (cluster.endpoints(), history.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(workload::catalog::client(p, endpoints, profile.keys, profile.seed, history, stop)));
    }

    // Safety phase, once the samplers have seen who leads (leader-targeted faults need it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut rng = StdRng::seed_from_u64(profile.seed);
    let plan = nemesis::plan(&mut rng, profile.nodes, profile.max_steps, profile.max_hold);
    let mut nemesis = Nemesis::new(&mut cluster, &mut firewall, start);
    let safety_end = start + profile.safety;
    for step in plan {
        // The required steps (every kind against leader and follower) run whatever the time.
        if !step.required && Instant::now() + step.hold > safety_end {
            break;
        }
        // Who leads decides the target (or the role of a fixed one), so wait for a fresh word.
        let leader = wait_leader(&samples, start, LEADER_WAIT).await;
        nemesis.strike(step.fault, leader)?;
        tokio::time::sleep(step.hold).await;
        nemesis.heal()?;
        tokio::time::sleep(step.gap).await;
    }
    nemesis.heal()?;
    // Last, the sandbox's node is cut off long enough to fence itself and have the sandbox
    // restored elsewhere (see docs/architecture/snapshots.md#failover), so two copies exist
    // and the old one is alive but must no longer answer.
    match workload::sandbox::node_of(&admin, &sandbox_id, profile.recover_within).await {
        Ok(node) => {
            nemesis.strike(Fault::Isolate(Target::Node(node)), current_leader(&samples, start))?;
            tokio::time::sleep(SANDBOX_CUT).await;
            nemesis.heal()?;
        }
        Err(e) => violations.push(Violation::new("liveness", format!("{e:#}"))),
    }
    let faults = std::mem::take(&mut nemesis.log);
    let injected = std::mem::take(&mut nemesis.injected);
    let missing = nemesis::missing(&injected);
    if !missing.is_empty() {
        violations.push(Violation::new(
            "nemesis-coverage",
            format!("no fault of these kinds took effect on these roles: {missing:?}"),
        ));
    }

    // Liveness phase.
    let healed_at = history.micros(Instant::now());
    match recovered(&cluster, profile.recover_within).await {
        Ok(()) => eprintln!(
            "chaos: recovered {:.1}s after healing",
            (history.micros(Instant::now()) - healed_at) as f64 / 1e6
        ),
        Err(why) => violations.push(Violation::new(
            "liveness",
            format!("not recovered {:?} after every fault was healed: {why}", profile.recover_within),
        )),
    }
    let live_from = history.micros(Instant::now());
    tokio::time::sleep(profile.liveness).await;
    stop_tx.send_replace(true);
    for t in tasks {
        t.await.context("workload task")??;
    }
    let failed_live: Vec<Op> = history
        .ops()
        .into_iter()
        .filter(|o| o.invoke_us >= live_from && matches!(o.ret, Ret::Failed { .. } | Ret::Unknown { .. }))
        .collect();
    if let Some(first) = failed_live.first() {
        violations.push(Violation::new(
            "liveness",
            format!("{} operations failed on the healed cluster, first: {first:?}", failed_live.len()),
        ));
    }

    // Final reads and checks.
    let nodes: BTreeMap<u64, String> = cluster.nodes.iter().map(|(id, n)| (*id, n.endpoint())).collect();
    let finals = workload::catalog::final_reads(&nodes, profile.keys, profile.clients, &history).await;
    let ops = history.ops();
    let samples = samples.lock().expect("samples lock poisoned").clone();
    match &finals {
        Ok(finals) => violations.extend(check::lost_writes::check(&ops, finals)),
        Err(e) => violations.push(Violation::new("no-lost-write", format!("final reads failed: {e}"))),
    }
    violations.extend(check::linearizable::check(&ops));
    violations.extend(check::leader::check(&samples));
    let schedule = match workload::schedule::check(&admin, deployed).await {
        Ok((found, summary)) => {
            violations.extend(found);
            summary
        }
        Err(e) => {
            violations.push(Violation::new("schedule-exactly-once", format!("reading the runs back failed: {e:#}")));
            Default::default()
        }
    };

    let execs = std::mem::take(&mut *execs.lock().expect("execs lock poisoned"));
    violations.extend(workload::sandbox::check(&execs));
    let mut sandbox = workload::sandbox::Summary::new(&execs);
    match admin.sandbox_info(&sandbox_id).await {
        Ok(info) => (sandbox.generation, sandbox.node) = (info.generation, info.node),
        Err(e) => violations.push(Violation::new("liveness", format!("sandbox {sandbox_id} not shown: {e}"))),
    }
    match workload::sandbox::snapshot_digests(&admin, &sandbox_id, &cluster.data_dirs()).await {
        Ok((snapshots, digests)) => {
            sandbox.snapshots = snapshots.iter().filter(|s| s.state == "ready").count();
            sandbox.replicas = digests.len();
            violations.extend(check::snapshot::check(&snapshots, &digests));
        }
        Err(e) => violations.push(Violation::new("snapshot-digest", format!("snapshot ls failed: {e}"))),
    }

    save(&out_dir, "history.json", &ops)?;
    save(&out_dir, "sandbox-execs.json", &execs.records)?;
    save(&out_dir, "status-samples.json", &samples)?;
    save(&out_dir, "nemesis.json", &faults)?;
    let logs = (!violations.is_empty()).then(|| cluster.logs(60));
    Ok(Report {
        ops: ops.len(),
        acknowledged_writes: check::lost_writes::acknowledged(&ops),
        unknown: ops.iter().filter(|o| matches!(o.ret, Ret::Unknown { .. })).count(),
        status_samples: samples.len(),
        schedule,
        sandbox,
        terms: check::leader::terms_with_leader(&samples),
        faults,
        injected,
        violations,
        out_dir,
        logs,
        profile,
    })
}
