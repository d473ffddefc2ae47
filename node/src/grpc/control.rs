//! The Control service: the client control plane.

use flotilla::spec::SpecError;
use flotilla::AppSpec;
use flotilla_proto::control as pb;
use flotilla_proto::control::control_server::Control;
use flotilla_raft::{App, Command, Proposal, ProposalReply, Rejection, Response as CatalogResponse};
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::error::NodeError;

pub struct ControlService {
    pub cluster: Cluster,
    pub functions: crate::function::FunctionHost,
}

/// Response metadata naming the leader's advertised address, so clients can send the next
/// request straight to it instead of through a forwarding hop.
pub const LEADER_HEADER: &str = "x-flotilla-leader";

impl ControlService {
    /// Wraps a reply and adds the [`LEADER_HEADER`] when a leader is known.
    fn reply<T>(&self, message: T) -> Response<T> {
        let mut resp = Response::new(message);
        if let Some((_, addr)) = self.cluster.known_leader() {
            if let Ok(v) = addr.parse() {
                resp.metadata_mut().insert(LEADER_HEADER, v);
            }
        }
        resp
    }
}

fn to_pb(app: App) -> pb::App {
    pb::App {
        name: app.name,
        version: app.version,
        state: app.state.as_str().to_string(),
        functions: app.functions,
        spec_json: app.spec_json,
        deployed_at_ms: app.deployed_at_ms,
        updated_at_ms: app.updated_at_ms,
    }
}

fn membership(reply: ProposalReply) -> Result<pb::MembershipReply, Status> {
    match reply {
        ProposalReply::Membership { voters, learners } => Ok(pb::MembershipReply { voters, learners }),
        other => Err(Status::internal(format!("unexpected reply to a membership change: {other:?}"))),
    }
}

fn app_reply(resp: CatalogResponse) -> Result<App, Status> {
    match resp {
        CatalogResponse::App(app) => Ok(app),
        other => Err(Status::internal(format!("unexpected catalog response: {other:?}"))),
    }
}

/// Parses and validates a spec sent by a client; errors name the field.
fn parse_spec(spec_json: &str) -> Result<AppSpec, NodeError> {
    if spec_json.trim().is_empty() {
        return Err(NodeError::invalid("spec_json", "must not be empty"));
    }
    let spec: AppSpec = serde_json::from_str(spec_json).map_err(|e| NodeError::invalid("spec_json", e.to_string()))?;
    if let Some((name, _)) = spec.functions.iter().find(|(_, f)| f.build.is_some()) {
        return Err(NodeError::invalid(
            format!("functions.{name}.image"),
            "an image = { dockerfile, context } is built by the client at deploy (the CLI and SDKs do it); send the built image's name",
        ));
    }
    spec.validate().map_err(|e| match e {
        SpecError::Invalid { path, message } => NodeError::invalid(path, message),
        other => NodeError::invalid("spec_json", other.to_string()),
    })?;
    Ok(spec)
}

/// A node's GPUs with the replica or sandbox that holds each.
fn gpus_of(catalog: &flotilla_raft::Catalog, node: &flotilla_raft::NodeRecord) -> Vec<pb::Gpu> {
    node.gpus
        .iter()
        .map(|g| pb::Gpu {
            index: g.index,
            model: g.model.clone(),
            leased_to: catalog.gpu_leases.get(&(node.id, g.index)).cloned(),
        })
        .collect()
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusReply>, Status> {
        let c = &self.cluster;
        let g = c.group();
        let capacity: std::collections::BTreeMap<_, _> =
            c.view.read(|cat| cat.nodes.values().map(|n| (n.id, (n.cpus, n.memory_mib, gpus_of(cat, n)))).collect());
        let nodes = g
            .addrs
            .iter()
            .map(|(&id, addr)| pb::NodeStatus {
                id,
                addr: addr.clone(),
                role: if g.leader == Some(id) {
                    "leader"
                } else if g.voters.contains(&id) {
                    "follower"
                } else {
                    "learner"
                }
                .to_string(),
                status: if c.liveness.is_up(id) { "up" } else { "down" }.to_string(),
                gpus: capacity.get(&id).map(|c| c.2.clone()).unwrap_or_default(),
                cpus: capacity.get(&id).map_or(0, |c| c.0),
                memory_mib: capacity.get(&id).map_or(0, |c| c.1),
            })
            .collect();
        Ok(self.reply(pb::ClusterStatusReply {
            leader: g.leader,
            term: g.term,
            nodes,
            answered_by: c.id,
            last_log_index: g.last_log_index,
            last_applied: g.last_applied,
            snapshot_index: g.snapshot_index,
            purged_index: g.purged_index,
        }))
    }

    async fn add_node(&self, req: Request<pb::AddNodeRequest>) -> Result<Response<pb::MembershipReply>, Status> {
        let pb::AddNodeRequest { id, addr } = req.into_inner();
        Ok(self.reply(membership(self.cluster.propose(Proposal::AddNode { id, addr }).await?)?))
    }

    async fn remove_node(&self, req: Request<pb::RemoveNodeRequest>) -> Result<Response<pb::MembershipReply>, Status> {
        let id = req.into_inner().id;
        Ok(self.reply(membership(self.cluster.propose(Proposal::RemoveNode { id }).await?)?))
    }

    async fn force_remove_node(
        &self,
        req: Request<pb::ForceRemoveNodeRequest>,
    ) -> Result<Response<pb::ForceRemoveNodeReply>, Status> {
        let pb::ForceRemoveNodeRequest { id, term } = req.into_inner();
        let p = self.cluster.force_remove(id, term).await?;
        Ok(Response::new(pb::ForceRemoveNodeReply {
            node_id: self.cluster.id,
            vote_term: p.vote_term,
            last_log_term: p.last_log_term,
            last_log_index: p.last_log_index,
            voters: p.voters,
            learners: p.learners,
            addrs: p.addrs.into_iter().collect(),
        }))
    }

    async fn deploy_app(&self, req: Request<pb::DeployAppRequest>) -> Result<Response<pb::DeployAppReply>, Status> {
        let req = req.into_inner();
        let spec = parse_spec(&req.spec_json)?;
        if req.request_id.is_empty() || req.request_id.len() > 128 {
            return Err(NodeError::invalid("request_id", "must be 1 to 128 characters").into());
        }
        // A function's code is an uploaded archive, never a sandbox's snapshot.
        for (name, f) in &spec.functions {
            let Some(code) = &f.code else { continue };
            if self.cluster.view.read(|c| c.snapshots.values().any(|s| s.sha256 == *code)) {
                return Err(NodeError::invalid(
                    format!("functions.{name}.code"),
                    "names a snapshot's data, not code uploaded with PutBlob",
                )
                .into());
            }
        }
        let spec_json = serde_json::to_string(&spec).map_err(|e| Status::internal(e.to_string()))?;
        let cmd = Command::DeployApp {
            name: spec.name.clone(),
            functions: spec.functions.keys().cloned().collect(),
            spec_json,
            request_id: req.request_id,
            at_ms: 0,
            schedules: crate::schedule::declare(&spec, chrono::Utc::now().timestamp_millis())?,
        };
        let app = app_reply(self.cluster.write(cmd).await?)?;
        tracing::info!(app = %app.name, version = app.version, "app deployed");
        Ok(self.reply(pb::DeployAppReply { app: Some(to_pb(app)) }))
    }

    async fn list_apps(&self, _: Request<pb::ListAppsRequest>) -> Result<Response<pb::ListAppsReply>, Status> {
        self.cluster.linearizable().await?;
        let apps = self.cluster.view.read(|c| c.apps.values().cloned().map(to_pb).collect());
        Ok(self.reply(pb::ListAppsReply { apps }))
    }

    async fn get_app(&self, req: Request<pb::GetAppRequest>) -> Result<Response<pb::App>, Status> {
        let name = req.into_inner().name;
        if name.is_empty() {
            return Err(NodeError::invalid("name", "must not be empty").into());
        }
        self.cluster.linearizable().await?;
        let app = self.cluster.view.read(|c| c.apps.get(&name).cloned());
        let app = app.ok_or_else(|| NodeError::from(Rejection::AppNotFound(name)))?;
        Ok(self.reply(to_pb(app)))
    }

    async fn stop_app(&self, req: Request<pb::StopAppRequest>) -> Result<Response<pb::App>, Status> {
        let name = req.into_inner().name;
        if name.is_empty() {
            return Err(NodeError::invalid("name", "must not be empty").into());
        }
        let app = app_reply(self.cluster.write(Command::StopApp { name, at_ms: 0 }).await?)?;
        Ok(self.reply(to_pb(app)))
    }

    async fn remove_app(&self, req: Request<pb::RemoveAppRequest>) -> Result<Response<pb::App>, Status> {
        let name = req.into_inner().name;
        if name.is_empty() {
            return Err(NodeError::invalid("name", "must not be empty").into());
        }
        let app = app_reply(self.cluster.write(Command::RemoveApp { name, at_ms: 0 }).await?)?;
        tracing::info!(app = %app.name, version = app.version, "app removed");
        Ok(self.reply(to_pb(app)))
    }

    async fn create_sandbox(&self, req: Request<pb::CreateSandboxRequest>) -> Result<Response<pb::Sandbox>, Status> {
        Ok(self.reply(self.create_sandbox_(req.into_inner()).await?))
    }

    async fn get_sandbox(&self, req: Request<pb::GetSandboxRequest>) -> Result<Response<pb::Sandbox>, Status> {
        Ok(self.reply(self.get_sandbox_(&req.into_inner().id).await?))
    }

    async fn list_sandboxes(
        &self,
        req: Request<pb::ListSandboxesRequest>,
    ) -> Result<Response<pb::ListSandboxesReply>, Status> {
        Ok(self.reply(self.list_sandboxes_(req.into_inner()).await?))
    }

    async fn terminate_sandbox(&self, req: Request<pb::GetSandboxRequest>) -> Result<Response<pb::Sandbox>, Status> {
        Ok(self.reply(self.terminate_sandbox_(&req.into_inner().id).await?))
    }

    async fn wait_sandbox(&self, req: Request<pb::WaitSandboxRequest>) -> Result<Response<pb::Sandbox>, Status> {
        Ok(self.reply(self.wait_sandbox_(req.into_inner()).await?))
    }

    async fn create_token(&self, req: Request<pb::CreateTokenRequest>) -> Result<Response<pb::CreatedToken>, Status> {
        Ok(self.reply(self.create_token_(req.into_inner()).await?))
    }

    async fn list_tokens(&self, _: Request<pb::ListTokensRequest>) -> Result<Response<pb::ListTokensReply>, Status> {
        Ok(self.reply(self.list_tokens_().await?))
    }

    async fn revoke_token(&self, req: Request<pb::RevokeTokenRequest>) -> Result<Response<pb::Token>, Status> {
        Ok(self.reply(self.revoke_token_(req.into_inner()).await?))
    }

    async fn call_function(
        &self,
        req: Request<pb::CallFunctionRequest>,
    ) -> Result<Response<pb::CallFunctionReply>, Status> {
        let token = super::worker::token_of(&req);
        Ok(self.reply(self.call_function_(req.into_inner(), token).await?))
    }

    async fn spawn_call(&self, req: Request<pb::SpawnCallRequest>) -> Result<Response<pb::CallRecord>, Status> {
        Ok(self.reply(self.spawn_call_(req.into_inner()).await?))
    }

    async fn get_call(&self, req: Request<pb::GetCallRequest>) -> Result<Response<pb::CallRecord>, Status> {
        Ok(self.reply(self.get_call_(req.into_inner()).await?))
    }

    async fn cancel_call(&self, req: Request<pb::CancelCallRequest>) -> Result<Response<pb::CallRecord>, Status> {
        Ok(self.reply(self.cancel_call_(req.into_inner()).await?))
    }

    async fn function_status(
        &self,
        req: Request<pb::FunctionStatusRequest>,
    ) -> Result<Response<pb::FunctionStatusReply>, Status> {
        Ok(self.reply(self.function_status_(req.into_inner()).await?))
    }

    async fn list_schedules(
        &self,
        req: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesReply>, Status> {
        Ok(self.reply(self.list_schedules_(req.into_inner()).await?))
    }

    async fn pause_schedule(&self, req: Request<pb::ScheduleRef>) -> Result<Response<pb::Schedule>, Status> {
        Ok(self.reply(self.pause_schedule_(req.into_inner()).await?))
    }

    async fn resume_schedule(&self, req: Request<pb::ScheduleRef>) -> Result<Response<pb::Schedule>, Status> {
        Ok(self.reply(self.resume_schedule_(req.into_inner()).await?))
    }

    async fn trigger_schedule(
        &self,
        req: Request<pb::TriggerScheduleRequest>,
    ) -> Result<Response<pb::CallRecord>, Status> {
        Ok(self.reply(self.trigger_schedule_(req.into_inner()).await?))
    }

    async fn list_runs(&self, req: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsReply>, Status> {
        Ok(self.reply(self.list_runs_(req.into_inner()).await?))
    }

    async fn list_snapshots(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsReply>, Status> {
        Ok(self.reply(self.list_snapshots_(req.into_inner()).await?))
    }

    async fn get_snapshot(&self, req: Request<pb::GetSnapshotRequest>) -> Result<Response<pb::Snapshot>, Status> {
        Ok(self.reply(self.get_snapshot_(&req.into_inner().id).await?))
    }

    async fn remove_snapshot(&self, req: Request<pb::GetSnapshotRequest>) -> Result<Response<pb::Snapshot>, Status> {
        Ok(self.reply(self.remove_snapshot_(&req.into_inner().id).await?))
    }

    async fn put_blob(
        &self,
        req: Request<tonic::Streaming<pb::BlobUpload>>,
    ) -> Result<Response<pb::PutBlobReply>, Status> {
        let f = &self.functions;
        Ok(self.reply(crate::blobs::code::upload(&self.cluster, &f.blobs, req.into_inner(), f.blob_copies).await?))
    }
}
