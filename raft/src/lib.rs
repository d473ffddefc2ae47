//! Flotilla's consensus layer: the replicated **catalog** and the openraft plumbing around it.
//!
//! # What is replicated
//! Every node holds the same [`Catalog`]: the nodes of the cluster and their capacity, and the
//! deployed apps with their validated specs. Later layers add schedules, durable calls,
//! sandbox records and snapshot metadata. A write is a [`Command`]; the leader fills in every
//! non-deterministic value (timestamps, ids) before it proposes ([`Command::stamp`]), and
//! [`Catalog::apply`] is a pure function of the catalog and the command: no clock, no RNG, no
//! I/O. An invalid command is rejected the same way on every node ([`Response::Rejected`]).
//!
//! # What is not
//! Container stdio, file contents, snapshot and image blobs, synchronous calls and heartbeats
//! never enter the log; they move point-to-point between nodes.
//!
//! # Storage
//! [`store`] keeps the Raft log, vote and committed index in an append-only file and
//! `fdatasync`s before it acknowledges (group commit: one sync for every append queued
//! meanwhile). The state machine lives in memory and is made durable by openraft snapshots
//! persisted in a sled database: on restart the last snapshot is loaded and the log after it
//! is re-applied up to the committed index. A data-version record guards the on-disk format
//! ([`store::DATA_VERSION`]); a data dir of another version is refused by name.
//!
//! # openraft features
//! `storage-v2` (our own log store and state machine) and `serde` (Raft RPCs travel as bincode
//! inside the Peer gRPC service, see [`network`]). Snapshots are sent in chunks (no
//! `generic-snapshot-data`); `single-term-leader` and `loosen-follower-log-revert` are off.

pub mod catalog;
pub mod codec;
mod command;
pub mod network;
pub mod store;

use std::io::Cursor;

pub use catalog::{
    App, AppState, Call, CallOutcome, CallState, Catalog, CatchUp, Gpu, GpuRequest, NodeRecord, Overlap, Pending,
    Replica, ReplicaState, Sandbox, SandboxSpec, SandboxState, ScheduleRecord, ScheduleSpec, Schedules, Snapshot,
    SnapshotKind, SnapshotState, Token,
};
pub use catalog::{Event, EventKind, Events};
pub use catalog::{Password, RegistryLogin};
pub use command::{Command, Proposal, ProposalReply, Rejection, Response};

openraft::declare_raft_types!(
    /// openraft type configuration: catalog commands in, catalog responses out, `u64` node ids,
    /// nodes addressed by their Peer gRPC address.
    pub TypeConfig:
        D = Command,
        R = Response,
);

/// A node's id in the Raft group. Chosen by the operator, stable for the node's life.
pub type NodeId = u64;
/// The Raft handle of a node.
pub type Raft = openraft::Raft<TypeConfig>;
/// Membership entry for a node: its Peer gRPC address (`host:port`).
pub type Node = openraft::BasicNode;

#[cfg(test)]
mod codec_fuzz;
