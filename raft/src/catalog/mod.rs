//! The replicated catalog and its pure transition function [`Catalog::apply`].
//!
//! One file per record kind. `apply` validates what only the catalog can judge (does the app
//! exist, is the request a retry) and records the result; everything a client can get wrong
//! in isolation was already rejected at the gRPC edge.

mod app;
mod call;
mod events;
mod node;
mod registry;
mod replica;
pub mod retention;
mod sandbox;
pub mod schedule;
mod snapshot;
mod token;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use app::{App, AppState, Pending};
pub use call::{Call, CallOutcome, CallState, MAX_CALL_PAYLOAD};
pub use events::{Event, EventKind, Events, MAX_EVENTS};
pub use node::NodeRecord;
pub use registry::{Password, RegistryLogin};
pub use replica::{Gpu, GpuRequest, GpuSlot, Replica, ReplicaState};
pub use retention::{CompactReport, Compacted, DEFAULT_RUNS_KEPT};
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
    /// Index of `calls`: client request id -> call id, so a retried spawn is found without a
    /// scan inside `apply`.
    pub call_requests: BTreeMap<String, String>,
    /// Index of `sandboxes`: client request id -> sandbox id, for retried creates.
    pub sandbox_requests: BTreeMap<String, String>,
    /// What retention has removed (see [`retention`]).
    pub compacted: Compacted,
    /// The newest cluster events, bounded (see [`Events`]).
    pub events: Events,
    /// Registry logins by registry (`host[:port]`), used by the nodes' pulls; never returned
    /// by a read API.
    pub registry_logins: BTreeMap<String, RegistryLogin>,
}

impl Catalog {
    /// The sandbox that the create request with this client request id made, if any.
    pub fn sandbox_for_request(&self, request_id: &str) -> Option<&Sandbox> {
        self.sandbox_requests.get(request_id).and_then(|id| self.sandboxes.get(id))
    }

    /// Whether call `id`, which is not in the catalog, was compacted away by retention (as
    /// opposed to never existing); see [`retention`].
    pub fn call_expired(&self, id: &str) -> bool {
        !self.calls.contains_key(id)
            && retention::call_id_time(id).is_some_and(|made| made <= self.compacted.calls_made_until_ms)
    }

    /// Whether [`Command::Compact`] stamped `at_ms` with these arguments would remove anything.
    pub fn compaction_due(&self, retention_ms: u64, runs_kept: &BTreeMap<String, u32>, at_ms: i64) -> bool {
        retention::due(self, compaction_cutoff(at_ms, retention_ms), runs_kept)
    }

    /// Applies one command. Pure: the result depends only on `self` and `cmd`. Records the
    /// event the command makes, if any (see [`Events`]).
    pub fn apply(&mut self, mut cmd: Command) -> Response {
        let at_ms = cmd.at_ms_mut().map(|t| *t);
        let note = events::Note::of(&cmd, self);
        let resp = self.apply_one(cmd);
        // A rejected command changes nothing, the event clock included.
        if matches!(resp, Response::Rejected(_)) {
            return resp;
        }
        if let Some(at_ms) = at_ms {
            self.events.clock_ms = self.events.clock_ms.max(at_ms);
        }
        if let Some(note) = note {
            note.record(self, &resp);
        }
        resp
    }

    fn apply_one(&mut self, cmd: Command) -> Response {
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
                    schedule::remove_app(&mut self.schedules, &mut self.calls, &name, "its app was stopped", at_ms);
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
                match &resp {
                    Response::Rejected(_) => replica::release(&mut self.gpu_leases, node, &id),
                    Response::Sandbox(sb) => {
                        if let Some(rid) = &sb.request_id {
                            self.sandbox_requests.insert(rid.clone(), sb.id.clone());
                        }
                    }
                    _ => {}
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
            Command::RevokeTokenUnlessLast { id, at_ms } => token::revoke_unless_last(&mut self.tokens, &id, at_ms),
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
                let resp = call::insert(&mut self.calls, Call::new(id, app, function, input, None, request_id, at_ms));
                if let Response::Call(Call { id, request_id: Some(rid), .. }) = &resp {
                    self.call_requests.insert(rid.clone(), id.clone());
                }
                resp
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
            Command::SnapshotFailed { id, reason } => {
                snapshot::failed(&mut self.snapshots, &mut self.sandboxes, &id, reason)
            }
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
            Command::RemoveApp { name, at_ms } => {
                let Some(removed) = self.apps.remove(&name) else {
                    return Response::Rejected(Rejection::AppNotFound(name));
                };
                schedule::remove_app(&mut self.schedules, &mut self.calls, &name, "its app was removed", at_ms);
                let replicas: Vec<String> =
                    self.replicas.values().filter(|r| r.app == name).map(|r| r.id.clone()).collect();
                for id in replicas {
                    replica::remove(&mut self.replicas, &mut self.gpu_leases, &id);
                }
                call::cancel_queued(&mut self.calls, &name, "its app was removed", at_ms);
                Response::App(removed)
            }
            Command::SetPending { app, function, version, reason, at_ms } => {
                app::set_pending(&mut self.apps, &app, &function, version, reason, at_ms)
            }
            Command::Compact { retention_ms, runs_kept, at_ms } => {
                retention::compact(self, compaction_cutoff(at_ms, retention_ms), &runs_kept)
            }
            // Recorded by the note taken in `apply`.
            Command::RecordEvent { .. } => Response::Empty,
            Command::RegistryLogin { registry, username, password, at_ms } => {
                registry::login(&mut self.registry_logins, registry, username, password, at_ms)
            }
        }
    }

    /// The call that the spawn request with this client request id made, if any.
    pub fn call_for_request(&self, request_id: &str) -> Option<&Call> {
        self.call_requests.get(request_id).and_then(|id| self.calls.get(id))
    }

    /// Ok if `app` is deployed and has `function`; the rejection a call to it gets otherwise.
    pub fn check_function(&self, app: &str, function: &str) -> Result<(), Rejection> {
        let a = self.apps.get(app).ok_or_else(|| Rejection::AppNotFound(app.to_string()))?;
        if a.state != AppState::Deployed {
            return Err(Rejection::AppStopped(app.to_string()));
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

/// Final records that ended at or before this time are past a `retention_ms` window at `at_ms`.
fn compaction_cutoff(at_ms: i64, retention_ms: u64) -> i64 {
    at_ms.saturating_sub(i64::try_from(retention_ms).unwrap_or(i64::MAX))
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
