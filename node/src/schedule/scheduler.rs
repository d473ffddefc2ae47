//! The Scheduler: while this node leads, it proposes a Fire for every due tick.
//!
//! It runs on every node and idles unless the node is the Raft leader. On becoming leader it
//! first confirms leadership with a quorum and waits until everything committed by earlier
//! leaders is applied here (read index), so it plans from the catalog as it really stands.
//! Then it loops: read the due schedules from the catalog's due index, plan their ticks
//! ([`plan`]), and propose all of them as one Raft entry (a `Batch` of `Fire`s, applied in
//! order), wait for it to commit, repeat. One entry is in flight at a time, which keeps each
//! schedule's ticks in order and batches as many fires as arrive during a commit.
//!
//! Nothing here decides whether a tick ran: `apply` does. A Fire this node proposes after it
//! lost leadership, or one it retries after a commit timeout, is either never committed (its
//! term is over) or rejected as stale (the tick is already recorded). A leader cut off from the
//! quorum proposes but commits nothing, and runs are executed only from applied call records.

use std::collections::HashMap;
use std::time::Duration;

use flotilla::spec::Schedule;
use flotilla_raft::{CallState, Command, Rejection, Response, ScheduleRecord};
use openraft::ServerState;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::plan::{plan, Tick};
use super::stats::Stats;
use crate::cluster::Cluster;

/// Most fires in one Raft entry (and most due schedules looked at per round).
const MAX_FIRES_PER_ENTRY: usize = 2_000;
/// Most ticks of one schedule per round (a long catch-up goes on in the next round).
const MAX_TICKS_PER_SCHEDULE: usize = 1_000;
/// Longest idle sleep: a deploy or resume with an earlier tick also wakes the loop (the
/// applied index moves), so this only bounds the damage of a missed wake-up.
const IDLE_WAKE: Duration = Duration::from_millis(250);
/// How long to wait for an entry to commit before planning again from the catalog.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an entry in which `apply` refused every fire.
const REFUSED_PAUSE: Duration = Duration::from_millis(50);

/// Runs until `shutdown`, firing ticks whenever this node leads.
pub async fn run(cluster: Cluster, stats: Stats, mut shutdown: watch::Receiver<bool>) {
    let mut metrics = cluster.raft.metrics();
    while !*shutdown.borrow() {
        let term = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader).then_some(m.current_term)
        };
        let Some(term) = term else {
            tokio::select! {
                _ = metrics.changed() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        match cluster.linearizable().await {
            Ok(_) => lead(&cluster, term, &stats, &mut metrics, &mut shutdown).await,
            Err(e) => {
                debug!(error = %e, "scheduler: leadership not confirmed yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Fires due ticks for as long as this node leads in `term`.
async fn lead(
    cluster: &Cluster,
    term: u64,
    stats: &Stats,
    metrics: &mut watch::Receiver<openraft::RaftMetrics<flotilla_raft::NodeId, flotilla_raft::Node>>,
    shutdown: &mut watch::Receiver<bool>,
) {
    info!(term, schedules = cluster.view.read(|c| c.schedules.len()), "scheduler: leading, firing due ticks");
    // Parsed specs by schedule key, with the JSON they were parsed from.
    let mut specs: HashMap<String, (String, Option<Schedule>)> = HashMap::new();
    loop {
        {
            let m = metrics.borrow_and_update();
            if *shutdown.borrow() || m.state != ServerState::Leader || m.current_term != term {
                info!(term, "scheduler: no longer leading");
                return;
            }
        }
        let now = now_ms();
        let due: Vec<ScheduleRecord> =
            cluster.view.read(|c| c.schedules.due(now).take(MAX_FIRES_PER_ENTRY).cloned().collect());
        let mut fires = Vec::new();
        for s in &due {
            let entry = specs.entry(s.key()).or_insert_with(|| (String::new(), None));
            if entry.0 != s.spec_json {
                *entry = (s.spec_json.clone(), serde_json::from_str(&s.spec_json).ok());
            }
            let ticks = match &entry.1 {
                Some(spec) => plan(s, spec, now, MAX_TICKS_PER_SCHEDULE.min(MAX_FIRES_PER_ENTRY - fires.len())),
                // Validated at deploy by the same code, so this is a bug; record it, stop firing.
                None => vec![Tick {
                    scheduled_at_ms: s.next_fire_at_ms.unwrap_or(now),
                    next_fire_at_ms: None,
                    skip: Some("the schedule's spec does not parse; it will not fire again".into()),
                }],
            };
            fires.extend(ticks.into_iter().map(|t| fire(cluster, s, t)));
            if fires.len() >= MAX_FIRES_PER_ENTRY {
                break;
            }
        }
        if fires.is_empty() {
            let next = cluster.view.read(|c| c.schedules.next_due_ms());
            let wait = next.map_or(IDLE_WAKE, |n| Duration::from_millis(n.saturating_sub(now).max(0) as u64));
            tokio::select! {
                _ = tokio::time::sleep(wait.min(IDLE_WAKE)) => {}
                _ = metrics.changed() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        match propose(cluster, stats, fires, now).await {
            Proposed::LostLeadership => return,
            // Every fire refused (e.g. a new leader's first round over ticks that were already
            // committed): the catalog has moved on; do not spin on a refusal that persists.
            Proposed::Refused => tokio::time::sleep(REFUSED_PAUSE).await,
            Proposed::Continue => {}
        }
    }
}

fn fire(cluster: &Cluster, s: &ScheduleRecord, t: Tick) -> Command {
    Command::Fire {
        schedule: s.key(),
        revision: s.revision,
        scheduled_at_ms: t.scheduled_at_ms,
        next_fire_at_ms: t.next_fire_at_ms,
        call_id: super::new_call_id(),
        node: cluster.id,
        skip: t.skip,
        at_ms: 0,
    }
}

/// What became of one entry of fires.
enum Proposed {
    /// Committed (or timed out): plan the next round at once.
    Continue,
    /// Committed, but `apply` refused every fire.
    Refused,
    /// Not committed: this node no longer leads.
    LostLeadership,
}

/// Proposes `fires` as one entry and tallies the outcome.
async fn propose(cluster: &Cluster, stats: &Stats, fires: Vec<Command>, now: i64) -> Proposed {
    let scheduled: Vec<i64> = fires
        .iter()
        .map(|f| if let Command::Fire { scheduled_at_ms, .. } = f { *scheduled_at_ms } else { 0 })
        .collect();
    let mut entry = Command::Batch(fires);
    entry.stamp(now);
    match tokio::time::timeout(COMMIT_TIMEOUT, cluster.raft.client_write(entry)).await {
        Ok(Ok(resp)) => {
            let done = now_ms();
            let Response::Batch(responses) = resp.data else {
                warn!(response = ?resp.data, "scheduler: unexpected response to a batch of fires");
                return Proposed::Refused;
            };
            let (mut lateness, mut skipped, mut stale) = (Vec::new(), 0, 0);
            for (r, at) in responses.iter().zip(&scheduled) {
                match r {
                    Response::Call(c) if c.state == CallState::Skipped => skipped += 1,
                    Response::Call(_) => lateness.push(done - at),
                    Response::Rejected(Rejection::Stale(why)) => {
                        debug!(%why, "scheduler: tick already committed");
                        stale += 1;
                    }
                    other => warn!(response = ?other, "scheduler: fire refused"),
                }
            }
            stats.record(&lateness, skipped, stale);
            if lateness.is_empty() && skipped == 0 {
                Proposed::Refused
            } else {
                Proposed::Continue
            }
        }
        Ok(Err(e)) => {
            info!(error = %e, "scheduler: fires not committed; leadership lost");
            Proposed::LostLeadership
        }
        Err(_) => {
            warn!("scheduler: fires not committed within {COMMIT_TIMEOUT:?}; planning again from the catalog");
            Proposed::Continue
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
