//! The replicated catalog and its pure transition function [`Catalog::apply`].
//!
//! One file per record kind. `apply` validates what only the catalog can judge (does the app
//! exist, is the request a retry) and records the result; everything a client can get wrong
//! in isolation was already rejected at the gRPC edge.

mod app;
mod call;
mod node;
mod replica;
mod sandbox;
pub mod schedule;
mod snapshot;
mod token;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use app::{App, AppState};
pub use call::{Call, CallOutcome, CallState, MAX_CALL_PAYLOAD};
pub use node::NodeRecord;
pub use replica::{Gpu, GpuRequest, GpuSlot, Replica, ReplicaState};
pub use sandbox::{Sandbox, SandboxSpec, SandboxState};
pub use schedule::{CatchUp, Overlap, ScheduleRecord, ScheduleSpec, Schedules};
pub use snapshot::{latest_ready, Snapshot, SnapshotKind, SnapshotState};
pub use token::Token;

use crate::command::{Command, Rejection, Response};
use crate::NodeId;

/// Everything replicated by Raft, identical on every node at the same applied index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Apps by name.
    pub apps: BTreeMap<String, App>,
    /// Nodes that announced themselves, by id. Membership (who votes) is Raft's business;
    /// this is what each node offers.
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// Sandboxes by id, final ones included (they are kept for `sandbox show`/`wait`).
    pub sandboxes: BTreeMap<String, Sandbox>,
    /// Client API tokens by id (hashes only).
    pub tokens: BTreeMap<String, Token>,
    /// Durable calls by id, final ones included (for `call get` and `runs ls`).
    pub calls: BTreeMap<String, Call>,
    /// Warm function replicas by id.
    pub replicas: BTreeMap<String, Replica>,
    /// Leased GPUs and the replica or sandbox id that holds each.
    pub gpu_leases: BTreeMap<GpuSlot, String>,
    /// Schedules by `app/function`, with their next tick.
    pub schedules: Schedules,
    /// Snapshots by id (metadata; the blobs live on the replica nodes).
    pub snapshots: BTreeMap<String, Snapshot>,
}

impl Catalog {
    /// The sandbox that the create request with this client request id made, if any.
    pub fn sandbox_for_request(&self, request_id: &str) -> Option<&Sandbox> {
        sandbox::by_request(&self.sandboxes, request_id)
    }

    /// Applies one command. Pure: the result depends only on `self` and `cmd`.
    pub fn apply(&mut self, cmd: Command) -> Response {
        match cmd {
            Command::DeployApp { name, functions, spec_json, request_id, at_ms, schedules } => {
                if let Err(r) = schedule::check(&functions, &schedules) {
                    return Response::Rejected(r);
                }
                let retry = self.apps.get(&name).is_some_and(|a| a.recent_requests.contains(&request_id));
                let resp = app::deploy(&mut self.apps, name.clone(), functions, spec_json, request_id, at_ms);
                if !retry && matches!(resp, Response::App(_)) {
                    schedule::deploy(&mut self.schedules, &mut self.calls, &name, schedules, at_ms);
                }
                resp
            }
            Command::StopApp { name, at_ms } => {
                let resp = app::stop(&mut self.apps, &name, at_ms);
                if matches!(resp, Response::App(_)) {
                    schedule::remove_app(&mut self.schedules, &mut self.calls, &name, at_ms);
                }
                resp
            }
            Command::RegisterNode { id, addr, cpus, memory_mib, gpus, at_ms } => {
                node::register(&mut self.nodes, id, addr, cpus, memory_mib, gpus, at_ms)
            }
            Command::CreateSandbox { id, name, spec, node, gpus, request_id, at_ms } => {
                if let Some(existing) = request_id.as_deref().and_then(|rid| self.sandbox_for_request(rid)) {
                    return Response::Sandbox(existing.clone());
                }
                if let Err(r) = replica::lease(&mut self.gpu_leases, &self.nodes, node, &gpus, &id) {
                    return Response::Rejected(r);
                }
                let resp = sandbox::create(
                    &mut self.sandboxes,
                    &self.snapshots,
                    id.clone(),
                    name,
                    spec,
                    node,
                    gpus,
                    request_id,
                    at_ms,
                );
                if matches!(resp, Response::Rejected(_)) {
                    replica::release(&mut self.gpu_leases, node, &id);
                }
                resp
            }
            Command::SandboxStarted { id, generation, container_id, at_ms } => {
                sandbox::started(&mut self.sandboxes, &id, generation, container_id, at_ms)
            }
            Command::SandboxFinished { id, generation, failed, exit_code, reason, at_ms } => {
                let resp = sandbox::finished(&mut self.sandboxes, &id, generation, failed, exit_code, reason, at_ms);
                self.release_if_final(&id);
                resp
            }
            Command::TerminateSandbox { id, at_ms } => {
                let resp = sandbox::terminate(&mut self.sandboxes, &id, at_ms);
                self.release_if_final(&id);
                resp
            }
            Command::CreateToken { id, name, hash, first, at_ms } => {
                token::create(&mut self.tokens, id, name, hash, first, at_ms)
            }
            Command::RevokeToken { id, at_ms } => token::revoke(&mut self.tokens, &id, at_ms),
            Command::Batch(cmds) => Response::Batch(
                cmds.into_iter()
                    .map(|c| match c {
                        Command::Batch(_) => Response::Rejected(Rejection::Invalid {
                            field: "batch".into(),
                            message: "batches do not nest".into(),
                        }),
                        c => self.apply(c),
                    })
                    .collect(),
            ),
            Command::ForgetNode { id } => {
                self.nodes.remove(&id);
                Response::Empty
            }
            Command::SpawnCall { id, app, function, input, request_id, at_ms } => {
                if let Some(existing) = request_id.as_deref().and_then(|rid| self.call_for_request(rid)) {
                    return Response::Call(existing.clone());
                }
                if let Err(r) = self.check_function(&app, &function) {
                    return Response::Rejected(r);
                }
                call::insert(&mut self.calls, Call::new(id, app, function, input, None, request_id, at_ms))
            }
            Command::StartCall { id, node, attempt, at_ms } => call::start(&mut self.calls, &id, node, attempt, at_ms),
            Command::FinishCall { id, attempt, outcome, retry_at_ms, at_ms } => {
                let resp = call::finish(&mut self.calls, &id, attempt, outcome, retry_at_ms, at_ms);
                schedule::call_ended(&mut self.schedules, &mut self.calls, &id, at_ms);
                resp
            }
            Command::RequeueCall { id, attempt, reason, at_ms } => {
                call::requeue(&mut self.calls, &id, attempt, reason, at_ms)
            }
            Command::CancelCall { id, at_ms } => {
                let resp = call::cancel(&mut self.calls, &id, at_ms);
                schedule::call_ended(&mut self.schedules, &mut self.calls, &id, at_ms);
                resp
            }
            Command::AddReplica { id, app, function, version, node, cpu, memory_mib, gpus, at_ms } => {
                if let Err(r) = self.check_function(&app, &function) {
                    return Response::Rejected(r);
                }
                let state = ReplicaState::Starting;
                let replica = Replica {
                    id,
                    app,
                    function,
                    version,
                    node,
                    cpu,
                    memory_mib,
                    gpus,
                    state,
                    error: None,
                    created_at_ms: at_ms,
                    updated_at_ms: at_ms,
                };
                replica::add(&mut self.replicas, &mut self.gpu_leases, &self.nodes, replica)
            }
            Command::ReplicaReady { id, at_ms } => replica::ready(&mut self.replicas, &id, at_ms),
            Command::RemoveReplica { id, .. } => replica::remove(&mut self.replicas, &mut self.gpu_leases, &id),
            Command::ReplicaFailed { id, reason, at_ms } => replica::failed(&mut self.replicas, &id, reason, at_ms),
            Command::Fire { schedule, revision, scheduled_at_ms, next_fire_at_ms, call_id, node, skip, at_ms } => {
                let fire =
                    schedule::Fire { schedule, revision, scheduled_at_ms, next_fire_at_ms, call_id, node, skip, at_ms };
                schedule::fire(&mut self.schedules, &mut self.calls, fire)
            }
            Command::PauseSchedule { schedule, at_ms } => schedule::pause(&mut self.schedules, &schedule, at_ms),
            Command::ResumeSchedule { schedule, next_fire_at_ms, at_ms } => {
                schedule::resume(&mut self.schedules, &schedule, next_fire_at_ms, at_ms)
            }
            Command::CreateSnapshot { id, sandbox, generation, kind, path, node, at_ms } => snapshot::create(
                &mut self.snapshots,
                &mut self.sandboxes,
                id,
                &sandbox,
                generation,
                kind,
                path,
                node,
                at_ms,
            ),
            Command::SnapshotReady { id, size_bytes, sha256, replicas, at_ms } => {
                snapshot::ready(&mut self.snapshots, &mut self.sandboxes, &id, size_bytes, sha256, replicas, at_ms)
            }
            Command::SnapshotFailed { id } => snapshot::failed(&mut self.snapshots, &mut self.sandboxes, &id),
            Command::RemoveSnapshot { id } => snapshot::remove(&mut self.snapshots, &mut self.sandboxes, &id),
            Command::SetSnapshotReplicas { id, replicas } => snapshot::set_replicas(&mut self.snapshots, &id, replicas),
            Command::RestoreSandbox { id, node, snapshot, at_ms: _ } => {
                let was_on = self.sandboxes.get(&id).map(|sb| sb.node);
                let resp = sandbox::restore(&mut self.sandboxes, &self.snapshots, &id, node, &snapshot);
                // GPU leases are per node: a sandbox restored elsewhere gives up the old ones
                // (and runs without GPUs there; see functions.md).
                if let (Some(old), Some(sb)) = (was_on, self.sandboxes.get_mut(&id)) {
                    if sb.node != old {
                        replica::release(&mut self.gpu_leases, old, &id);
                        sb.gpus.clear();
                    }
                }
                resp
            }
        }
    }

    /// The call that the spawn request with this client request id made, if any.
    pub fn call_for_request(&self, request_id: &str) -> Option<&Call> {
        self.calls.values().find(|c| c.request_id.as_deref() == Some(request_id))
    }

    /// Ok if `app` is deployed and has `function`; the rejection a call to it gets otherwise.
    pub fn check_function(&self, app: &str, function: &str) -> Result<(), Rejection> {
        let a = self.apps.get(app).ok_or_else(|| Rejection::AppNotFound(app.to_string()))?;
        if a.state != AppState::Deployed {
            return Err(Rejection::Conflict(format!("app {app:?} is stopped")));
        }
        if !a.functions.iter().any(|f| f == function) {
            return Err(Rejection::FunctionNotFound(format!("{app}/{function}")));
        }
        Ok(())
    }

    /// Releases the GPUs of a sandbox that has ended.
    fn release_if_final(&mut self, id: &str) {
        if let Some(sb) = self.sandboxes.get(id).filter(|s| s.state.is_final()) {
            replica::release(&mut self.gpu_leases, sb.node, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_applies_in_order_like_separate_entries() {
        let deploy = |rid: &str| Command::DeployApp {
            name: "etl".into(),
            functions: vec!["f".into()],
            spec_json: "{}".into(),
            request_id: rid.into(),
            at_ms: 1,
            schedules: vec![],
        };
        let cmds = vec![
            deploy("r1"),
            Command::StopApp { name: "nope".into(), at_ms: 1 },
            deploy("r2"),
            Command::Batch(vec![]),
        ];
        let mut one = Catalog::default();
        let Response::Batch(batched) = one.apply(Command::Batch(cmds.clone())) else { panic!("not a batch response") };
        let mut other = Catalog::default();
        let separate: Vec<Response> = cmds.into_iter().take(3).map(|c| other.apply(c)).collect();
        assert_eq!(&batched[..3], &separate[..]);
        assert!(matches!(batched[3], Response::Rejected(Rejection::Invalid { .. })));
        assert_eq!(one, other);
    }
}
