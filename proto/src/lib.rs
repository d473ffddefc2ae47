//! Flotilla's wire format: generated protobuf types and gRPC stubs, nothing hand-written.
//!
//! Services kept apart because they have different callers and trust:
//! - [`control`]: the client control plane (cluster, apps, …), served by every node; writes are
//!   forwarded to the Raft leader by the node that receives them.
//! - [`worker`]: the data plane of the node that hosts a workload (exec, stdio, files).
//! - [`images`]: images on the nodes' engines (pull, build, list, remove, registry logins).
//! - [`peer`]: cluster-internal only (Raft RPCs, forward-to-leader, join, liveness). It is
//!   authenticated with the cluster secret and must never be exposed to clients.

/// Client control plane, package `flotilla.v1.control`.
pub mod control {
    tonic::include_proto!("flotilla.v1.control");
}

/// Data plane served by the hosting node, package `flotilla.v1.worker`.
pub mod worker {
    tonic::include_proto!("flotilla.v1.worker");
}

/// Images on the nodes' engines (pull, build, list, remove, registry logins), package
/// `flotilla.v1.images`.
pub mod images {
    tonic::include_proto!("flotilla.v1.images");
}

/// Cluster-internal service, package `flotilla.v1.peer`.
pub mod peer {
    tonic::include_proto!("flotilla.v1.peer");
}

/// Events and logs, package `flotilla.v1.observe`: served by every node, log streams
/// proxied to the node that has them.
pub mod observe {
    tonic::include_proto!("flotilla.v1.observe");
}

/// A client for etcd's KV `Put`, package `etcdserverpb`: only for `flotilla bench`, which
/// measures Flotilla's catalog against an etcd cluster on the same machine.
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}
