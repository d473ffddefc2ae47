//! The replicated catalog and its pure transition function [`Catalog::apply`].
//!
//! One file per record kind. `apply` validates what only the catalog can judge (does the app
//! exist, is the request a retry) and records the result; everything a client can get wrong
//! in isolation was already rejected at the gRPC edge.

mod app;
mod node;
mod sandbox;
mod snapshot;
mod token;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use app::{App, AppState};
pub use node::NodeRecord;
pub use sandbox::{Sandbox, SandboxSpec, SandboxState};
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
            Command::DeployApp { name, functions, spec_json, request_id, at_ms } => {
                app::deploy(&mut self.apps, name, functions, spec_json, request_id, at_ms)
            }
            Command::StopApp { name, at_ms } => app::stop(&mut self.apps, &name, at_ms),
            Command::RegisterNode { id, addr, cpus, memory_mib, at_ms } => {
                node::register(&mut self.nodes, id, addr, cpus, memory_mib, at_ms)
            }
            Command::CreateSandbox { id, name, spec, node, request_id, at_ms } => {
                sandbox::create(&mut self.sandboxes, &self.snapshots, id, name, spec, node, request_id, at_ms)
            }
            Command::SandboxStarted { id, generation, container_id, at_ms } => {
                sandbox::started(&mut self.sandboxes, &id, generation, container_id, at_ms)
            }
            Command::SandboxFinished { id, generation, failed, exit_code, reason, at_ms } => {
                sandbox::finished(&mut self.sandboxes, &id, generation, failed, exit_code, reason, at_ms)
            }
            Command::TerminateSandbox { id, at_ms } => sandbox::terminate(&mut self.sandboxes, &id, at_ms),
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
                sandbox::restore(&mut self.sandboxes, &self.snapshots, &id, node, &snapshot)
            }
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
