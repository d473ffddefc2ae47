//! The sandbox part of the Control service: create, look up, list, terminate, wait.

use std::time::Duration;

use flotilla_proto::control as pb;
use flotilla_raft::{Command, Proposal, ProposalReply, Rejection, Response as CatalogResponse, Sandbox};
use tonic::Status;

use super::control::ControlService;
use crate::cluster::Cluster;
use crate::error::NodeError;
use crate::sandbox::validate;

/// Longest server-side wait a client may ask for, seconds.
const MAX_WAIT_S: u64 = 3600;
/// How long `create` with `wait_running` waits for the container to start.
const CREATE_WAIT: Duration = Duration::from_secs(120);

pub fn to_pb(s: Sandbox) -> pb::Sandbox {
    let spec = pb::SandboxSpec {
        image: s.spec.image.clone(),
        command: s.spec.command,
        env: s.spec.env.into_iter().collect(),
        workdir: s.spec.workdir,
        cpu: s.spec.cpu,
        memory_mib: s.spec.memory_mib,
        timeout_s: s.spec.timeout_s,
        idle_timeout_s: s.spec.idle_timeout_s,
        block_network: s.spec.block_network,
        runtime: s.spec.runtime,
        tags: s.spec.tags.into_iter().collect(),
        gpu: s.spec.gpu.map(|g| format!("{}:{}", g.model.as_deref().unwrap_or("any"), g.count)),
        restore_on_failure: s.spec.restore_on_failure,
        snapshot_every_s: s.spec.snapshot_every_s,
        from_snapshot: s.spec.from_snapshot,
        disk_mib: s.spec.disk_mib,
        writable_rootfs: s.spec.writable_rootfs,
    };
    pb::Sandbox {
        id: s.id,
        name: s.name,
        node: s.node,
        state: s.state.as_str().to_string(),
        image: s.spec.image,
        generation: s.generation,
        exit_code: s.exit_code,
        reason: s.reason,
        spec: Some(spec),
        created_at_ms: s.created_at_ms,
        started_at_ms: s.started_at_ms,
        finished_at_ms: s.finished_at_ms,
        last_snapshot: s.last_snapshot,
    }
}

/// The sandbox with this id, or the live one with this name.
fn find(cluster: &Cluster, key: &str) -> Option<Sandbox> {
    cluster.view.read(|c| {
        c.sandboxes.get(key).cloned().or_else(|| {
            let named = |s: &&Sandbox| s.name.as_deref() == Some(key);
            c.sandboxes
                .values()
                .filter(named)
                .find(|s| !s.state.is_final())
                .or_else(|| c.sandboxes.values().filter(named).max_by_key(|s| s.created_at_ms))
                .cloned()
        })
    })
}

async fn lookup(cluster: &Cluster, key: &str) -> Result<Sandbox, Status> {
    if key.is_empty() {
        return Err(NodeError::invalid("id", "is required").into());
    }
    cluster.linearizable().await?;
    find(cluster, key).ok_or_else(|| NodeError::from(Rejection::SandboxNotFound(key.to_string())).into())
}

/// Waits until `pred` holds for sandbox `id` on this node's catalog, or `timeout` passes;
/// returns the record as it then is. A record this node has not applied yet is waited for
/// (the caller knows it was committed).
async fn wait_until(
    cluster: &Cluster,
    id: &str,
    timeout: Duration,
    pred: impl Fn(&Sandbox) -> bool,
) -> Result<Sandbox, Status> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut metrics = cluster.raft.metrics();
    loop {
        let sb = find(cluster, id);
        if let Some(sb) = &sb {
            if pred(sb) {
                return Ok(sb.clone());
            }
        }
        tokio::select! {
            _ = metrics.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                return sb.ok_or_else(|| Status::unavailable(format!("sandbox {id} not applied on this node in time")));
            }
        }
    }
}

impl ControlService {
    pub(super) async fn create_sandbox_(&self, req: pb::CreateSandboxRequest) -> Result<pb::Sandbox, Status> {
        let (name, mut spec) = validate::sandbox(&req)?;
        if let Some(from) = spec.from_snapshot.clone() {
            spec = super::snapshots::restore_spec(&self.cluster, &from, spec).await?;
        }
        if req.request_id.len() > 128 {
            return Err(NodeError::invalid("request_id", "at most 128 characters").into());
        }
        let request_id = (!req.request_id.is_empty()).then(|| req.request_id.clone());
        let reply = self.cluster.propose(Proposal::CreateSandbox { name, spec, request_id }).await?;
        let sb = match reply {
            ProposalReply::Write(CatalogResponse::Sandbox(sb)) => sb,
            ProposalReply::Write(CatalogResponse::Rejected(r)) => return Err(NodeError::from(r).into()),
            other => return Err(Status::internal(format!("unexpected reply to create: {other:?}"))),
        };
        tracing::info!(sandbox = %sb.id, node = sb.node, image = %sb.spec.image, "sandbox created");
        if !req.wait_running {
            return Ok(to_pb(sb));
        }
        // This node may not have applied the entry yet: wait for it, then for the state.
        let sb = wait_until(&self.cluster, &sb.id, CREATE_WAIT, |s| {
            !matches!(s.state, flotilla_raft::SandboxState::Pending | flotilla_raft::SandboxState::Restoring)
        })
        .await?;
        Ok(to_pb(sb))
    }

    pub(super) async fn get_sandbox_(&self, key: &str) -> Result<pb::Sandbox, Status> {
        lookup(&self.cluster, key).await.map(to_pb)
    }

    pub(super) async fn list_sandboxes_(
        &self,
        req: pb::ListSandboxesRequest,
    ) -> Result<pb::ListSandboxesReply, Status> {
        self.cluster.linearizable().await?;
        let sandboxes = self.cluster.view.read(|c| {
            c.sandboxes
                .values()
                .filter(|s| req.all || !s.state.is_final())
                .filter(|s| req.tags.iter().all(|(k, v)| s.spec.tags.get(k) == Some(v)))
                .cloned()
                .collect::<Vec<_>>()
        });
        let mut sandboxes: Vec<pb::Sandbox> = sandboxes.into_iter().map(to_pb).collect();
        sandboxes.sort_by_key(|s| s.created_at_ms);
        Ok(pb::ListSandboxesReply { sandboxes })
    }

    pub(super) async fn terminate_sandbox_(&self, key: &str) -> Result<pb::Sandbox, Status> {
        let sb = lookup(&self.cluster, key).await?;
        match self.cluster.write(Command::TerminateSandbox { id: sb.id, at_ms: 0 }).await? {
            CatalogResponse::Sandbox(sb) => Ok(to_pb(sb)),
            other => Err(Status::internal(format!("unexpected reply to terminate: {other:?}"))),
        }
    }

    pub(super) async fn wait_sandbox_(&self, req: pb::WaitSandboxRequest) -> Result<pb::Sandbox, Status> {
        if req.timeout_s > MAX_WAIT_S {
            return Err(NodeError::invalid("timeout_s", format!("at most {MAX_WAIT_S}")).into());
        }
        let sb = lookup(&self.cluster, &req.id).await?;
        let timeout = Duration::from_secs(if req.timeout_s == 0 { MAX_WAIT_S } else { req.timeout_s });
        wait_until(&self.cluster, &sb.id, timeout, |s| s.state.is_final()).await.map(to_pb)
    }
}
