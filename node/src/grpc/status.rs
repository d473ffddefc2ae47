//! `NodeError` -> `tonic::Status`, the one place errors meet the wire.

use flotilla_raft::Rejection;
use tonic::Status;

use crate::error::NodeError;

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        let msg = e.to_string();
        match e {
            NodeError::NoLeader
            | NodeError::NotLeader(_)
            | NodeError::LeaderUnreachable { .. }
            | NodeError::Stopped(_) => Status::unavailable(msg),
            NodeError::InvalidArgument { .. } | NodeError::Rejected(Rejection::Invalid { .. }) => {
                Status::invalid_argument(msg)
            }
            NodeError::Rejected(
                Rejection::AppNotFound(_)
                | Rejection::SandboxNotFound(_)
                | Rejection::TokenNotFound(_)
                | Rejection::FunctionNotFound(_)
                | Rejection::CallNotFound(_)
                | Rejection::CallExpired(_)
                | Rejection::ScheduleNotFound(_)
                | Rejection::SnapshotNotFound(_),
            ) => Status::not_found(msg),
            NodeError::Rejected(Rejection::Conflict(_)) => Status::already_exists(msg),
            NodeError::Rejected(Rejection::Stale(_) | Rejection::Precondition(_)) => Status::failed_precondition(msg),
            NodeError::Rejected(Rejection::AppStopped(_)) => Status::failed_precondition(msg),
            NodeError::NoCapacity(_) => Status::resource_exhausted(msg),
            // Not "unavailable": a retry would not help, and clients retry those.
            NodeError::Membership(_) | NodeError::NodeUnreachable { .. } => Status::failed_precondition(msg),
            NodeError::Forwarded(status) => status,
            NodeError::Unstartable(_) => Status::failed_precondition(msg),
            NodeError::DeadlineExceeded(_) => Status::deadline_exceeded(msg),
            NodeError::Internal(_) => Status::internal(msg),
            NodeError::FailedPrecondition(_) => Status::failed_precondition(msg),
        }
    }
}
