//! The engine connection and the image calls (existence, listing, `docker import`).

use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::{CreateImageOptionsBuilder, ListImagesOptions, RemoveImageOptionsBuilder};
use bytes::{Bytes, BytesMut};
use futures::{Stream, TryStreamExt};
use tokio::io::AsyncReadExt;

use super::disk::WorkDisks;
use super::error::is_not_found;
use super::{ImageInfo, RuntimeError};

/// How long [`Docker::connect`] waits for the engine to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Read size when streaming a rootfs tar to the engine, in bytes.
const IMPORT_CHUNK_BYTES: usize = 1 << 20;

/// The address used when `DOCKER_HOST` is not set.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// A handle on the local container engine. Cheap to clone; clones share one connection pool.
///
/// A handle belongs to the Tokio runtime it was made on (its connection pool does).
#[derive(Debug, Clone)]
pub struct Docker {
    pub(crate) inner: bollard::Docker,
    /// Where sandboxes' `/work` disks are made ([`Docker::with_work_disks`]); `None`: no
    /// disks, `/work` is an unlimited volume.
    pub(crate) disks: Option<std::sync::Arc<WorkDisks>>,
    /// Registry logins for pulls (see [`super::registry`]); none unless set.
    pub(crate) logins: super::registry::Logins,
    /// Where images come from that neither this engine nor a registry has (see
    /// [`super::archive`]); none unless set.
    pub(crate) source: super::archive::ImageSource,
}

impl Docker {
    /// Connects to the local engine (`DOCKER_HOST`, else `unix:///var/run/docker.sock`),
    /// agrees on an API version (the engine may be older than the client) and pings it.
    ///
    /// Fails with [`RuntimeError::EngineUnreachable`] naming the address when the engine does
    /// not answer within 10 s.
    pub async fn connect() -> Result<Docker, RuntimeError> {
        Self::connect_to(&Self::host(None)).await
    }

    /// The engine address to use: `explicit` (a node's `--docker-host`), else `DOCKER_HOST`,
    /// else `unix:///var/run/docker.sock`.
    pub fn host(explicit: Option<&str>) -> String {
        explicit
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_string())
    }

    /// A handle on the engine at `host` without talking to it: every call fails while
    /// the engine is unreachable. For a node that runs without an engine (control plane only).
    pub fn offline(host: &str) -> Result<Docker, RuntimeError> {
        let host = host.to_string();
        // bollard refuses a Unix socket path that does not exist; then point the handle at a
        // loopback port nothing listens on (the discard port), so calls fail fast instead.
        let inner = bollard::Docker::connect_with_host(&host)
            .or_else(|_| bollard::Docker::connect_with_http("http://127.0.0.1:9", 5, bollard::API_DEFAULT_VERSION))
            .map_err(|e| RuntimeError::EngineUnreachable { host: host.clone(), reason: e.to_string() })?;
        Ok(Docker { inner, disks: None, logins: Default::default(), source: Default::default() })
    }

    /// Connects to the engine at `host` (`unix://...`, `tcp://...` or `http://...`).
    pub async fn connect_to(host: &str) -> Result<Docker, RuntimeError> {
        let unreachable = |reason: String| RuntimeError::EngineUnreachable { host: host.to_string(), reason };
        let client = bollard::Docker::connect_with_host(host).map_err(|e| unreachable(e.to_string()))?;
        let handshake = async {
            let client = client.negotiate_version().await?;
            client.ping().await?;
            Ok::<_, bollard::errors::Error>(client)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
            Ok(Ok(inner)) => Ok(Docker { inner, disks: None, logins: Default::default(), source: Default::default() }),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        }
    }

    /// This handle with sandbox `/work` disks kept in `dir` (see [`super::disk`]): a
    /// container created with [`ContainerSpec::disk_mib`](super::ContainerSpec::disk_mib)
    /// gets one. Where the host cannot make disks the node's log says so and the handle
    /// stays without.
    pub async fn with_work_disks(mut self, dir: std::path::PathBuf) -> Docker {
        self.disks = WorkDisks::open(dir).await.map(std::sync::Arc::new);
        self
    }

    /// Removes every `/work` disk that no container labelled `instance_label` (a node's
    /// containers) holds: leftovers of containers removed while the node was down.
    pub async fn sweep_disks(&self, instance_label: &str) -> Result<(), RuntimeError> {
        let Some(disks) = &self.disks else { return Ok(()) };
        let in_use = self
            .list_named(instance_label)
            .await?
            .into_iter()
            .filter_map(|c| c.labels.get(super::disk::LABEL_DISK).cloned())
            .collect();
        disks.sweep(&in_use).await;
        Ok(())
    }

    /// Whether `image` (a `repo:tag` or an id) exists in the local engine.
    pub async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.inner.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every tagged image of the local engine, one entry per `repo:tag` (untagged, dangling
    /// images are left out since they cannot be named).
    pub async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let summaries = self.inner.list_images(None::<ListImagesOptions>).await?;
        let infos = summaries.into_iter().flat_map(|s| {
            let (id, size, created) = (s.id, s.size, s.created);
            s.repo_tags.into_iter().filter(|tag| tag != "<none>:<none>").map(move |name| ImageInfo {
                name,
                id: id.clone(),
                size_bytes: u64::try_from(size).unwrap_or(0),
                created_unix: created,
            })
        });
        Ok(infos.collect())
    }

    /// Imports the rootfs tar file at `tar_path` as image `name` (like `docker import`).
    ///
    /// `changes` are Dockerfile instructions applied to the image config, e.g. `WORKDIR /work`
    /// or `ENV LANG=C.UTF-8` (allowed: CMD, ENTRYPOINT, ENV, EXPOSE, ONBUILD, USER, VOLUME,
    /// WORKDIR). The tar is streamed, never held in memory. An existing `name` is re-pointed
    /// to the new image, and the old one is removed unless something still uses it.
    pub async fn import_rootfs(&self, name: &str, tar_path: &Path, changes: &[&str]) -> Result<(), RuntimeError> {
        let file = tokio::fs::File::open(tar_path)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("opening {}: {e}", tar_path.display())))?;
        self.import_stream(name, file_chunks(file), changes).await
    }

    /// Imports a rootfs tar held in memory as image `name` (see [`Docker::import_rootfs`]).
    pub(crate) async fn import_tar_bytes(
        &self,
        name: &str,
        tar: Vec<u8>,
        changes: &[&str],
    ) -> Result<(), RuntimeError> {
        let body = futures::stream::once(async move { Ok(Bytes::from(tar)) });
        self.import_stream(name, body, changes).await
    }

    async fn import_stream(
        &self,
        name: &str,
        tar: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        changes: &[&str],
    ) -> Result<(), RuntimeError> {
        let (repo, tag) = split_reference(name);
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(changes.iter().map(|c| c.to_string()).collect())
            .build();
        let previous = self.image_id(name).await?;
        let body = bollard::body_try_stream(tar);
        let progress = self.inner.create_image(Some(options), Some(body), None);
        progress.try_collect::<Vec<_>>().await?;
        tracing::info!(image = name, "imported rootfs");
        if let Some(previous) = previous {
            self.remove_if_replaced(name, &previous).await?;
        }
        Ok(())
    }

    /// The id of image `name`, `None` if there is none.
    pub(crate) async fn image_id(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        match self.inner.inspect_image(name).await {
            Ok(image) => Ok(image.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// After `name` was re-imported, removes the image it named before (now untagged) unless
    /// something still uses it (a container, another tag): re-imports leave no dangling images.
    async fn remove_if_replaced(&self, name: &str, previous: &str) -> Result<(), RuntimeError> {
        if self.image_id(name).await?.as_deref() == Some(previous) {
            return Ok(());
        }
        let options = RemoveImageOptionsBuilder::new().build();
        if let Err(e) = self.inner.remove_image(previous, Some(options), None).await {
            tracing::debug!(image = previous, "previous image of {name} kept: {e}");
        }
        Ok(())
    }
}

/// Splits `repo[:tag]` into repo and tag (`latest` when absent). A colon inside the registry
/// part (`host:5000/repo`) is not a tag separator.
pub(crate) fn split_reference(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    }
}

/// The file as a stream of chunks of at most [`IMPORT_CHUNK_BYTES`].
pub(super) fn file_chunks(file: tokio::fs::File) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = BytesMut::with_capacity(IMPORT_CHUNK_BYTES);
        let n = file.read_buf(&mut buf).await?;
        Ok((n > 0).then(|| (buf.freeze(), file)))
    })
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("flotilla/busybox"), ("flotilla/busybox", "latest"));
        assert_eq!(split_reference("python:3.11"), ("python", "3.11"));
        assert_eq!(split_reference("host:5000/img"), ("host:5000/img", "latest"));
        assert_eq!(split_reference("host:5000/img:v1"), ("host:5000/img", "v1"));
    }
}
