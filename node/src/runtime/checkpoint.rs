//! Memory checkpoints through the engine (CRIU): checkpoint a running container, and start a
//! new container from a checkpoint taken elsewhere.
//!
//! The engine keeps a container's checkpoints in `<engine root>/containers/<id>/checkpoints/
//! <name>/` and has no API to read or upload them, and Docker 20.10 refuses a custom
//! checkpoint dir on start. So a checkpoint is carried as files: read from that folder after
//! `checkpoint`, written into the new container's folder before `start` with the
//! `checkpoint=NAME` query parameter, which bollard has no option for and is added with a
//! request modifier. This needs the node to run on the engine's host with access to its
//! root dir (as root), CRIU 4.x where the engine runs, and the engine in experimental mode.

use std::path::PathBuf;

use bollard::container::{CreateCheckpointOptions, DeleteCheckpointOptions};

use super::error::is_not_found;
use super::{Docker, RuntimeError};

impl Docker {
    /// Why memory checkpoints cannot work on this engine, naming what is missing; `Ok` when
    /// CRIU is installed and the engine runs in experimental mode.
    pub async fn checkpoint_support(&self) -> Result<(), String> {
        let info = self.inner.info().await.map_err(|e| format!("cannot ask the engine: {e}"))?;
        let mut missing = Vec::new();
        if !criu_on_path() {
            missing.push("CRIU (no `criu` executable on PATH; install criu 4.x, see scripts/criu)".to_string());
        }
        if info.experimental_build != Some(true) {
            missing.push(
                "the engine's experimental mode (`\"experimental\": true` in /etc/docker/daemon.json, then restart dockerd)"
                    .to_string(),
            );
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("memory snapshots need {}", missing.join(" and ")))
        }
    }

    /// Checkpoints a running container's processes and memory as `name`, leaving it running
    /// (it is frozen while CRIU dumps it).
    pub async fn checkpoint(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        let options = CreateCheckpointOptions { checkpoint_id: name.to_string(), checkpoint_dir: None, exit: false };
        self.inner.create_checkpoint(id, options).await.map_err(|e| RuntimeError::for_container(id, e))
    }

    /// Deletes checkpoint `name` of container `id`; a missing one is not an error.
    pub async fn delete_checkpoint(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        match self.inner.delete_checkpoint(id, name, None::<DeleteCheckpointOptions>).await {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map_err(|e| RuntimeError::for_container(id, e)),
        }
    }

    /// The folder the engine keeps checkpoint `name` of container `id` in.
    pub async fn checkpoint_dir(&self, id: &str, name: &str) -> Result<PathBuf, RuntimeError> {
        let info = self.inner.info().await?;
        let root = info.docker_root_dir.unwrap_or_else(|| "/var/lib/docker".into());
        let full_id = self
            .inner
            .inspect_container(id, None)
            .await
            .map_err(|e| RuntimeError::for_container(id, e))?
            .id
            .ok_or_else(|| RuntimeError::Engine(format!("container {id} has no id")))?;
        Ok(PathBuf::from(root).join("containers").join(full_id).join("checkpoints").join(name))
    }

    /// Starts a created container from checkpoint `name`, which must already be in its
    /// [`Docker::checkpoint_dir`].
    pub async fn start_from_checkpoint(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        let query = format!("checkpoint={name}");
        let client = self.inner.clone().with_request_modifier(move |mut req| {
            if req.uri().path().ends_with("/start") {
                let uri = req.uri().to_string();
                let sep = if uri.contains('?') { '&' } else { '?' };
                if let Ok(with) = format!("{uri}{sep}{query}").parse() {
                    *req.uri_mut() = with;
                }
            }
            req
        });
        client.start_container(id, None).await.map_err(|e| RuntimeError::for_container(id, e))
    }
}

/// Whether a `criu` executable is on this process's PATH (the engine runs it on this host).
fn criu_on_path() -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join("criu").is_file())).unwrap_or(false)
}
