//! The replicated catalog and its pure transition function [`Catalog::apply`].
//!
//! One file per record kind. `apply` validates what only the catalog can judge (does the app
//! exist, is the request a retry) and records the result; everything a client can get wrong
//! in isolation was already rejected at the gRPC edge.

mod app;
mod node;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use app::{App, AppState};
pub use node::NodeRecord;

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
            Command::ForgetNode { id } => {
                self.nodes.remove(&id);
                Response::Empty
            }
        }
    }
}
