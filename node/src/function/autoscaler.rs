//! The leader's autoscaler: how many replicas each function should have, and where.
//!
//! Every [`TICK`], on the leader only, for each function of each deployed app:
//!
//! ```text
//! demand  = inputs running + sync inputs waiting (all live nodes) + durable calls queued
//! needed  = ceil(demand / concurrency)
//! desired = clamp(needed + (buffer_containers if demand > 0), min_containers, max_containers)
//! ```
//!
//! Replicas of the current app version are added at once when `desired` is above their
//! count (placed like sandboxes, GPUs leased in the same entry) and removed only once the
//! count has been above `desired` for `scaledown_window_s` (idle ones first). After a
//! redeploy, replicas of older versions are removed once the current version has as many
//! ready replicas as it needs (their nodes drain them, so no input is dropped). Replicas of
//! stopped apps and removed functions go at once; failed replicas are replaced after
//! [`FAILED_RETRY`]. Replicas on nodes that are down are removed (releasing their GPUs) and
//! durable calls running there are requeued with the attempt counted.
//!
//! When no node can take a wanted replica, the autoscaler records placement's reason on the
//! app (`SetPending`, so `app show` on any node shows it) and logs it at WARN, both only when
//! the reason changes; it clears the reason once the function has the replicas it wants.
//! The other functions' actions go on: one function that cannot be placed starves no other.
//!
//! A new leader waits [`SETTLE`] before it judges any node down: its liveness view starts
//! empty.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flotilla::spec::FunctionSpec;
use flotilla_raft::{AppState, CallState, Catalog, Command, NodeId, Replica, ReplicaState};
use tokio::sync::watch;

use super::{FnKey, FunctionHost};
use crate::cluster::liveness::DOWN_AFTER;
use crate::placement;

/// Period of the autoscaler.
pub const TICK: Duration = Duration::from_millis(250);
/// How long a new leader waits before it treats unresponsive nodes as down.
const SETTLE: Duration = Duration::from_millis(DOWN_AFTER.as_millis() as u64 + 1000);
/// How long a failed replica stays (its reason visible) before it is replaced.
const FAILED_RETRY: Duration = Duration::from_secs(10);

/// What the autoscaler remembers between ticks; reset when leadership changes.
#[derive(Default)]
struct Memory {
    /// Per function: when demand last needed at least as many replicas as there were.
    last_needed: HashMap<FnKey, Instant>,
    leader_since: Option<Instant>,
}

/// One change the autoscaler wants.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Add {
        app: String,
        function: String,
        version: u64,
        spec: Box<FunctionSpec>,
    },
    Remove {
        id: String,
    },
    Requeue {
        call: String,
        attempt: u32,
        node: NodeId,
    },
    /// The function has the replicas it wants: its recorded pending reason goes.
    Placed {
        app: String,
        function: String,
        version: u64,
    },
}

/// Runs until `shutdown` turns true; acts only while this node leads.
pub async fn run(host: FunctionHost, mut shutdown: watch::Receiver<bool>) {
    let mut memory = Memory::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if host.cluster.group().leader != Some(host.cluster.id) {
            memory = Memory::default();
            continue;
        }
        let since = *memory.leader_since.get_or_insert_with(Instant::now);
        let settled = since.elapsed() >= SETTLE;
        let liveness = host.cluster.liveness.clone();
        let up = |n: NodeId| !settled || liveness.is_up(n);
        let load = host.load.cluster(host.cluster.id, up);
        let actions = host.cluster.view.read(|c| plan(&host, c, &load, &up, &mut memory));
        // Functions none of whose replicas could be placed this tick: their other adds wait.
        let mut unplaced: Vec<FnKey> = Vec::new();
        for action in actions {
            if let Action::Add { app, function, .. } = &action {
                if unplaced.iter().any(|(a, f)| a == app && f == function) {
                    continue;
                }
            }
            match apply(&host, action).await {
                Ok(Some(key)) => unplaced.push(key),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "autoscaler action not applied");
                    break;
                }
            }
        }
    }
}

/// Decides this tick's changes from the catalog and the cluster's load.
fn plan(
    host: &FunctionHost,
    c: &Catalog,
    load: &HashMap<FnKey, super::load::Counts>,
    up: &dyn Fn(NodeId) -> bool,
    memory: &mut Memory,
) -> Vec<Action> {
    let now = Instant::now();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut actions = Vec::new();
    let mut by_fn: HashMap<FnKey, Vec<&Replica>> = HashMap::new();
    for r in c.replicas.values() {
        if !up(r.node) {
            actions.push(Action::Remove { id: r.id.clone() });
            continue;
        }
        by_fn.entry((r.app.clone(), r.function.clone())).or_default().push(r);
    }
    for call in c.calls.values() {
        if let (CallState::Running, Some(node)) = (call.state, call.node) {
            if !up(node) {
                actions.push(Action::Requeue { call: call.id.clone(), attempt: call.attempt, node });
            }
        }
    }
    let mut queued: HashMap<FnKey, u32> = HashMap::new();
    for call in c.calls.values().filter(|call| call.state == CallState::Queued) {
        *queued.entry((call.app.clone(), call.function.clone())).or_default() += 1;
    }
    // Functions that should not run: their replicas go.
    for (key, replicas) in &by_fn {
        let wanted = c.apps.get(&key.0).is_some_and(|a| a.state == AppState::Deployed && a.functions.contains(&key.1));
        if !wanted {
            actions.extend(replicas.iter().map(|r| Action::Remove { id: r.id.clone() }));
        }
    }
    for app in c.apps.values().filter(|a| a.state == AppState::Deployed) {
        for function in &app.functions {
            let key: FnKey = (app.name.clone(), function.clone());
            let Some(spec) = host.spec(c, &app.name, function, app.version) else { continue };
            let replicas = by_fn.get(&key).map(Vec::as_slice).unwrap_or_default();
            let counts = load.get(&key).copied().unwrap_or_default();
            let demand = counts.running + counts.waiting + queued.get(&key).copied().unwrap_or(0);
            let desired = desired(&spec, demand);
            let (current, old): (Vec<&Replica>, Vec<&Replica>) =
                replicas.iter().partition(|r| r.version == app.version);
            let (failed, current): (Vec<&Replica>, Vec<&Replica>) =
                current.into_iter().partition(|r| r.state == ReplicaState::Failed);
            for r in failed {
                if now_ms - r.updated_at_ms >= FAILED_RETRY.as_millis() as i64 {
                    actions.push(Action::Remove { id: r.id.clone() });
                }
            }
            let count = current.len() as u32;
            if desired <= count && app.pending.contains_key(function) {
                actions.push(Action::Placed {
                    app: app.name.clone(),
                    function: function.clone(),
                    version: app.version,
                });
            }
            let last_needed = *memory.last_needed.entry(key.clone()).or_insert(now);
            if desired >= count {
                memory.last_needed.insert(key.clone(), now);
                let failing = replicas.iter().any(|r| r.state == ReplicaState::Failed);
                // While its replicas fail, add none: the failed ones are retried after a pause.
                if !failing {
                    for _ in count..desired {
                        let spec = Box::new((*spec).clone());
                        actions.push(Action::Add {
                            app: app.name.clone(),
                            function: function.clone(),
                            version: app.version,
                            spec,
                        });
                    }
                }
            } else if now.duration_since(last_needed) >= Duration::from_secs(spec.scaledown_window_s) {
                let mut idle = current.clone();
                // Starting ones first, then the least recently started.
                idle.sort_by_key(|r| (r.state == ReplicaState::Ready, std::cmp::Reverse(r.created_at_ms)));
                actions
                    .extend(idle.iter().take((count - desired) as usize).map(|r| Action::Remove { id: r.id.clone() }));
            }
            let ready_now = current.iter().filter(|r| r.state == ReplicaState::Ready).count() as u32;
            if ready_now >= desired.min(count).max(1) || desired == 0 {
                actions.extend(old.iter().map(|r| Action::Remove { id: r.id.clone() }));
            }
        }
    }
    actions.dedup();
    actions
}

/// Replicas wanted for `demand` inputs.
fn desired(spec: &FunctionSpec, demand: u32) -> u32 {
    let needed = demand.div_ceil(spec.concurrency.max(1));
    let buffer = if demand > 0 { spec.buffer_containers } else { 0 };
    (needed + buffer).clamp(spec.min_containers, spec.max_containers)
}

/// Carries out one action. `Ok(Some(key))`: an add of `key`'s function found no node (its
/// reason is recorded).
async fn apply(host: &FunctionHost, action: Action) -> Result<Option<FnKey>, crate::error::NodeError> {
    match action {
        Action::Placed { app, function, version } => {
            let cmd = Command::SetPending { app, function, version, reason: None, at_ms: 0 };
            match host.cluster.write(cmd).await {
                Ok(_) | Err(crate::error::NodeError::Rejected(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Action::Remove { id } => {
            host.cluster.write(Command::RemoveReplica { id, at_ms: 0 }).await?;
        }
        Action::Requeue { call, attempt, node } => {
            let reason = format!("node {node} went down while running attempt {attempt}");
            let cmd = Command::RequeueCall { id: call, attempt, reason, at_ms: 0 };
            match host.cluster.write(cmd).await {
                Ok(_) | Err(crate::error::NodeError::Rejected(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Action::Add { app, function, version, spec } => {
            let _placing = host.cluster.placement_lock.lock().await;
            let gpu = spec.gpu.as_ref().map(|g| flotilla_raft::GpuRequest { model: g.model.clone(), count: g.count });
            let req = placement::Request { cpu: spec.cpu, memory_mib: spec.memory_mib, gpu: gpu.as_ref() };
            let placed = match host.cluster.try_place(req, Some(&spec.image)).await {
                Ok(placed) => placed,
                Err(why) => {
                    record_pending(host, &app, &function, version, &why).await?;
                    return Ok(Some((app, function)));
                }
            };
            let id = format!("rp-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
            tracing::info!(replica = %id, %app, %function, node = placed.node, "adding replica");
            let cmd = Command::AddReplica {
                id,
                app,
                function,
                version,
                node: placed.node,
                cpu: spec.cpu,
                memory_mib: spec.memory_mib,
                gpus: placed.gpus,
                at_ms: 0,
            };
            host.cluster.write(cmd).await?;
        }
    }
    Ok(None)
}

/// Records why a replica of `app`/`function` cannot be placed, and logs it at WARN, when the
/// catalog does not already hold this reason.
async fn record_pending(
    host: &FunctionHost,
    app: &str,
    function: &str,
    version: u64,
    why: &placement::PlacementError,
) -> Result<(), crate::error::NodeError> {
    let reason = why.to_string();
    let known = host
        .cluster
        .view
        .read(|c| c.apps.get(app).and_then(|a| a.pending.get(function)).is_some_and(|p| p.reason == reason));
    if known {
        return Ok(());
    }
    tracing::warn!(%app, %function, version, permanent = why.is_permanent(), %reason, "replica cannot be placed");
    let cmd = Command::SetPending {
        app: app.to_string(),
        function: function.to_string(),
        version,
        reason: Some(reason),
        at_ms: 0,
    };
    match host.cluster.write(cmd).await {
        Ok(_) | Err(crate::error::NodeError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: u32, max: u32, buffer: u32, concurrency: u32) -> FunctionSpec {
        let mut s = FunctionSpec::new("img", vec!["cat".into()]);
        (s.min_containers, s.max_containers, s.buffer_containers, s.concurrency) = (min, max, buffer, concurrency);
        s
    }

    #[test]
    fn desired_replicas_table() {
        let cases = [
            ("idle keeps min", spec(1, 4, 0, 1), 0, 1),
            ("idle scales to zero", spec(0, 4, 2, 1), 0, 0),
            ("one input wakes one", spec(0, 4, 0, 1), 1, 1),
            ("buffer while active", spec(0, 4, 2, 1), 1, 3),
            ("concurrency packs inputs", spec(0, 10, 0, 4), 9, 3),
            ("capped at max", spec(0, 2, 1, 1), 50, 2),
        ];
        for (name, s, demand, want) in cases {
            assert_eq!(desired(&s, demand), want, "{name}");
        }
    }
}
