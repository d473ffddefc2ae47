//! Sandboxes: create, look up, list, wait, terminate, and copy files in and out.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flotilla_proto::control as pb;
use flotilla_proto::worker::{worker_client::WorkerClient, ArchiveChunk, GetArchiveRequest};
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::exec::ExecBuilder;

/// A sandbox as the cluster records it.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    pub id: String,
    pub name: Option<String>,
    /// Node that hosts it.
    pub node: u64,
    /// `pending`, `running`, `snapshotting`, `restoring`, `terminated` or `failed`.
    pub state: String,
    pub image: String,
    pub generation: u64,
    /// The command's own exit code, 124 on timeout, 137 when terminated.
    pub exit_code: Option<i64>,
    /// Why it ended ("exited", "timeout", "idle timeout", "terminated", or the error).
    pub reason: Option<String>,
    /// Latest ready snapshot.
    pub last_snapshot: Option<String>,
    /// Restored on a live node from its latest snapshot if its node dies.
    pub restore_on_failure: bool,
    /// Seconds between automatic snapshots; 0 = none.
    pub snapshot_every_s: u64,
    /// The snapshot it was created from.
    pub from_snapshot: Option<String>,
    pub timeout_s: u64,
    pub idle_timeout_s: u64,
    pub tags: BTreeMap<String, String>,
    /// GPUs asked for (`MODEL:N` or `any:N`).
    pub gpu: Option<String>,
    /// Size of `/work`, MiB (writes past it get ENOSPC); 0 for sandboxes made before sizes
    /// existed (no limit).
    pub disk_mib: u64,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

impl From<pb::Sandbox> for SandboxInfo {
    fn from(s: pb::Sandbox) -> Self {
        let spec = s.spec.unwrap_or_default();
        SandboxInfo {
            id: s.id,
            name: s.name,
            node: s.node,
            state: s.state,
            image: s.image,
            generation: s.generation,
            exit_code: s.exit_code,
            reason: s.reason,
            last_snapshot: s.last_snapshot,
            restore_on_failure: spec.restore_on_failure,
            snapshot_every_s: spec.snapshot_every_s,
            from_snapshot: spec.from_snapshot,
            timeout_s: spec.timeout_s,
            idle_timeout_s: spec.idle_timeout_s,
            tags: spec.tags.into_iter().collect(),
            gpu: spec.gpu,
            disk_mib: spec.disk_mib,
            created_at_ms: s.created_at_ms,
            started_at_ms: s.started_at_ms,
            finished_at_ms: s.finished_at_ms,
        }
    }
}

/// Builds a sandbox: `client.sandbox().image("flotilla/busybox").create().await?`.
#[derive(Clone)]
pub struct SandboxBuilder {
    client: Client,
    spec: pb::SandboxSpec,
    name: Option<String>,
    wait: bool,
}

impl SandboxBuilder {
    pub(crate) fn new(client: Client) -> Self {
        let spec = pb::SandboxSpec { image: "flotilla/busybox".into(), ..Default::default() };
        Self { client, spec, name: None, wait: true }
    }

    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.spec.image = image.into();
        self
    }
    /// Entrypoint; without one the sandbox idles, waiting for execs.
    pub fn command<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cmd: I) -> Self {
        self.spec.command = cmd.into_iter().map(Into::into).collect();
        self
    }
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.env.insert(key.into(), value.into());
        self
    }
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.spec.workdir = Some(dir.into());
        self
    }
    /// CPU cores (default 1; 0 also means the default). The server refuses negative,
    /// non-finite and over-64 values with [`Error::InvalidArgument`](crate::Error) naming `spec.cpu`.
    pub fn cpu(mut self, cores: f64) -> Self {
        self.spec.cpu = cores;
        self
    }
    /// Memory limit in MiB (default 512; 0 also means the default); 16 to 1048576.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.spec.memory_mib = mib;
        self
    }
    /// Size of `/work` in MiB (default 1024; 0 also means the default); 16 to 1048576.
    /// Writes past it fail inside the sandbox with "No space left on device".
    pub fn disk_mib(mut self, mib: u64) -> Self {
        self.spec.disk_mib = mib;
        self
    }
    /// Ends the sandbox (exit 124) this long after it starts, in whole seconds rounded up;
    /// `Duration::ZERO` means no timeout (the default).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.spec.timeout_s = whole_seconds(t);
        self
    }
    /// Ends the sandbox (exit 124) after this long with no exec running and no input;
    /// `Duration::ZERO` means none (the default).
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.spec.idle_timeout_s = whole_seconds(t);
        self
    }
    /// No network but loopback.
    pub fn block_network(mut self, block: bool) -> Self {
        self.spec.block_network = block;
        self
    }
    /// A writable root filesystem (so package installs work); read-only by default.
    pub fn writable_rootfs(mut self, writable: bool) -> Self {
        self.spec.writable_rootfs = writable;
        self
    }
    /// GPUs for the sandbox: `MODEL:N` (e.g. `H100:1`) or `any:N`. The container sees exactly
    /// the GPUs leased to it.
    pub fn gpu(mut self, gpu: impl Into<String>) -> Self {
        self.spec.gpu = Some(gpu.into());
        self
    }
    /// `runc` (default) or `runsc` (gVisor).
    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        self.spec.runtime = runtime.into();
        self
    }
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.tags.insert(key.into(), value.into());
        self
    }
    /// A name, unique among live sandboxes.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Creates the sandbox from a snapshot, on any node: its files (and, for a memory
    /// snapshot, its processes) are back. Image, command, env and limits come from the
    /// snapshot; timeouts, tags and failover settings from this builder.
    pub fn from_snapshot(self, snapshot: &crate::SnapshotInfo) -> Self {
        self.from_snapshot_id(&snapshot.id)
    }
    /// [`Self::from_snapshot`] by snapshot id.
    pub fn from_snapshot_id(mut self, id: &str) -> Self {
        self.spec.from_snapshot = Some(id.to_string());
        self
    }
    /// If the sandbox's node dies, restore it (same id) on a live node from its latest
    /// ready snapshot.
    pub fn restore_on_failure(mut self, yes: bool) -> Self {
        self.spec.restore_on_failure = yes;
        self
    }
    /// Take a filesystem snapshot this often (at least 5 s); the newest is kept.
    pub fn snapshot_every(mut self, every: Duration) -> Self {
        self.spec.snapshot_every_s = every.as_secs();
        self
    }
    /// Return as soon as the sandbox is recorded instead of once it runs.
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    /// Creates the sandbox. By default returns once it runs; a sandbox that failed to start
    /// is an error with the reason (e.g. the image is missing on its node).
    pub async fn create(self) -> Result<Sandbox> {
        let req = pb::CreateSandboxRequest {
            spec: Some(self.spec),
            name: self.name,
            wait_running: self.wait,
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        // With `wait` the server holds the reply until the sandbox runs (at most 120 s).
        let info: SandboxInfo = self
            .client
            .control_for(Duration::from_secs(130), |mut c| {
                let req = Client::tagged(req.clone(), &req.request_id);
                async move { c.create_sandbox(req).await }
            })
            .await?
            .into();
        if info.state == "failed" {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {} failed to start: {}",
                info.id,
                info.reason.as_deref().unwrap_or("unknown reason")
            )));
        }
        Ok(Sandbox { client: self.client, id: info.id.clone(), info })
    }
}

/// A handle on one sandbox.
#[derive(Clone)]
pub struct Sandbox {
    client: Client,
    /// `sb-…`
    pub id: String,
    /// The record as of the last call that returned it.
    pub info: SandboxInfo,
}

impl Client {
    /// Starts building a sandbox.
    pub fn sandbox(&self) -> SandboxBuilder {
        SandboxBuilder::new(self.clone())
    }

    /// A sandbox by id (`sb-…`) or by name.
    pub async fn sandbox_from_id(&self, id: &str) -> Result<Sandbox> {
        let info = self.sandbox_info(id).await?;
        Ok(Sandbox { client: self.clone(), id: info.id.clone(), info })
    }

    /// The live sandbox with this name.
    pub async fn sandbox_from_name(&self, name: &str) -> Result<Sandbox> {
        self.sandbox_from_id(name).await
    }

    /// The record of a sandbox by id or name.
    pub async fn sandbox_info(&self, key: &str) -> Result<SandboxInfo> {
        let req = pb::GetSandboxRequest { id: key.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.get_sandbox(req).await }
        })
        .await
        .map(Into::into)
    }

    /// Live sandboxes, or all of them with `all`, optionally only those with these tags.
    pub async fn list_sandboxes(&self, all: bool, tags: BTreeMap<String, String>) -> Result<Vec<SandboxInfo>> {
        let req = pb::ListSandboxesRequest { all, tags: tags.into_iter().collect() };
        let reply = self
            .control(|mut c| {
                let req = req.clone();
                async move { c.list_sandboxes(req).await }
            })
            .await?;
        Ok(reply.sandboxes.into_iter().map(Into::into).collect())
    }

    /// Ends a sandbox (exit 137). Terminating an ended sandbox is not an error.
    pub async fn terminate_sandbox(&self, key: &str) -> Result<SandboxInfo> {
        let req = pb::GetSandboxRequest { id: key.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.terminate_sandbox(req).await }
        })
        .await
        .map(Into::into)
    }

    /// Waits until the sandbox has ended, or `timeout` passes (then returns it still live).
    /// `Duration::ZERO` waits as long as `None` does (the server's limit, an hour).
    pub async fn wait_sandbox(&self, key: &str, timeout: Option<Duration>) -> Result<SandboxInfo> {
        let timeout = timeout.filter(|t| !t.is_zero());
        let req = pb::WaitSandboxRequest { id: key.to_string(), timeout_s: timeout.map_or(0, whole_seconds) };
        // The server holds the reply until the sandbox ends or `timeout` (at most an hour).
        let bound = timeout.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(10);
        self.control_for(bound, |mut c| {
            let req = req.clone();
            async move { c.wait_sandbox(req).await }
        })
        .await
        .map(Into::into)
    }
}

impl Sandbox {
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Starts building an exec of `cmd` in this sandbox.
    pub fn exec<I: IntoIterator<Item = S>, S: Into<String>>(&self, cmd: I) -> ExecBuilder {
        ExecBuilder::new(self.client.clone(), self.id.clone(), cmd.into_iter().map(Into::into).collect())
    }

    /// Refreshes and returns the record.
    pub async fn refresh(&mut self) -> Result<&SandboxInfo> {
        self.info = self.client.sandbox_info(&self.id).await?;
        Ok(&self.info)
    }

    /// Waits for the sandbox to end.
    pub async fn wait(&mut self) -> Result<&SandboxInfo> {
        self.info = self.client.wait_sandbox(&self.id, None).await?;
        Ok(&self.info)
    }

    pub async fn terminate(&mut self) -> Result<&SandboxInfo> {
        self.info = self.client.terminate_sandbox(&self.id).await?;
        Ok(&self.info)
    }

    /// Extracts a tar archive into folder `dir` (absolute, existing) of the sandbox.
    pub async fn put_archive(&self, dir: &str, tar: Vec<u8>) -> Result<u64> {
        const CHUNK: usize = 1 << 20;
        let mut chunks: Vec<ArchiveChunk> = tar
            .chunks(CHUNK)
            .map(|c| ArchiveChunk { sandbox_id: String::new(), path: String::new(), data: c.to_vec() })
            .collect();
        if chunks.is_empty() {
            chunks.push(ArchiveChunk::default());
        }
        chunks[0].sandbox_id = self.id.clone();
        chunks[0].path = dir.to_string();
        self.client
            .on_endpoints(|channel| {
                let chunks = chunks.clone();
                async move {
                    let mut w = WorkerClient::new(channel).max_decoding_message_size(64 << 20);
                    Ok(w.put_archive(futures::stream::iter(chunks)).await?.into_inner().bytes)
                }
            })
            .await
    }

    /// A file or folder of the sandbox as a tar archive.
    pub async fn get_archive(&self, path: &str) -> Result<Vec<u8>> {
        let req = GetArchiveRequest { sandbox_id: self.id.clone(), path: path.to_string() };
        self.client
            .on_endpoints(|channel| {
                let req = req.clone();
                async move {
                    let mut w = WorkerClient::new(channel).max_decoding_message_size(64 << 20);
                    let mut stream = w.get_archive(req).await?.into_inner();
                    let mut out = Vec::new();
                    while let Some(chunk) = stream.message().await? {
                        out.extend_from_slice(&chunk.data);
                    }
                    Ok(out)
                }
            })
            .await
    }

    /// Copies a local file or folder into folder `dir` of the sandbox, keeping its name.
    pub async fn copy_in(&self, local: &Path, dir: &str) -> Result<u64> {
        let name = local
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("source: {} has no file name", local.display())))?
            .to_owned();
        self.put_archive(dir, local_tar(local, name).await?).await
    }

    /// Copies a local file or folder to `dest` (an absolute path, `/tmp` included) in the
    /// sandbox like cp(1): into `dest` under its own name when `dest` is an existing folder;
    /// otherwise it becomes `dest` itself (a file under a new name, or a new folder), whose
    /// folder must exist. Symbolic links are copied as links, never followed.
    pub async fn upload(&self, local: &Path, dest: &str) -> Result<u64> {
        if !dest.starts_with('/') {
            return Err(Error::InvalidArgument(format!("destination: {dest:?} is not an absolute path")));
        }
        let trimmed = dest.trim_end_matches('/');
        let (parent, name) = match trimmed.rsplit_once('/') {
            Some((parent, name)) if !name.is_empty() => (if parent.is_empty() { "/" } else { parent }, name),
            _ => ("/", ""),
        };
        // One exec tells whether `dest` is a folder, or else whether its folder exists.
        let probe = r#"if [ -d "$1" ]; then echo folder; elif [ -d "$2" ]; then echo parent; fi"#;
        let found = self.exec(["sh", "-c", probe, "sh", dest, parent]).output().await?;
        match String::from_utf8_lossy(&found.stdout).trim() {
            "folder" => self.copy_in(local, dest).await,
            "parent" if !name.is_empty() => {
                let tar = local_tar(local, std::ffi::OsStr::new(name).to_owned()).await?;
                self.put_archive(parent, tar).await
            }
            _ => Err(Error::NotFound(format!("destination {}:{dest}: folder {parent} does not exist", self.id))),
        }
    }

    /// Copies a file or folder of the sandbox into the local folder `dir` (created if needed).
    pub async fn copy_out(&self, path: &str, dir: &Path) -> Result<()> {
        let tar = self.get_archive(path).await?;
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            tar::Archive::new(std::io::Cursor::new(tar)).unpack(&dir)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::InvalidArgument(format!("destination: {e}")))
    }

    /// Copies a file or folder of the sandbox to the local `dest` like cp(1): into `dest`
    /// under its own name when `dest` is an existing folder; otherwise it becomes `dest`
    /// itself (a file under a new name, or a new folder), whose parent must exist. Unpacking
    /// is symlink-safe as in [`Sandbox::copy_out`].
    pub async fn download(&self, path: &str, dest: &Path) -> Result<()> {
        let tar = self.get_archive(path).await?;
        let shown = dest.display().to_string();
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if dest.is_dir() {
                return tar::Archive::new(std::io::Cursor::new(tar)).unpack(&dest);
            }
            let name = dest.file_name().ok_or_else(|| std::io::Error::other("it has no file name"))?.to_owned();
            let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(std::io::Error::other(format!("folder {} does not exist", parent.display())));
            }
            tar::Archive::new(std::io::Cursor::new(renamed(tar, &name)?)).unpack(parent)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::InvalidArgument(format!("destination {shown}: {e}")))
    }
}

/// A tar of the local file or folder `local` with its top entry named `name`; symbolic links
/// are stored as links.
async fn local_tar(local: &Path, name: std::ffi::OsString) -> Result<Vec<u8>> {
    let local = local.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        if local.is_dir() {
            b.append_dir_all(&name, &local)?;
        } else {
            b.append_path_with_name(&local, &name)?;
        }
        b.into_inner()
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
    .map_err(|e| Error::InvalidArgument(format!("source: {e}")))
}

/// The archive of one file or folder (entries under its base name) with that top name
/// replaced by `name`; hard-link targets move with it, symlink targets are left as written.
fn renamed(tar: Vec<u8>, name: &std::ffi::OsStr) -> std::io::Result<Vec<u8>> {
    let top = |p: &Path| {
        let rest = p.components().skip(1).collect::<std::path::PathBuf>();
        if rest.as_os_str().is_empty() {
            std::path::PathBuf::from(name)
        } else {
            Path::new(name).join(rest)
        }
    };
    let mut out = tar::Builder::new(Vec::new());
    for entry in tar::Archive::new(std::io::Cursor::new(tar)).entries()? {
        let mut entry = entry?;
        let path = top(&entry.path()?);
        let mut header = entry.header().clone();
        match header.entry_type() {
            kind @ (tar::EntryType::Link | tar::EntryType::Symlink) => {
                let Some(target) = entry.link_name()?.map(|t| t.into_owned()) else { continue };
                let target = if kind == tar::EntryType::Link { top(&target) } else { target };
                out.append_link(&mut header, &path, target)?;
            }
            _ => out.append_data(&mut header, &path, &mut entry)?,
        }
    }
    out.into_inner()
}

/// A timeout in the whole seconds the API takes, rounded up, so a short timeout is never
/// sent as 0, which the API reads as "none"; `Duration::ZERO` stays 0, "none".
pub(crate) fn whole_seconds(t: Duration) -> u64 {
    t.as_secs() + u64::from(t.subsec_nanos() > 0)
}
