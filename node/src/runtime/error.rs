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
    /// Making, mounting or removing a sandbox's `/work` disk failed on the host (see
    /// [`super::disk`]); the message names the command or file and why.
    #[error("sandbox /work disk: {0}")]
    Disk(String),
    /// Pulling an image from its registry failed (unknown image, unreachable registry, wrong
    /// or missing login); `reason` is the engine's message.
    #[error("pulling {image} failed: {reason}")]
    Pull { image: String, reason: String },
    /// Fetching an image from a peer that has it failed (see `blobs::image`).
    #[error("fetching image {image} from the other nodes failed: {reason}")]
    Fetch { image: String, reason: String },
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

    /// The same error with every mention of engine container `container` (its full id, or
    /// the 12-character short form the engine also prints) replaced by `name`, e.g.
    /// `sandbox sb-…`. The engine's own messages name containers by id ("Container 3f2a… is
    /// paused"); a user knows the sandbox or replica, never the engine's id.
    pub fn naming(self, container: &str, name: &str) -> Self {
        let fix = |s: String| name_container(&s, container, name);
        match self {
            RuntimeError::EngineUnreachable { host, reason } => {
                RuntimeError::EngineUnreachable { host, reason: fix(reason) }
            }
            RuntimeError::ImageNotFound(m) => RuntimeError::ImageNotFound(fix(m)),
            RuntimeError::NotFound(m) => RuntimeError::NotFound(fix(m)),
            RuntimeError::Conflict(m) => RuntimeError::Conflict(fix(m)),
            RuntimeError::InvalidSpec(m) => RuntimeError::InvalidSpec(fix(m)),
            RuntimeError::ImageBuild(m) => RuntimeError::ImageBuild(fix(m)),
            RuntimeError::Disk(m) => RuntimeError::Disk(fix(m)),
            RuntimeError::Pull { image, reason } => RuntimeError::Pull { image, reason: fix(reason) },
            RuntimeError::Fetch { image, reason } => RuntimeError::Fetch { image, reason: fix(reason) },
            RuntimeError::Engine(m) => RuntimeError::Engine(fix(m)),
            RuntimeError::Io(e) => RuntimeError::Engine(fix(e.to_string())),
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

/// `text` with engine container `container` (full id or 12-character short id) called `name`.
pub fn name_container(text: &str, container: &str, name: &str) -> String {
    if container.len() < 12 {
        return text.to_string();
    }
    text.replace(container, name).replace(&container[..12], name)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_ids_are_replaced_by_the_name() {
        let id = "3f2a9c0b1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
        let e = RuntimeError::Conflict(format!("Container {id} is paused, unpause the container before exec"));
        let shown = e.naming(id, "sandbox sb-1").to_string();
        assert_eq!(shown, "conflict: Container sandbox sb-1 is paused, unpause the container before exec");
        let short = RuntimeError::Engine(format!("OCI runtime exec failed: {} not running", &id[..12]));
        assert!(!short.naming(id, "sandbox sb-1").to_string().contains(&id[..12]));
    }
}
