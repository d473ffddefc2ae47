//! Function replicas: warm containers of one version of a function, each assigned to a node
//! by the leader's autoscaler, and the GPU leases they (and sandboxes) hold.
//!
//! The autoscaler is the only writer of `AddReplica`/`RemoveReplica`; the hosting node's
//! function reconciler makes containers match the records and reports `ReplicaReady` once
//! the container answers. Calls are routed only to ready replicas.
//!
//! **GPU leases.** A GPU is `(node, index)`. A replica or a sandbox that needs GPUs names the
//! indices the leader chose, and `apply` records one lease per GPU for its holder, refusing a
//! GPU the node does not have or one that is already leased: whatever the leader believed
//! when it placed, a slot is never booked twice. Removing the holder releases its leases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::NodeRecord;
use crate::command::{Rejection, Response};
use crate::NodeId;

/// Lifecycle of a replica record. Removal deletes the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Assigned; its node is creating the container.
    Starting,
    /// The container is up and takes inputs.
    Ready,
    /// The container could not be started; the autoscaler replaces the record later.
    Failed,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Ready => "ready",
            ReplicaState::Failed => "failed",
        }
    }
}

/// One warm container of a function, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// `rp-` followed by leader-chosen random hex.
    pub id: String,
    pub app: String,
    pub function: String,
    /// The app version whose spec the replica runs.
    pub version: u64,
    pub node: NodeId,
    /// Cores and MiB the replica reserves on its node (from the spec it runs).
    pub cpu: f64,
    pub memory_mib: u64,
    /// GPU indices on `node` leased to this replica.
    pub gpus: Vec<u32>,
    pub state: ReplicaState,
    /// Why it failed, once failed.
    pub error: Option<String>,
    pub created_at_ms: i64,
    /// When the state last changed.
    pub updated_at_ms: i64,
}

/// A GPU as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// Index on its node (`nvidia-smi` order, or the order of declared fakes).
    pub index: u32,
    /// Model name such as `H100`.
    pub model: String,
    /// Declared with `--gpus fake:…` for tests: no device exists behind it.
    pub fake: bool,
}

/// GPUs a workload asks for: `count` of `model`, or of any model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRequest {
    /// `None` takes any model.
    pub model: Option<String>,
    pub count: u32,
}

impl GpuRequest {
    /// Whether a GPU of `model` serves this request.
    pub fn accepts(&self, model: &str) -> bool {
        self.model.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(model))
    }
}

/// The key of a GPU lease: a node and a GPU index on it.
pub type GpuSlot = (NodeId, u32);

/// Leases `gpus` on `node` to `holder`, all or none. Err names the first GPU that cannot be had.
pub(super) fn lease(
    leases: &mut BTreeMap<GpuSlot, String>,
    nodes: &BTreeMap<NodeId, NodeRecord>,
    node: NodeId,
    gpus: &[u32],
    holder: &str,
) -> Result<(), Rejection> {
    let have = nodes.get(&node).map(|n| n.gpus.as_slice()).unwrap_or_default();
    for (i, g) in gpus.iter().enumerate() {
        if !have.iter().any(|h| h.index == *g) {
            return Err(Rejection::Invalid { field: "gpus".into(), message: format!("node {node} has no GPU {g}") });
        }
        if gpus[..i].contains(g) {
            return Err(Rejection::Invalid { field: "gpus".into(), message: format!("GPU {g} named twice") });
        }
        if let Some(other) = leases.get(&(node, *g)) {
            return Err(Rejection::Conflict(format!("GPU {g} on node {node} is leased to {other}")));
        }
    }
    for g in gpus {
        leases.insert((node, *g), holder.to_string());
    }
    Ok(())
}

/// Releases every lease `holder` has on `node`.
pub(super) fn release(leases: &mut BTreeMap<GpuSlot, String>, node: NodeId, holder: &str) {
    leases.retain(|(n, _), h| !(*n == node && h == holder));
}

pub(super) fn add(
    replicas: &mut BTreeMap<String, Replica>,
    leases: &mut BTreeMap<GpuSlot, String>,
    nodes: &BTreeMap<NodeId, NodeRecord>,
    replica: Replica,
) -> Response {
    if replicas.contains_key(&replica.id) {
        return Response::Rejected(Rejection::Conflict(format!("replica {} exists", replica.id)));
    }
    if !nodes.contains_key(&replica.node) {
        return Response::Rejected(Rejection::Invalid {
            field: "node".into(),
            message: format!("node {} is not registered", replica.node),
        });
    }
    if let Err(r) = lease(leases, nodes, replica.node, &replica.gpus, &replica.id) {
        return Response::Rejected(r);
    }
    replicas.insert(replica.id.clone(), replica.clone());
    Response::Replica(replica)
}

pub(super) fn ready(replicas: &mut BTreeMap<String, Replica>, id: &str, at_ms: i64) -> Response {
    set_state(replicas, id, ReplicaState::Ready, None, at_ms)
}

pub(super) fn failed(replicas: &mut BTreeMap<String, Replica>, id: &str, reason: String, at_ms: i64) -> Response {
    set_state(replicas, id, ReplicaState::Failed, Some(reason), at_ms)
}

fn set_state(
    replicas: &mut BTreeMap<String, Replica>,
    id: &str,
    state: ReplicaState,
    error: Option<String>,
    at_ms: i64,
) -> Response {
    match replicas.get_mut(id) {
        Some(r) => {
            r.state = state;
            r.error = error;
            r.updated_at_ms = at_ms;
            Response::Replica(r.clone())
        }
        None => Response::Rejected(Rejection::Stale(format!("replica {id} was removed"))),
    }
}

/// Removes a replica and releases its GPUs; removing one that is gone is a no-op.
pub(super) fn remove(
    replicas: &mut BTreeMap<String, Replica>,
    leases: &mut BTreeMap<GpuSlot, String>,
    id: &str,
) -> Response {
    if let Some(r) = replicas.remove(id) {
        release(leases, r.node, &r.id);
    }
    Response::Empty
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, Command};

    fn with_gpus(n: u32) -> Catalog {
        let mut c = Catalog::default();
        let gpus = (0..n).map(|index| Gpu { index, model: "H100".into(), fake: true }).collect();
        c.apply(Command::RegisterNode { id: 1, addr: "a:1".into(), cpus: 4, memory_mib: 4096, gpus, at_ms: 1 });
        c.apply(Command::DeployApp {
            name: "ml".into(),
            functions: vec!["infer".into()],
            spec_json: "{}".into(),
            request_id: "d1".into(),
            at_ms: 1,
            schedules: vec![],
        });
        c
    }

    fn add(id: &str, gpus: Vec<u32>) -> Command {
        Command::AddReplica {
            id: id.into(),
            app: "ml".into(),
            function: "infer".into(),
            version: 1,
            node: 1,
            cpu: 0.5,
            memory_mib: 128,
            gpus,
            at_ms: 5,
        }
    }

    #[test]
    fn two_two_gpu_replicas_fill_a_four_gpu_node_and_a_third_is_refused() {
        let mut c = with_gpus(4);
        assert!(matches!(c.apply(add("rp-a", vec![0, 1])), Response::Replica(_)));
        assert!(matches!(c.apply(add("rp-b", vec![2, 3])), Response::Replica(_)));
        let before = c.clone();
        assert!(matches!(c.apply(add("rp-c", vec![1, 2])), Response::Rejected(Rejection::Conflict(_))));
        assert_eq!(c, before);
        assert_eq!(c.gpu_leases.get(&(1, 3)).map(String::as_str), Some("rp-b"));
    }

    #[test]
    fn removing_a_replica_releases_its_gpus() {
        let mut c = with_gpus(2);
        c.apply(add("rp-a", vec![0, 1]));
        c.apply(Command::RemoveReplica { id: "rp-a".into(), at_ms: 9 });
        assert!(c.gpu_leases.is_empty());
        assert!(matches!(c.apply(add("rp-b", vec![1])), Response::Replica(_)));
    }

    #[test]
    fn a_gpu_the_node_lacks_or_named_twice_is_refused() {
        let mut c = with_gpus(2);
        assert!(matches!(c.apply(add("rp-a", vec![2])), Response::Rejected(Rejection::Invalid { .. })));
        assert!(matches!(c.apply(add("rp-a", vec![1, 1])), Response::Rejected(Rejection::Invalid { .. })));
        assert!(c.replicas.is_empty() && c.gpu_leases.is_empty());
    }

    #[test]
    fn ready_after_removal_is_stale() {
        let mut c = with_gpus(0);
        c.apply(add("rp-a", vec![]));
        assert!(
            matches!(c.apply(Command::ReplicaReady { id: "rp-a".into(), at_ms: 6 }), Response::Replica(r) if r.state == ReplicaState::Ready)
        );
        c.apply(Command::RemoveReplica { id: "rp-a".into(), at_ms: 7 });
        assert!(matches!(
            c.apply(Command::ReplicaReady { id: "rp-a".into(), at_ms: 8 }),
            Response::Rejected(Rejection::Stale(_))
        ));
    }

    #[test]
    fn a_failed_replica_keeps_its_reason_and_its_gpus_until_removed() {
        let mut c = with_gpus(1);
        c.apply(add("rp-a", vec![0]));
        let reason = "image x not found on node 1".to_string();
        let failed = Command::ReplicaFailed { id: "rp-a".into(), reason: reason.clone(), at_ms: 9 };
        assert!(
            matches!(c.apply(failed), Response::Replica(r) if r.state == ReplicaState::Failed && r.error == Some(reason))
        );
        assert_eq!(c.gpu_leases.len(), 1);
        c.apply(Command::RemoveReplica { id: "rp-a".into(), at_ms: 10 });
        assert!(c.gpu_leases.is_empty());
    }
}
