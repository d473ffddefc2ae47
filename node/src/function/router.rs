//! Synchronous calls: find a replica, run the input there, hand back the result. No Raft
//! write on this path.
//!
//! Order of preference: a free slot on a local replica; a peer with a ready replica (its
//! Worker `Invoke` waits there for a slot); a busy local replica (wait here for a slot).
//! With no ready replica anywhere the call waits, counted as waiting load, which makes the
//! leader's autoscaler start one (scale from zero); if every replica of the function failed
//! to start, the call fails with their reason instead of waiting out its deadline. A function
//! no node could ever hold (judged by [`check`] before anything waits) fails at once with
//! placement's reason, and a call that waits out its deadline names the reason the
//! autoscaler recorded for not placing a replica.

use std::time::Duration;

use flotilla::worker::MAX_PAYLOAD;
use flotilla_proto::worker::worker_client::WorkerClient;
use flotilla_proto::worker::InvokeRequest;
use flotilla_raft::{NodeId, ReplicaState};
use rand::seq::SliceRandom;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};

use super::replica::{ReplicaCore, Slot};
use super::{FnKey, FunctionHost};
use crate::error::NodeError;
use crate::placement;

/// How long a waiting call sleeps between looks at the catalog when nothing changes.
const RECHECK: Duration = Duration::from_millis(100);

/// How one input ended, and where it ran.
#[derive(Debug)]
pub struct Outcome {
    /// The output, or why the function failed.
    pub result: Result<Vec<u8>, String>,
    pub node: NodeId,
}

/// Checks that `app`/`function` is deployed and `input` fits, reading through the leader if
/// this node has not seen the app yet.
pub async fn check(host: &FunctionHost, app: &str, function: &str, input: &[u8]) -> Result<(), NodeError> {
    if input.len() > MAX_PAYLOAD {
        return Err(NodeError::invalid("input", format!("{} bytes is over the limit of {MAX_PAYLOAD}", input.len())));
    }
    let known = |host: &FunctionHost| host.cluster.view.read(|c| c.apps.contains_key(app));
    if !known(host) {
        host.cluster.linearizable().await?;
    }
    // The same judgement `apply` makes of a spawn, so a sync call and a spawn fail alike.
    host.cluster.view.read(|c| c.check_function(app, function)).map_err(NodeError::Rejected)?;
    match never_placeable(host, app, function) {
        Some(why) => Err(NodeError::FailedPrecondition(format!("{app}/{function} cannot run: {why}"))),
        None => Ok(()),
    }
}

/// Why no replica of the function could ever be placed (a GPU model no node has, more CPU
/// or memory than the largest node offers), judged on every registered node, up or down.
/// `None` when it has a replica (so it was placed) or could have one.
fn never_placeable(host: &FunctionHost, app: &str, function: &str) -> Option<placement::PlacementError> {
    host.cluster.view.read(|c| {
        if c.replicas.values().any(|r| r.app == app && r.function == function) {
            return None;
        }
        let spec = host.spec(c, app, function, c.apps.get(app)?.version)?;
        let gpu = spec.gpu.as_ref().map(|g| flotilla_raft::GpuRequest { model: g.model.clone(), count: g.count });
        let req = placement::Request { cpu: spec.cpu, memory_mib: spec.memory_mib, gpu: gpu.as_ref() };
        placement::place(&placement::candidates(c, |_| true), req).err().filter(|e| e.is_permanent())
    })
}

/// What a call that found no replica says: the reason the autoscaler recorded for not
/// placing one, if any.
fn no_replica(host: &FunctionHost, app: &str, function: &str) -> String {
    let pending =
        host.cluster.view.read(|c| c.apps.get(app).and_then(|a| a.pending.get(function)).map(|p| p.reason.clone()));
    let base = format!("no replica of {app}/{function} took the input in time");
    match pending {
        Some(why) => format!("{base}: no node can take a replica: {why}"),
        None => format!("{base} (it stays queued only while the caller waits)"),
    }
}

/// The function's own time limit, for callers that gave none.
pub fn function_timeout(host: &FunctionHost, app: &str, function: &str) -> Duration {
    let secs = host.cluster.view.read(|c| {
        let version = c.apps.get(app).map(|a| a.version)?;
        host.spec(c, app, function, version).map(|s| s.timeout_s)
    });
    Duration::from_secs(secs.unwrap_or(60))
}

/// Runs one input of `app`/`function` somewhere in the cluster before `deadline`.
pub async fn call(
    host: &FunctionHost,
    app: &str,
    function: &str,
    input: Vec<u8>,
    deadline: Instant,
    token: Option<MetadataValue<Ascii>>,
) -> Result<Outcome, NodeError> {
    let key: FnKey = (app.to_string(), function.to_string());
    let mut waiting = None;
    let mut metrics = host.cluster.raft.metrics();
    loop {
        if let Some(slot) = host.local_ready(app, function).iter().find_map(|r| r.try_slot()) {
            drop(waiting);
            return Ok(run_here(host, &key, slot, input).await);
        }
        let mut peers = remote_nodes(host, app, function);
        peers.shuffle(&mut rand::rng());
        for (node, addr) in peers {
            match invoke_remote(host, &addr, app, function, input.clone(), deadline, token.clone()).await {
                Ok(result) => return Ok(Outcome { result, node }),
                // No replica there after all (just removed, or not started yet): try another.
                Err(e) => tracing::debug!(node, error = %e, "peer could not take the input"),
            }
        }
        let local = host.local_ready(app, function);
        if !local.is_empty() {
            waiting.get_or_insert_with(|| host.load.waiting(&key));
            let slot = tokio::time::timeout_at(deadline, first_free(&local)).await;
            if let Ok(Some(slot)) = slot {
                drop(waiting);
                return Ok(run_here(host, &key, slot, input).await);
            }
        } else {
            if let Some(reason) = all_failed(host, app, function) {
                return Err(NodeError::Unstartable(reason));
            }
            waiting.get_or_insert_with(|| host.load.waiting(&key));
            let _ = tokio::time::timeout(RECHECK, metrics.changed()).await;
        }
        if Instant::now() >= deadline {
            return Err(NodeError::DeadlineExceeded(no_replica(host, app, function)));
        }
    }
}

/// Runs one input on a replica of this node, for a peer's router (Worker `Invoke`): waits
/// for a slot until `deadline`. `None` if this node has no replica of the function.
pub async fn invoke_here(
    host: &FunctionHost,
    app: &str,
    function: &str,
    input: Vec<u8>,
    deadline: Instant,
) -> Option<Result<Vec<u8>, String>> {
    let key: FnKey = (app.to_string(), function.to_string());
    let local = host.local_ready(app, function);
    if local.is_empty() {
        return None;
    }
    let slot = match local.iter().find_map(|r| r.try_slot()) {
        Some(slot) => slot,
        None => {
            let _waiting = host.load.waiting(&key);
            match tokio::time::timeout_at(deadline, first_free(&local)).await {
                Ok(Some(slot)) => slot,
                Ok(None) => return None,
                Err(_) => return Some(Err("no replica slot became free before the caller's deadline".into())),
            }
        }
    };
    Some(run_here(host, &key, slot, input).await.result)
}

async fn run_here(host: &FunctionHost, key: &FnKey, slot: Slot, input: Vec<u8>) -> Outcome {
    let _running = host.load.running(key);
    let result = slot.replica.run(input, None).await;
    Outcome { result, node: host.cluster.id }
}

/// The first slot to come free on any of `replicas`; `None` if they all stop accepting.
async fn first_free(replicas: &[std::sync::Arc<ReplicaCore>]) -> Option<Slot> {
    let waits = replicas.iter().map(|r| Box::pin(r.slot()));
    let (slot, _, _) = futures::future::select_all(waits).await;
    slot
}

/// Other live nodes with a ready replica of the function, with their addresses.
fn remote_nodes(host: &FunctionHost, app: &str, function: &str) -> Vec<(NodeId, String)> {
    let me = host.cluster.id;
    let addrs = host.cluster.group().addrs;
    let mut nodes: Vec<NodeId> = host.cluster.view.read(|c| {
        c.replicas
            .values()
            .filter(|r| r.app == app && r.function == function && r.node != me && r.state == ReplicaState::Ready)
            .map(|r| r.node)
            .collect()
    });
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .filter(|n| host.cluster.liveness.is_up(*n))
        .filter_map(|n| addrs.get(&n).map(|a| (n, a.clone())))
        .collect()
}

/// Why the function cannot run: every replica record failed (none ready or starting).
fn all_failed(host: &FunctionHost, app: &str, function: &str) -> Option<String> {
    host.cluster.view.read(|c| {
        let mine: Vec<_> = c.replicas.values().filter(|r| r.app == app && r.function == function).collect();
        let failed = !mine.is_empty() && mine.iter().all(|r| r.state == ReplicaState::Failed);
        failed.then(|| mine[0].error.clone().unwrap_or_else(|| "replica failed".into()))
    })
}

async fn invoke_remote(
    host: &FunctionHost,
    addr: &str,
    app: &str,
    function: &str,
    input: Vec<u8>,
    deadline: Instant,
    token: Option<MetadataValue<Ascii>>,
) -> Result<Result<Vec<u8>, String>, tonic::Status> {
    let channel = host.cluster.peers.channel(addr).map_err(|e| tonic::Status::internal(e.to_string()))?;
    let mut client = WorkerClient::new(channel).max_decoding_message_size(16 << 20).max_encoding_message_size(16 << 20);
    let left = deadline.saturating_duration_since(Instant::now());
    let mut req = tonic::Request::new(InvokeRequest {
        app: app.into(),
        function: function.into(),
        input,
        deadline_ms: left.as_millis() as u64,
    });
    req.set_timeout(left + Duration::from_secs(1));
    if let Some(t) = token {
        req.metadata_mut().insert(crate::auth::AUTHORIZATION, t);
    }
    crate::request_id::propagate(&mut req);
    let reply = client.invoke(req).await?.into_inner();
    Ok(if reply.ok { Ok(reply.output) } else { Err(reply.error) })
}
