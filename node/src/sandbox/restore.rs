//! Restoring a sandbox generation from a snapshot into a new container on this node (see
//! [`super::snapshot`] for the blob formats).
//!
//! The blob is first made local ([`crate::blobs::obtain`]: this node's copy, else a
//! replica's, repairing bad copies on the way); every byte is checked as the restore reads
//! it, and a copy that fails is replaced and the restore tried once more. The container is created stopped;
//! the files go in while it is stopped, so its command starts with them; a memory snapshot's
//! checkpoint is copied into the engine's folder for the new container, which then starts
//! from it with its processes and memory as they were.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flotilla_raft::{Sandbox, Snapshot, SnapshotKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::actor::spec_for;
use super::snapshot::{CHECKPOINT_DIR, WORK, WORK_TAR};
use super::{container_name, SandboxHost};
use crate::blobs::{BlobReader, BlobStore, LocalCheck};
use crate::runtime::RuntimeError;

/// Bytes per message streamed into the engine.
const PIPE_CHUNK: usize = 1 << 20;
/// Messages buffered between the blob reader and the engine.
const PIPE_DEPTH: usize = 8;

fn failed(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Io(std::io::Error::other(e.to_string()))
}

/// An `io::Write` that sends what is written as chunks on a channel (from a blocking thread).
struct Pipe {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIPE_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the engine stopped reading"))?;
        }
        Ok(())
    }
}

/// Restores `record` (its current generation) from `snap`; returns the started container.
pub async fn restore(host: &SandboxHost, record: &Sandbox, snap: &Snapshot) -> Result<String, RuntimeError> {
    let obtain = |check| crate::blobs::obtain(&host.cluster, &host.blobs, snap, check, |_, _| {});
    obtain(LocalCheck::Present).await.map_err(failed)?;
    match restore_once(host, record, snap).await {
        Ok(id) => Ok(id),
        Err(e) => {
            // The local copy may have failed its check on the way (its bad chunks are gone
            // now): get a good one and try once more.
            tracing::warn!(sandbox = %record.id, snapshot = %snap.id, error = %e, "restore failed; checking the copy and retrying");
            obtain(LocalCheck::Verify).await.map_err(failed)?;
            restore_once(host, record, snap).await
        }
    }
}

async fn restore_once(host: &SandboxHost, record: &Sandbox, snap: &Snapshot) -> Result<String, RuntimeError> {
    let docker = &host.docker;
    let spec = spec_for(host, record);
    let id = match docker.create(&spec).await {
        Err(RuntimeError::Conflict(_)) => {
            docker.remove(&container_name(&record.id, record.generation)).await?;
            docker.create(&spec).await?
        }
        other => other?,
    };
    match fill_and_start(host, &id, snap).await {
        Ok(()) => {
            tracing::info!(sandbox = %record.id, snapshot = %snap.id, kind = snap.kind.as_str(), container = %id, "restored");
            Ok(id)
        }
        Err(e) => {
            let _ = docker.remove(&id).await;
            Err(e.naming(&id, &format!("sandbox {}", record.id)))
        }
    }
}

async fn fill_and_start(host: &SandboxHost, container: &str, snap: &Snapshot) -> Result<(), RuntimeError> {
    let docker = &host.docker;
    let (tx, rx) = mpsc::channel(PIPE_DEPTH);
    let (store, blob) = (host.blobs.clone(), snap.sha256.clone());
    match snap.kind {
        SnapshotKind::Fs => {
            let producer = tokio::task::spawn_blocking(move || copy_blob(&store, &blob, tx));
            docker.put_archive_stream(container, WORK, ReceiverStream::new(rx)).await?;
            producer.await.map_err(failed)?.map_err(failed)?;
            docker.start(container).await
        }
        SnapshotKind::Dir => {
            let path = snap.path.clone().ok_or_else(|| failed("dir snapshot without a path"))?;
            let parent = Path::new(&path).parent().and_then(|p| p.strip_prefix(WORK).ok()).map(Path::to_path_buf);
            let parent = parent.ok_or_else(|| failed(format!("{path} is not below {WORK}")))?;
            let producer = tokio::task::spawn_blocking(move || rebase_blob(&store, &blob, &parent, tx));
            docker.put_archive_stream(container, WORK, ReceiverStream::new(rx)).await?;
            producer.await.map_err(failed)?.map_err(failed)?;
            docker.start(container).await
        }
        SnapshotKind::Memory => {
            let checkpoint = docker.checkpoint_dir(container, &snap.id).await?;
            let producer = tokio::task::spawn_blocking(move || unpack_memory(&store, &blob, &checkpoint, tx));
            docker.put_archive_stream(container, WORK, ReceiverStream::new(rx)).await?;
            producer.await.map_err(failed)?.map_err(failed)?;
            docker.start_from_checkpoint(container, &snap.id).await
        }
    }
}

fn reader(store: &BlobStore, blob: &str) -> std::io::Result<BlobReader> {
    store.reader(blob).map_err(std::io::Error::other)
}

/// Sends the whole blob (a tar) down the pipe.
fn copy_blob(store: &BlobStore, blob: &str, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) -> std::io::Result<()> {
    let mut pipe = Pipe { tx, buf: Vec::new() };
    std::io::copy(&mut reader(store, blob)?, &mut pipe)?;
    pipe.flush()
}

/// Sends a `dir` blob (entries under the directory's base name) with every entry moved under
/// `parent` (relative to `/work`), plus the folders of `parent` itself, so it lands at its
/// original path in a fresh `/work`.
fn rebase_blob(
    store: &BlobStore,
    blob: &str,
    parent: &Path,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> std::io::Result<()> {
    let mut out = tar::Builder::new(Pipe { tx, buf: Vec::new() });
    let mut prefix = PathBuf::new();
    for part in parent.components() {
        prefix.push(part);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        out.append_data(&mut h, &prefix, std::io::empty())?;
    }
    let mut archive = tar::Archive::new(reader(store, blob)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let mut header = entry.header().clone();
        let path = parent.join(entry.path()?);
        let kind = header.entry_type();
        if matches!(kind, tar::EntryType::Link | tar::EntryType::Symlink) {
            if let Some(target) = entry.link_name()?.map(|t| t.into_owned()) {
                // A hard link names another entry of the archive, which moved too; a
                // symlink's target is its own text and stays as it is.
                let target = if kind == tar::EntryType::Link { parent.join(target) } else { target };
                out.append_link(&mut header, &path, target)?;
            }
            continue;
        }
        out.append_data(&mut header, &path, &mut entry)?;
    }
    out.into_inner()?.flush()
}

/// Sends a memory blob's `work.tar` down the pipe and writes its checkpoint files into the
/// engine's checkpoint folder for the new container.
fn unpack_memory(
    store: &BlobStore,
    blob: &str,
    checkpoint: &Path,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> std::io::Result<()> {
    let mut pipe = Some(Pipe { tx, buf: Vec::new() });
    let mut archive = tar::Archive::new(reader(store, blob)?);
    std::fs::create_dir_all(checkpoint)?;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path == Path::new(WORK_TAR) {
            let mut p = pipe.take().ok_or_else(|| std::io::Error::other("two work.tar entries"))?;
            std::io::copy(&mut entry, &mut p)?;
            p.flush()?;
        } else if let Ok(rel) = path.strip_prefix(CHECKPOINT_DIR) {
            // Only plain relative names: nothing may land outside the checkpoint folder.
            if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
                continue;
            }
            let dest = checkpoint.join(rel);
            match entry.header().entry_type() {
                tar::EntryType::Directory => std::fs::create_dir_all(&dest)?,
                tar::EntryType::Regular => {
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::io::copy(&mut entry, &mut std::fs::File::create(&dest)?)?;
                }
                _ => {}
            }
        }
    }
    if pipe.is_some() {
        return Err(std::io::Error::other("memory snapshot without work.tar"));
    }
    Ok(())
}
