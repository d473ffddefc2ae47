//! What a node's request handling can fail with. Mapped to a gRPC status in one place,
//! `grpc::status`.

use flotilla_raft::{NodeId, Rejection};

/// A request could not be served by this node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No leader is known (election in progress, or no quorum). Retry.
    #[error("no leader elected yet; retry shortly")]
    NoLeader,
    /// The leader moved while the request was in flight. Retry.
    #[error("node {0} is no longer the leader; retry")]
    NotLeader(NodeId),
    /// The leader could not be reached to forward or confirm a request. Retry.
    #[error("leader {leader} at {addr} unreachable: {cause}")]
    LeaderUnreachable { leader: NodeId, addr: String, cause: String },
    /// The request is malformed; the message names the field.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The catalog refused the command.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A membership change that cannot be made as asked.
    #[error("{0}")]
    Membership(String),
    /// No node has room for the request.
    #[error("{0}")]
    NoCapacity(String),
    /// A node being added did not answer as that node, or did not catch up in time.
    #[error("node {id} at {addr}: {cause}")]
    NodeUnreachable { id: NodeId, addr: String, cause: String },
    /// Raft on this node has stopped (shutdown or a fatal storage error).
    #[error("this node is shutting down or has failed: {0}")]
    Stopped(String),
    /// The leader answered a forwarded request with this status; passed on unchanged.
    #[error("{}", .0.message())]
    Forwarded(tonic::Status),
    /// A function cannot run: none of its replicas could start; the reason says why.
    #[error("no replica could start: {0}")]
    Unstartable(String),
    /// The request's deadline passed before it could be served.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or a corrupt message between nodes.
    #[error("internal: {0}")]
    Internal(String),
    /// The request cannot be carried out in the state things are in (a sandbox that is not
    /// running, a feature this node lacks); the message says what is missing.
    #[error("{0}")]
    FailedPrecondition(String),
}

impl NodeError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        NodeError::InvalidArgument { field: field.into(), message: message.into() }
    }
}
