//! Control RPCs for functions: synchronous calls (routed, no Raft), durable calls (catalog
//! records), and what the replicas of an app are doing.

use std::time::Duration;

use flotilla_proto::control as pb;
use flotilla_raft::{Call, CallState, Command, Rejection, ReplicaState, Response as CatalogResponse};
use tonic::Status;

use super::ControlService;
use crate::error::NodeError;
use crate::function::router;

/// Extra time a synchronous call without its own timeout allows for starting a replica.
const COLD_START_MARGIN: Duration = Duration::from_secs(60);
/// Longest `GetCall` wait.
const MAX_WAIT_S: u64 = 3600;

fn check_names(app: &str, function: &str) -> Result<(), NodeError> {
    if app.is_empty() {
        return Err(NodeError::invalid("app", "is required"));
    }
    if function.is_empty() {
        return Err(NodeError::invalid("function", "is required"));
    }
    Ok(())
}

fn call_reply(resp: CatalogResponse) -> Result<Call, Status> {
    match resp {
        CatalogResponse::Call(c) => Ok(c),
        CatalogResponse::Rejected(r) => Err(NodeError::from(r).into()),
        other => Err(Status::internal(format!("unexpected catalog response: {other:?}"))),
    }
}

impl ControlService {
    pub(super) async fn call_function_(
        &self,
        req: pb::CallFunctionRequest,
        token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<pb::CallFunctionReply, Status> {
        check_names(&req.app, &req.function)?;
        if req.timeout_s > MAX_WAIT_S {
            return Err(NodeError::invalid("timeout_s", format!("at most {MAX_WAIT_S}")).into());
        }
        let host = &self.functions;
        router::check(host, &req.app, &req.function, &req.input).await?;
        let wait = match req.timeout_s {
            0 => router::function_timeout(host, &req.app, &req.function) + COLD_START_MARGIN,
            s => Duration::from_secs(s),
        };
        let deadline = tokio::time::Instant::now() + wait;
        let outcome = router::call(host, &req.app, &req.function, req.input, deadline, token).await?;
        Ok(match outcome.result {
            Ok(output) => pb::CallFunctionReply { ok: true, output, error: String::new(), node: outcome.node },
            Err(error) => pb::CallFunctionReply { ok: false, output: vec![], error, node: outcome.node },
        })
    }

    pub(super) async fn spawn_call_(&self, req: pb::SpawnCallRequest) -> Result<pb::CallRecord, Status> {
        check_names(&req.app, &req.function)?;
        if req.request_id.len() > 128 {
            return Err(NodeError::invalid("request_id", "at most 128 characters").into());
        }
        router::check(&self.functions, &req.app, &req.function, &req.input).await?;
        let cmd = Command::SpawnCall {
            id: crate::schedule::new_call_id(),
            app: req.app,
            function: req.function,
            input: req.input,
            request_id: (!req.request_id.is_empty()).then_some(req.request_id),
            at_ms: 0,
        };
        let call = call_reply(self.cluster.write(cmd).await?)?;
        tracing::info!(call = %call.id, app = %call.app, function = %call.function, "call spawned");
        Ok(super::schedules::call_pb(call))
    }

    pub(super) async fn get_call_(&self, req: pb::GetCallRequest) -> Result<pb::CallRecord, Status> {
        if req.id.is_empty() {
            return Err(NodeError::invalid("id", "is required").into());
        }
        if req.timeout_s > MAX_WAIT_S {
            return Err(NodeError::invalid("timeout_s", format!("at most {MAX_WAIT_S}")).into());
        }
        self.cluster.linearizable().await?;
        // A call missing now was compacted (expired) or never existed; one that goes missing
        // while we wait finished and was compacted meanwhile.
        let find = || {
            self.cluster.view.read(|c| c.calls.get(&req.id).cloned()).ok_or_else(|| {
                let expired = self.cluster.view.read(|c| c.call_expired(&req.id));
                let id = req.id.clone();
                NodeError::from(if expired { Rejection::CallExpired(id) } else { Rejection::CallNotFound(id) })
            })
        };
        let mut call = find()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(req.timeout_s);
        let mut metrics = self.cluster.raft.metrics();
        while !call.state.is_final() {
            tokio::select! {
                _ = metrics.changed() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
            call = find()?;
        }
        Ok(super::schedules::call_pb(call))
    }

    pub(super) async fn cancel_call_(&self, req: pb::CancelCallRequest) -> Result<pb::CallRecord, Status> {
        if req.id.is_empty() {
            return Err(NodeError::invalid("id", "is required").into());
        }
        let call = call_reply(self.cluster.write(Command::CancelCall { id: req.id, at_ms: 0 }).await?)?;
        Ok(super::schedules::call_pb(call))
    }

    pub(super) async fn function_status_(
        &self,
        req: pb::FunctionStatusRequest,
    ) -> Result<pb::FunctionStatusReply, Status> {
        if req.app.is_empty() {
            return Err(NodeError::invalid("app", "is required").into());
        }
        self.cluster.linearizable().await?;
        let liveness = self.cluster.liveness.clone();
        let load = self.functions.load.cluster(self.cluster.id, |n| liveness.is_up(n));
        let functions = self.cluster.view.read(|c| {
            let app = c.apps.get(&req.app).ok_or_else(|| NodeError::from(Rejection::AppNotFound(req.app.clone())))?;
            Ok::<_, NodeError>(
                app.functions
                    .iter()
                    .map(|f| {
                        let replicas: Vec<pb::Replica> = c
                            .replicas
                            .values()
                            .filter(|r| r.app == app.name && &r.function == f)
                            .map(|r| pb::Replica {
                                id: r.id.clone(),
                                node: r.node,
                                version: r.version,
                                state: r.state.as_str().to_string(),
                                gpus: r.gpus.clone(),
                            })
                            .collect();
                        let count = |s: ReplicaState| replicas.iter().filter(|r| r.state == s.as_str()).count() as u32;
                        let counts = load.get(&(app.name.clone(), f.clone())).copied().unwrap_or_default();
                        let queued_calls = c
                            .calls
                            .values()
                            .filter(|call| {
                                call.app == app.name && &call.function == f && call.state == CallState::Queued
                            })
                            .count() as u32;
                        let pending = app.pending.get(f);
                        pb::FunctionLoad {
                            pending_reason: pending.map(|p| p.reason.clone()).unwrap_or_default(),
                            pending_since_ms: pending.map_or(0, |p| p.since_ms),
                            function: f.clone(),
                            replicas_ready: count(ReplicaState::Ready),
                            replicas_starting: count(ReplicaState::Starting),
                            running: counts.running,
                            waiting: counts.waiting,
                            queued_calls,
                            replicas,
                        }
                    })
                    .collect(),
            )
        })?;
        Ok(pb::FunctionStatusReply { functions })
    }
}
