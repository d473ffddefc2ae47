//! Container lifecycle (create, start, limits, state, wait, kill, remove, list) and file
//! transfer (tar archives in and out).

use bollard::models::{ContainerStateStatusEnum, ContainerUpdateBody};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};

use super::disk::LABEL_DISK;
use super::error::{is_conflict_with, is_not_found};
use super::sandbox::{container_body, limits_config};
use super::{ContainerSpec, ContainerState, Docker, Limits, RuntimeError};

impl Docker {
    /// Creates (does not start) a sandbox container from `spec` with Flotilla's isolation
    /// defaults (see the [module documentation](crate::runtime)). Returns the container id.
    ///
    /// A missing image whose reference names a registry is pulled first (see
    /// [`super::registry`]); any other missing image is fetched from the handle's image source
    /// (a peer that has it, see [`super::archive`]).
    ///
    /// Errors: [`RuntimeError::ImageNotFound`] when the image is not local (and names no
    /// registry), [`RuntimeError::Pull`] when the pull failed,
    /// [`RuntimeError::Conflict`] when the name is taken, [`RuntimeError::InvalidSpec`] for
    /// limits the engine would read as "unlimited".
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        spec.limits.validate()?;
        let mut options = CreateContainerOptionsBuilder::new();
        if let Some(name) = &spec.name {
            options = options.name(name);
        }
        let disk = match (&self.disks, spec.disk_mib) {
            (Some(disks), Some(mib)) => Some(disks.create(mib).await?),
            _ => None,
        };
        let options = options.build();
        let create = || async {
            self.inner
                .create_container(Some(options.clone()), container_body(spec, disk.as_ref()))
                .await
                .map_err(|e| RuntimeError::for_image(&spec.image, e))
        };
        let mut created = create().await;
        if matches!(created, Err(RuntimeError::ImageNotFound(_))) {
            created = match self.pull_on_demand(&spec.image).await {
                Ok(true) => create().await,
                Ok(false) => match self.fetch_on_demand(&spec.image).await {
                    Ok(true) => create().await,
                    Ok(false) => created,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
        }
        let created = match created {
            Ok(created) => created,
            Err(e) => {
                if let (Some(disks), Some(disk)) = (&self.disks, &disk) {
                    if let Err(e) = disks.release(&disk.key).await {
                        tracing::warn!(disk = %disk.key, error = %e, "could not remove the disk of a container not created");
                    }
                }
                return Err(e);
            }
        };
        for warning in &created.warnings {
            tracing::warn!(container = %created.id, "engine warning on create: {warning}");
        }
        Ok(created.id)
    }

    /// Starts a created container (a no-op when it is already running).
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.start_container(id, None).await.map_err(|e| RuntimeError::for_container(id, e))
    }

    /// Changes the CPU, memory (swap kept equal to memory) and pids limits of a created or
    /// running container, like `docker update`. Lowering memory below what the container
    /// uses now fails with the engine's message.
    pub async fn update_limits(&self, id: &str, limits: &Limits) -> Result<(), RuntimeError> {
        limits.validate()?;
        let host = limits_config(limits);
        let update = ContainerUpdateBody {
            memory: host.memory,
            memory_swap: host.memory_swap,
            nano_cpus: host.nano_cpus,
            pids_limit: host.pids_limit,
            ..Default::default()
        };
        self.inner.update_container(id, update).await.map_err(|e| RuntimeError::for_container(id, e))
    }

    /// The container's state, or `None` when there is no such container.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        let inspect = match self.inner.inspect_container(id, None).await {
            Ok(inspect) => inspect,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let state = inspect.state.unwrap_or_default();
        let exited = matches!(state.status, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD));
        let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
        Ok(Some(ContainerState {
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            exit_code: state.exit_code.filter(|_| exited),
            oom_killed: state.oom_killed.unwrap_or(false),
            labels: labels.into_iter().collect(),
        }))
    }

    /// Waits until the container is not running and returns the exit code of its main process
    /// (128 + n when signal n ended it). Returns at once for a container that was never started.
    pub async fn wait(&self, id: &str) -> Result<i64, RuntimeError> {
        let mut responses = self.inner.wait_container(id, None).boxed();
        match responses.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit code as an error; an empty message means the
            // wait itself went fine.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { error, code })) if error.is_empty() => Ok(code),
            Some(Err(e)) => Err(RuntimeError::for_container(id, e)),
            None => Err(RuntimeError::Engine("the wait for the container's exit ended without an exit code".into())),
        }
    }

    /// Sends `signal` (e.g. `"SIGKILL"`, `"SIGTERM"`, `"9"`) to the main process. A container
    /// that is not running is left as it is, without error. (Nodes end sandboxes with
    /// [`Docker::remove`]; tests use this to stop a container and keep it.)
    #[cfg(test)]
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let options = bollard::query_parameters::KillContainerOptionsBuilder::new().signal(signal).build();
        match self.inner.kill_container(id, Some(options)).await {
            Err(e) if is_conflict_with(&e, "is not running") => Ok(()),
            other => other.map_err(|e| RuntimeError::for_container(id, e)),
        }
    }

    /// Freezes every process in the container (`docker pause`); one already paused is fine.
    pub async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        match self.inner.pause_container(id).await {
            Err(e) if is_conflict_with(&e, "already paused") => Ok(()),
            other => other.map_err(|e| RuntimeError::for_container(id, e)),
        }
    }

    /// Thaws a paused container; one that is not paused is fine.
    pub async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        match self.inner.unpause_container(id).await {
            Err(e) if is_conflict_with(&e, "not paused") => Ok(()),
            other => other.map_err(|e| RuntimeError::for_container(id, e)),
        }
    }

    /// Removes the container, killing it if needed, together with its volumes (the `/work`
    /// volume) or its `/work` disk. A container that is already gone (or being removed) is not an error. One that
    /// is paused is thawed first: under the cgroup v1 freezer its processes cannot die frozen,
    /// and the engine's forced remove would wait for them forever.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        if let Err(e) = self.unpause(id).await {
            tracing::trace!(container = %id, error = %e, "not thawed before removal");
        }
        let disk = match &self.disks {
            Some(_) => self.state(id).await?.and_then(|s| s.labels.get(LABEL_DISK).cloned()),
            None => None,
        };
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.inner.remove_container(id, Some(options)).await {
            Err(e) if is_not_found(&e) || is_conflict_with(&e, "already in progress") => {}
            other => other.map_err(RuntimeError::from)?,
        }
        // Its `/work` disk goes with it (once the container is gone, nothing holds the mount).
        if let (Some(disks), Some(key)) = (&self.disks, disk) {
            disks.release(&key).await?;
        }
        Ok(())
    }

    /// Extracts the tar archive `tar` into the container at directory `dir`, which must exist
    /// and be writable: with the read-only root filesystem that means `/work` or below (the
    /// engine refuses archives into a read-only rootfs even under a tmpfs such as `/tmp`).
    /// (Nodes stream restores with [`Docker::put_archive_stream`] and copy users' files with
    /// [`Docker::tar_in`]; tests use this.)
    #[cfg(test)]
    pub async fn put_archive(&self, id: &str, dir: &str, tar: Vec<u8>) -> Result<(), RuntimeError> {
        let options = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.inner
            .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|e| RuntimeError::for_container(dir, e).naming(id, "the sandbox"))
    }

    /// [`Docker::put_archive`] with the tar streamed from `tar` instead of held in memory.
    pub async fn put_archive_stream(
        &self,
        id: &str,
        dir: &str,
        tar: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let options = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.inner
            .upload_to_container(id, Some(options), bollard::body_try_stream(tar))
            .await
            .map_err(|e| RuntimeError::for_container(dir, e).naming(id, "the sandbox"))
    }

    /// Reads `path` (a file or a directory, recursively) out of the container as a tar
    /// stream. A file comes as one entry named by its base name; a directory as entries under
    /// its base name. A missing container or path ends the stream with
    /// [`RuntimeError::NotFound`].
    pub fn get_archive(
        &self,
        id: &str,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes, RuntimeError>> + Send + 'static {
        let (what, container) = (path.to_string(), id.to_string());
        let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
        self.inner
            .download_from_container(id, Some(options))
            .map_err(move |e| RuntimeError::for_container(&what, e).naming(&container, "the sandbox"))
    }
}
