//! The snapshot part of the Control service: list, show, remove, and the spec of a sandbox
//! created from a snapshot. (Snapshots are taken through Worker `Snapshot`, on the node that
//! hosts the sandbox.)

use flotilla_proto::control as pb;
use flotilla_raft::{Command, Rejection, Response as CatalogResponse, SandboxSpec, Snapshot};
use tonic::Status;

use super::control::ControlService;
use crate::cluster::Cluster;
use crate::error::NodeError;

pub fn to_pb(s: Snapshot) -> pb::Snapshot {
    pb::Snapshot {
        id: s.id,
        kind: s.kind.as_str().to_string(),
        sandbox: s.sandbox,
        path: s.path,
        size_bytes: s.size_bytes,
        sha256: s.sha256,
        replicas: s.replicas,
        state: s.state.as_str().to_string(),
        node: s.node,
        image: s.spec.image,
        created_at_ms: s.created_at_ms,
        ready_at_ms: s.ready_at_ms,
        reason: s.reason,
    }
}

async fn lookup(cluster: &Cluster, id: &str) -> Result<Snapshot, Status> {
    if id.is_empty() {
        return Err(NodeError::invalid("id", "is required").into());
    }
    cluster.linearizable().await?;
    cluster
        .view
        .read(|c| c.snapshots.get(id).cloned())
        .ok_or_else(|| NodeError::from(Rejection::SnapshotNotFound(id.to_string())).into())
}

/// The spec of a sandbox created from snapshot `from`: what the snapshot's sandbox ran
/// (image, command, env, limits, runtime), with the lifetime settings, tags and failover
/// settings of the request.
pub async fn restore_spec(cluster: &Cluster, from: &str, asked: SandboxSpec) -> Result<SandboxSpec, Status> {
    let snap = lookup(cluster, from).await?;
    if snap.state != flotilla_raft::SnapshotState::Ready {
        return Err(NodeError::FailedPrecondition(format!(
            "snapshot {from} is {}; only a ready snapshot can be restored",
            snap.state.as_str()
        ))
        .into());
    }
    Ok(SandboxSpec {
        timeout_s: asked.timeout_s,
        idle_timeout_s: asked.idle_timeout_s,
        tags: asked.tags,
        restore_on_failure: asked.restore_on_failure,
        snapshot_every_s: asked.snapshot_every_s,
        from_snapshot: Some(from.to_string()),
        ..snap.spec
    })
}

impl ControlService {
    pub(super) async fn list_snapshots_(
        &self,
        req: pb::ListSnapshotsRequest,
    ) -> Result<pb::ListSnapshotsReply, Status> {
        self.cluster.linearizable().await?;
        let mut snapshots: Vec<Snapshot> = self.cluster.view.read(|c| {
            c.snapshots.values().filter(|s| req.sandbox.is_empty() || s.sandbox == req.sandbox).cloned().collect()
        });
        snapshots.sort_by_key(|s| s.created_at_ms);
        Ok(pb::ListSnapshotsReply { snapshots: snapshots.into_iter().map(to_pb).collect() })
    }

    pub(super) async fn get_snapshot_(&self, id: &str) -> Result<pb::Snapshot, Status> {
        lookup(&self.cluster, id).await.map(to_pb)
    }

    pub(super) async fn remove_snapshot_(&self, id: &str) -> Result<pb::Snapshot, Status> {
        if id.is_empty() {
            return Err(NodeError::invalid("id", "is required").into());
        }
        match self.cluster.write(Command::RemoveSnapshot { id: id.to_string() }).await? {
            CatalogResponse::Snapshot(s) => Ok(to_pb(s)),
            other => Err(Status::internal(format!("unexpected reply to remove: {other:?}"))),
        }
    }
}
