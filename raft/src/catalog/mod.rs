//! The replicated catalog and its pure transition function [`Catalog::apply`].
//!
//! One file per record kind. `apply` validates what only the catalog can judge (does the app
//! exist, is the request a retry) and records the result; everything a client can get wrong
//! in isolation was already rejected at the gRPC edge.

mod app;
mod node;
mod sandbox;
mod token;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use app::{App, AppState};
pub use node::NodeRecord;
pub use sandbox::{Sandbox, SandboxSpec, SandboxState};
pub use token::Token;

use crate::command::{Command, Response};
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
}

impl Catalog {
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
                sandbox::create(&mut self.sandboxes, id, name, spec, node, request_id, at_ms)
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
            Command::ForgetNode { id } => {
                self.nodes.remove(&id);
                Response::Empty
            }
        }
    }
}
