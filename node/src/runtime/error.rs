//! The error type of the container runtime and its mapping from engine (bollard) errors.
//!
//! The engine answers "not found" with HTTP 404 for containers, images and paths alike, so the
//! mapping depends on what the call was about: [`RuntimeError::for_container`] and
//! [`RuntimeError::for_image`] say which; everything else goes through `From`.

use bollard::errors::Error as BollardError;

/// What can go wrong when talking to the container engine.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be reached at all (no socket, daemon down, wrong `DOCKER_HOST`).
    #[error(
        "cannot reach the Docker engine at {host}: {reason} \
         (is dockerd running? DOCKER_HOST overrides the address)"
    )]
    EngineUnreachable {
        /// The address tried, e.g. `unix:///var/run/docker.sock`.
        host: String,
        /// Why the connection or the ping failed.
        reason: String,
    },
    /// The named image is not present in the local engine (and nothing can be pulled).
    #[error("image not found: {0}")]
    ImageNotFound(String),
    /// No such container (or, for archive calls, no such path in it).
    #[error("not found: {0}")]
    NotFound(String),
    /// The engine refused because of a conflicting state, e.g. a container name already in use.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A spec the runtime refuses before asking the engine (e.g. a zero limit, which the engine
    /// would read as "unlimited").
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// Building an image failed before the engine got involved (a missing host tool such as
    /// busybox-static or debootstrap, or the tool failing); the message says what to install.
    #[error("image build failed: {0}")]
    ImageBuild(String),
    /// Any other engine failure, with the engine's own message.
    #[error("docker engine error: {0}")]
    Engine(String),
    /// A local I/O failure (reading a rootfs tar, talking to a child process, ...).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<BollardError> for RuntimeError {
    fn from(err: BollardError) -> Self {
        match err {
            BollardError::DockerResponseServerError { status_code: 409, message } => RuntimeError::Conflict(message),
            BollardError::DockerResponseServerError { status_code, message } => {
                RuntimeError::Engine(format!("HTTP {status_code}: {message}"))
            }
            BollardError::IOError { err } => RuntimeError::Io(err),
            other => RuntimeError::Engine(other.to_string()),
        }
    }
}

impl RuntimeError {
    /// Maps an error of a call about container `id`: 404 becomes [`RuntimeError::NotFound`].
    pub(crate) fn for_container(id: &str, err: BollardError) -> Self {
        if is_not_found(&err) {
            RuntimeError::NotFound(id.to_string())
        } else {
            err.into()
        }
    }

    /// Maps an error of a call about image `name`: 404 becomes [`RuntimeError::ImageNotFound`].
    pub(crate) fn for_image(name: &str, err: BollardError) -> Self {
        if is_not_found(&err) {
            RuntimeError::ImageNotFound(name.to_string())
        } else {
            err.into()
        }
    }
}

/// Whether the engine answered 404.
pub(crate) fn is_not_found(err: &BollardError) -> bool {
    matches!(err, BollardError::DockerResponseServerError { status_code: 404, .. })
}

/// Whether the engine answered 409 with a message containing `needle`.
pub(crate) fn is_conflict_with(err: &BollardError, needle: &str) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError { status_code: 409, message } if message.contains(needle)
    )
}
