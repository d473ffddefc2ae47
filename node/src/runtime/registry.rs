//! Images from elsewhere: pulls from a registry (with the cluster's stored login), builds
//! from a context tar (the engine's build API), removal, and the on-demand pull that
//! [`Docker::create`] falls back to when a container's image is missing.
//!
//! # Design
//!
//! - **Which references are pulled on demand.** Only a reference whose first path component
//!   names a registry host (`127.0.0.1:5000/team/app:1`, `registry.example.com/app`,
//!   `localhost/app`): [`registry_of`]. A plain `flotilla/busybox` or `python:3.12` would go
//!   to Docker Hub, which a self-hosted cluster often cannot reach, so a missing local image
//!   of that kind stays an [`RuntimeError::ImageNotFound`] with the hint to build or import it.
//! - **Credentials.** A [`Docker`] handle carries a [`Logins`] lookup (the node wires it to
//!   the catalog's registry logins). A pull sends the login for the reference's registry, if
//!   any, to the engine (`X-Registry-Auth`); it is never logged.
//! - **Builds** use the engine's classic builder with `rm` and `forcerm`, so a failed build
//!   leaves no intermediate containers, and the tag exists only once the build succeeded.
//!   The build never pulls: `FROM` names an image this engine already has.
//! - **Errors** are [`RuntimeError::Pull`] / [`RuntimeError::ImageBuild`] with the engine's
//!   own message (unknown manifest, `unauthorized`, connection refused, a failed `RUN`).

use std::sync::Arc;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder, RemoveImageOptionsBuilder};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::docker::split_reference;
use super::error::is_not_found;
use super::{Docker, RuntimeError};

/// A username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

type Lookup = dyn Fn(&str) -> Option<Credentials> + Send + Sync;

/// Finds the login for a registry (`host[:port]`). Empty by default: pulls go anonymously.
#[derive(Clone, Default)]
pub struct Logins(Option<Arc<Lookup>>);

impl Logins {
    pub fn new(lookup: impl Fn(&str) -> Option<Credentials> + Send + Sync + 'static) -> Self {
        Logins(Some(Arc::new(lookup)))
    }

    fn for_registry(&self, registry: &str) -> Option<Credentials> {
        self.0.as_ref().and_then(|f| f(registry))
    }
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Logins(catalog)" } else { "Logins(none)" })
    }
}

/// The registry host a reference names, if its first path component is one (contains a `.`
/// or a `:`, or is `localhost`), as Docker reads references.
pub fn registry_of(reference: &str) -> Option<&str> {
    let (first, _) = reference.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

impl Docker {
    /// Uses `logins` for this handle's pulls (explicit and on demand).
    pub fn with_logins(mut self, logins: Logins) -> Docker {
        self.logins = logins;
        self
    }

    /// Pulls `reference` from its registry, with this handle's login for that registry if
    /// there is one. Calls `progress` with each of the engine's status lines. Returns the
    /// image id.
    pub async fn pull(&self, reference: &str, progress: impl Fn(&str)) -> Result<String, RuntimeError> {
        let registry = registry_of(reference);
        let login = registry.and_then(|r| self.logins.for_registry(r));
        let no_login = registry.filter(|_| login.is_none());
        let failed = |reason: String| {
            let reason = match no_login {
                // The engine's words for a refused anonymous pull vary (401, or an HTTP/HTTPS
                // mix-up after its fallback); say what may be missing.
                Some(r) => format!("{reason} (no login is stored for {r}: `flotilla image login {r}` if it needs one)"),
                None => reason,
            };
            RuntimeError::Pull { image: reference.to_string(), reason }
        };
        let options = match reference.split_once('@') {
            Some(_) => CreateImageOptionsBuilder::new().from_image(reference).build(),
            None => {
                let (repo, tag) = split_reference(reference);
                CreateImageOptionsBuilder::new().from_image(repo).tag(tag).build()
            }
        };
        let credentials = registry.zip(login).map(|(r, c)| DockerCredentials {
            username: Some(c.username),
            password: Some(c.password),
            serveraddress: Some(r.to_string()),
            ..Default::default()
        });
        let mut stream = self.inner.create_image(Some(options), None, credentials);
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| failed(engine_message(e)))?;
            if let Some(status) = info.status {
                let line = match (info.id, info.progress_detail.and_then(|p| p.current.zip(p.total))) {
                    (Some(id), Some((current, total))) => format!("{id}: {status} {current}/{total} bytes"),
                    (Some(id), None) => format!("{id}: {status}"),
                    (None, _) => status,
                };
                progress(&line);
            }
        }
        let id = self.inner.inspect_image(reference).await.map_err(|e| failed(engine_message(e)))?.id;
        tracing::info!(image = reference, "pulled");
        Ok(id.unwrap_or_default())
    }

    /// Pulls `image` if it names a registry ([`registry_of`]); `Ok(false)` when it does not
    /// (nothing was tried). What [`Docker::create`] does when the image is missing.
    pub(crate) async fn pull_on_demand(&self, image: &str) -> Result<bool, RuntimeError> {
        if registry_of(image).is_none() {
            return Ok(false);
        }
        tracing::info!(image, "image missing: pulling it before the container is created");
        self.pull(image, |line| tracing::debug!(image, "{line}")).await?;
        Ok(true)
    }

    /// Builds `context` (a tar stream of the build context) with the Dockerfile at
    /// `dockerfile` inside it, and tags the result `tag`. Calls `progress` with each line of
    /// the build output. Returns the image id.
    ///
    /// Fails with [`RuntimeError::ImageBuild`] carrying the engine's message (a failed step,
    /// a `FROM` image this engine lacks, a bad Dockerfile); the tag is then left as it was.
    pub async fn build(
        &self,
        tag: &str,
        dockerfile: &str,
        context: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        progress: impl Fn(&str),
    ) -> Result<String, RuntimeError> {
        let options = BuildImageOptionsBuilder::new().dockerfile(dockerfile).t(tag).rm(true).forcerm(true).build();
        let mut stream = self.inner.build_image(options, None, Some(bollard::body_try_stream(context)));
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| RuntimeError::ImageBuild(engine_message(e)))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::ImageBuild(message));
            }
            for line in info.stream.iter().chain(info.status.iter()).flat_map(|s| s.lines()) {
                if !line.trim().is_empty() {
                    progress(line);
                }
            }
        }
        let id = self.inner.inspect_image(tag).await.map_err(|e| RuntimeError::for_image(tag, e))?.id;
        tracing::info!(image = tag, "built");
        Ok(id.unwrap_or_default())
    }

    /// Removes the image `name` (a tag: other tags of the same image stay). `Ok(false)` when
    /// there is no such image; [`RuntimeError::Conflict`] when a container uses it.
    pub async fn remove_image(&self, name: &str) -> Result<bool, RuntimeError> {
        let options = RemoveImageOptionsBuilder::new().build();
        match self.inner.remove_image(name, Some(options), None).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The engine's own words for a failed call.
fn engine_message(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error,
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            format!("{message} (HTTP {status_code})")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::registry_of;

    #[test]
    fn only_references_naming_a_registry_host_are_pulled_on_demand() {
        assert_eq!(registry_of("127.0.0.1:5000/team/bb:1"), Some("127.0.0.1:5000"));
        assert_eq!(registry_of("registry.example.com/app"), Some("registry.example.com"));
        assert_eq!(registry_of("localhost/app:2"), Some("localhost"));
        assert_eq!(registry_of("flotilla/busybox"), None);
        assert_eq!(registry_of("python:3.12"), None);
        assert_eq!(registry_of("busybox"), None);
    }
}
