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
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let msg = status.message().to_string();
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
