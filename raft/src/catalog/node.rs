//! Nodes as the catalog knows them: what each offers. Raft membership says who votes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::replica::Gpu;
use crate::command::{Rejection, Response};
use crate::NodeId;

/// A node's announced capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Peer/Control gRPC address (`host:port`) the node advertises.
    pub addr: String,
    /// Logical CPUs the node offers to workloads.
    pub cpus: u32,
    /// Memory the node offers to workloads, MiB.
    pub memory_mib: u64,
    /// GPUs the node offers, each leasable on its own (see `replica`).
    pub gpus: Vec<Gpu>,
    /// First registration (Unix ms, leader clock).
    pub registered_at_ms: i64,
    /// Last registration, i.e. the node's last restart (Unix ms, leader clock).
    pub updated_at_ms: i64,
}

pub(super) fn register(
    nodes: &mut BTreeMap<NodeId, NodeRecord>,
    id: NodeId,
    addr: String,
    cpus: u32,
    memory_mib: u64,
    gpus: Vec<Gpu>,
    at_ms: i64,
) -> Response {
    if addr.is_empty() {
        return Response::Rejected(Rejection::Invalid { field: "addr".into(), message: "must not be empty".into() });
    }
    let record = nodes.entry(id).or_insert_with(|| NodeRecord {
        id,
        addr: addr.clone(),
        cpus,
        memory_mib,
        gpus: gpus.clone(),
        registered_at_ms: at_ms,
        updated_at_ms: at_ms,
    });
    record.addr = addr;
    record.cpus = cpus;
    record.memory_mib = memory_mib;
    record.gpus = gpus;
    record.updated_at_ms = at_ms;
    Response::Node(record.clone())
}

#[cfg(test)]
mod tests {
    use crate::{Catalog, Command, Response};

    fn register(id: u64, addr: &str, at_ms: i64) -> Command {
        Command::RegisterNode { id, addr: addr.into(), cpus: 2, memory_mib: 1024, gpus: vec![], at_ms }
    }

    #[test]
    fn reregistering_updates_in_place() {
        let mut c = Catalog::default();
        c.apply(register(1, "127.0.0.1:7100", 10));
        let Response::Node(n) = c.apply(register(1, "127.0.0.2:7100", 20)) else { panic!() };
        assert_eq!((n.addr.as_str(), n.registered_at_ms, n.updated_at_ms), ("127.0.0.2:7100", 10, 20));
        assert_eq!(c.nodes.len(), 1);
    }

    #[test]
    fn forget_removes_the_record_and_is_idempotent() {
        let mut c = Catalog::default();
        c.apply(register(1, "a:1", 10));
        c.apply(register(2, "b:1", 10));
        assert_eq!(c.apply(Command::ForgetNode { id: 2 }), Response::Empty);
        assert_eq!(c.apply(Command::ForgetNode { id: 2 }), Response::Empty);
        assert_eq!(c.nodes.keys().copied().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn empty_addr_is_rejected() {
        let mut c = Catalog::default();
        assert!(matches!(c.apply(register(1, "", 10)), Response::Rejected(_)));
        assert!(c.nodes.is_empty());
    }
}
