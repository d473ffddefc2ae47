//! The SDK's one error type. Server statuses are mapped here, in one place.

use tonic::Code;

/// Everything a Flotilla call can fail with, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is wrong; the message names the field. Retrying will not help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The app spec failed to parse or validate before it was sent.
    #[error("invalid app spec: {0}")]
    Spec(#[from] crate::spec::SpecError),
    /// The name or id is taken (e.g. a live sandbox already has this name).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request conflicts with the cluster's current state (e.g. removing the last voter).
    #[error("rejected: {0}")]
    FailedPrecondition(String),
    /// No node has room for the request (CPU, memory). Retry once capacity frees up.
    #[error("no capacity: {0}")]
    NoCapacity(String),
    /// No endpoint could serve the request in time (nodes down, no leader). Safe to retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call took longer than its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The function ran and failed (non-zero exit, timeout, an error from the worker,
    /// malformed worker output), or the call was cancelled; the message says which.
    #[error("function failed: {0}")]
    FunctionFailed(String),
    /// The token was missing or wrong.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The server failed in a way the caller cannot fix.
    #[error("server error: {0}")]
    Internal(String),
}

/// Result with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether another endpoint, or the same one a little later, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// Names the endpoint an `Unavailable` error came from ("node http://… unreachable (…)").
    pub(crate) fn on_endpoint(self, endpoint: &str) -> Error {
        match self {
            Error::Unavailable(m) if m.starts_with(UNREACHABLE) => Error::Unavailable(format!("node {endpoint} {m}")),
            Error::Unavailable(m) => Error::Unavailable(format!("node {endpoint}: {m}")),
            other => other,
        }
    }
}

/// How the message of an error that never got an answer from the node starts.
const UNREACHABLE: &str = "unreachable";

/// The innermost cause of a status made on this side of the connection (a refused or lost
/// connection), or `None` for a status the node sent, which carries no source.
fn transport_cause(status: &tonic::Status) -> Option<String> {
    let mut cause: &(dyn std::error::Error + 'static) = std::error::Error::source(status)?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

impl From<tonic::Status> for Error {
    /// A status the node sent maps by its code. A failure of the connection itself (refused,
    /// reset, closed mid-request) is `Unavailable`: the node is unreachable, and the request
    /// may or may not have been carried out, so it is retried on another endpoint. That is
    /// safe because every request that creates something carries a request id the catalog
    /// deduplicates, and the others are reads or end in the same state when repeated.
    fn from(status: tonic::Status) -> Self {
        let msg = status.message().to_string();
        // tonic reports its own request timeout as a Cancelled status with a source, too.
        let client_timeout = status.code() == Code::Cancelled && msg.contains("Timeout expired");
        if let Some(cause) = transport_cause(&status).filter(|_| !client_timeout) {
            return Error::Unavailable(format!("{UNREACHABLE} ({cause})"));
        }
        match status.code() {
            Code::NotFound => Error::NotFound(msg),
            Code::InvalidArgument | Code::OutOfRange => Error::InvalidArgument(msg),
            Code::FailedPrecondition | Code::Aborted => Error::FailedPrecondition(msg),
            Code::AlreadyExists => Error::AlreadyExists(msg),
            Code::Unavailable => Error::Unavailable(msg),
            Code::ResourceExhausted => Error::NoCapacity(msg),
            Code::DeadlineExceeded => Error::Timeout(msg),
            // tonic reports the client-side request timeout as Cancelled.
            Code::Cancelled if msg.contains("Timeout expired") => Error::Timeout(msg),
            Code::Unauthenticated | Code::PermissionDenied => Error::Unauthenticated(msg),
            _ => Error::Internal(format!("{:?}: {msg}", status.code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection lost mid-request is a retryable "unreachable", never a raw transport error.
    #[test]
    fn lost_connections_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer");
        let err = Error::from(tonic::Status::from_error(Box::new(io))).on_endpoint("http://127.0.0.1:7101");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.to_string(), "unavailable: node http://127.0.0.1:7101 unreachable (connection reset by peer)");
    }

    /// A status the node sent keeps its meaning.
    #[test]
    fn statuses_from_the_node_map_by_code() {
        assert!(matches!(Error::from(tonic::Status::not_found("sandbox sb-1")), Error::NotFound(_)));
        assert!(matches!(Error::from(tonic::Status::unknown("boom")), Error::Internal(_)));
        let no_leader = Error::from(tonic::Status::unavailable("no leader")).on_endpoint("http://a:1");
        assert_eq!(no_leader.to_string(), "unavailable: node http://a:1: no leader");
    }
}
