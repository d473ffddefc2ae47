//! Taking a snapshot of a sandbox hosted here, and the blob formats of each kind.
//!
//! | kind | blob | restore |
//! |---|---|---|
//! | `fs` | tar of `/work` (entries relative to it) | extracted into the new container's `/work` before it starts |
//! | `dir` | tar of one directory below `/work` (entries under its base name) | extracted into the same path |
//! | `memory` | tar of `work.tar` (as `fs`) and `checkpoint/…` (the engine's CRIU checkpoint) | `work.tar` extracted, checkpoint copied in, container started from it |
//!
//! The root filesystem of a sandbox is read-only and `/tmp` is a tmpfs (memory), so `/work`
//! is the whole of its filesystem changes; a memory snapshot also carries `/tmp`, inside the
//! checkpoint.
//!
//! Order: the catalog records the snapshot `pending` (the sandbox `snapshotting`), the blob
//! is written to this node's store and, chunk by chunk as it is written, streamed to
//! `replication_factor - 1` live peers (others are tried with an ordinary push if one
//! fails), and only once they all hold it is the snapshot committed `ready` with its
//! replica list. Any failure drops the
//! record. The sandbox keeps running throughout; a memory checkpoint freezes its processes
//! while CRIU dumps them, and `/work` is read right after (writes made in between are in the
//! snapshot's files but not its memory).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use flotilla_proto::peer::BlobPart;
use flotilla_raft::{Command, NodeId, Response, SandboxState, SnapshotKind};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::SandboxHost;
use crate::blobs::transfer::{self, PushStream};
use crate::blobs::{self, BlobError, BlobWriter, Manifest, Tee};
use crate::error::NodeError;
use crate::runtime::RuntimeError;

/// The sandbox's writable filesystem, what `fs` snapshots hold.
pub const WORK: &str = "/work";
/// Name of the `/work` tar inside a memory snapshot.
pub const WORK_TAR: &str = "work.tar";
/// Folder of the checkpoint files inside a memory snapshot.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Stream chunks buffered between the engine and the blob writer.
const PIPE_DEPTH: usize = 8;

/// Progress of a snapshot, for the client.
#[derive(Debug, Clone)]
pub struct Step {
    pub phase: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// A snapshot taken and replicated.
#[derive(Debug, Clone)]
pub struct Taken {
    pub id: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub replicas: Vec<flotilla_raft::NodeId>,
    pub store_s: f64,
    pub replicate_s: f64,
}

fn report(progress: &mpsc::Sender<Step>, phase: impl Into<String>, done_bytes: u64, total_bytes: u64) {
    // Progress is best effort: a slow client misses steps rather than slowing the snapshot.
    let _ = progress.try_send(Step { phase: phase.into(), done_bytes, total_bytes });
}

fn internal(e: impl std::fmt::Display) -> NodeError {
    NodeError::Internal(e.to_string())
}

/// Takes a snapshot of sandbox `sandbox`, which this node hosts, stores and replicates it,
/// and commits it ready. `path` is the directory of a `dir` snapshot.
pub async fn take(
    host: &SandboxHost,
    sandbox: &str,
    kind: SnapshotKind,
    path: Option<String>,
    progress: mpsc::Sender<Step>,
) -> Result<Taken, NodeError> {
    let me = host.cluster.id;
    let record = host
        .cluster
        .view
        .read(|c| c.sandboxes.get(sandbox).cloned())
        .ok_or_else(|| NodeError::from(flotilla_raft::Rejection::SandboxNotFound(sandbox.to_string())))?;
    let container = match (&record.container_id, record.state) {
        (Some(c), SandboxState::Running) if record.node == me => c.clone(),
        _ => {
            return Err(NodeError::FailedPrecondition(format!(
                "sandbox {sandbox} is {} on node {}; only a running sandbox can be snapshotted",
                record.state.as_str(),
                record.node
            )))
        }
    };
    if host.is_fenced() {
        // Its container is frozen and the catalog may already have moved it elsewhere.
        return Err(NodeError::FailedPrecondition(format!(
            "node {me} is fenced (it has lost the leader or a quorum); snapshot sandbox {sandbox} once it is back"
        )));
    }
    if kind == SnapshotKind::Memory {
        host.docker.checkpoint_support().await.map_err(|m| NodeError::FailedPrecondition(format!("node {me}: {m}")))?;
    }
    let id = format!("sn-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let cmd = Command::CreateSnapshot {
        id: id.clone(),
        sandbox: sandbox.to_string(),
        generation: record.generation,
        kind,
        path: path.clone(),
        node: me,
        at_ms: 0,
    };
    let _in_flight = host.snapshot_in_flight(&id);
    host.cluster.write(cmd).await?;
    match store_and_replicate(host, &container, &id, kind, path.as_deref(), &progress).await {
        Ok(taken) => Ok(taken),
        Err(e) => {
            tracing::warn!(snapshot = %id, %sandbox, error = %e, "snapshot failed");
            if let Err(e) = host.cluster.write(Command::SnapshotFailed { id: id.clone(), reason: None }).await {
                tracing::warn!(snapshot = %id, error = %e, "could not drop the failed snapshot's record");
            }
            Err(e)
        }
    }
}

async fn store_and_replicate(
    host: &SandboxHost,
    container: &str,
    id: &str,
    kind: SnapshotKind,
    path: Option<&str>,
    progress: &mpsc::Sender<Step>,
) -> Result<Taken, NodeError> {
    let started = Instant::now();
    let members = host.cluster.group().addrs.len();
    let want = host.keeper.replication_factor.saturating_sub(1).min(members.saturating_sub(1));
    // Replication starts with the blob: each chunk goes to the first `want` peers as soon as
    // it is stored here.
    let streams: Vec<(NodeId, PushStream)> = blobs::targets(&host.cluster)
        .into_iter()
        .take(want)
        .filter_map(|(node, addr)| PushStream::open(&host.cluster.peers, &addr).ok().map(|s| (node, s)))
        .collect();
    let writer = host.blobs.writer().with_tee(tee(streams.iter().map(|(_, s)| s.sender()).collect()));
    let (sha256, manifest) = match kind {
        SnapshotKind::Fs => {
            store_stream(writer, host.docker.get_archive(container, &format!("{WORK}/.")), progress).await?
        }
        SnapshotKind::Dir => {
            let path = path.ok_or_else(|| NodeError::invalid("path", "a dir snapshot needs a path"))?;
            store_stream(writer, host.docker.get_archive(container, path), progress).await?
        }
        SnapshotKind::Memory => store_memory(host, writer, container, id, progress).await?,
    };
    let size = manifest.size;
    let store_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    report(progress, "replicate", 0, size);
    let mut peers = Vec::new();
    let mut tried = Vec::new();
    for (node, stream) in streams {
        tried.push(node);
        match stream.finish(&sha256, &manifest).await {
            Ok(bytes) => {
                tracing::info!(blob = %sha256, node, bytes, "blob replicated while written");
                peers.push(node);
            }
            Err(e) => tracing::warn!(blob = %sha256, node, error = %e, "streamed replication failed"),
        }
    }
    if peers.len() < want {
        let tx = progress.clone();
        let more = blobs::replicate(
            &host.cluster,
            &host.blobs,
            &sha256,
            want - peers.len(),
            &tried,
            move |node, sent, total| report(&tx, format!("replicate to node {node}"), sent, total),
        )
        .await;
        peers.extend(more);
    }
    if peers.len() < want {
        return Err(NodeError::FailedPrecondition(format!(
            "snapshot {id} reached {} of the {want} peers it needs (replication_factor {})",
            peers.len(),
            host.keeper.replication_factor
        )));
    }
    let replicate_s = started.elapsed().as_secs_f64();
    let replicas: Vec<_> = std::iter::once(host.cluster.id).chain(peers).collect();
    let cmd = Command::SnapshotReady {
        id: id.to_string(),
        size_bytes: size,
        sha256: sha256.clone(),
        replicas: replicas.clone(),
        at_ms: 0,
    };
    match host.cluster.write(cmd).await? {
        Response::Snapshot(_) => {}
        other => return Err(internal(format!("unexpected reply to SnapshotReady: {other:?}"))),
    }
    tracing::info!(snapshot = id, kind = kind.as_str(), size, ?replicas, store_s, replicate_s, "snapshot ready");
    host.cluster.metrics.snapshot_taken(kind.as_str(), size);
    Ok(Taken { id: id.to_string(), size_bytes: size, sha256, replicas, store_s, replicate_s })
}

/// Sends each stored chunk to every peer stream still open (from the writer's blocking
/// thread; a slow peer slows the writer, bounded by the stream's buffer). A peer whose
/// stream broke is dropped; the push's own reply says why.
fn tee(mut peers: Vec<mpsc::Sender<BlobPart>>) -> Tee {
    Box::new(move |sha, data| {
        peers.retain(|tx| tx.blocking_send(transfer::chunk_part(sha.to_string(), data.to_vec())).is_ok());
    })
}

/// Writes a byte stream from the engine into a new blob (on a blocking thread, fed through
/// a bounded channel). Returns its digest and size.
async fn store_stream(
    mut w: BlobWriter,
    stream: impl Stream<Item = Result<Bytes, RuntimeError>> + Send + 'static,
    progress: &mpsc::Sender<Step>,
) -> Result<(String, Manifest), NodeError> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(PIPE_DEPTH);
    let p = progress.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<(String, Manifest), BlobError> {
        while let Some(b) = rx.blocking_recv() {
            w.write_all(&b)?;
            report(&p, "store", w.size(), 0);
        }
        w.finish()
    });
    let mut stream = Box::pin(stream);
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => {
                if tx.send(b).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let stored = writer.await.map_err(internal)?;
    match failure {
        Some(RuntimeError::NotFound(what)) => {
            Err(NodeError::FailedPrecondition(format!("not found in the sandbox: {what}")))
        }
        Some(e) => Err(internal(e)),
        None => stored.map_err(internal),
    }
}

/// Checkpoints the container (leaving it running), reads `/work`, and stores both as one
/// tar blob; the engine's copy of the checkpoint is deleted afterwards.
async fn store_memory(
    host: &SandboxHost,
    writer: BlobWriter,
    container: &str,
    id: &str,
    progress: &mpsc::Sender<Step>,
) -> Result<(String, Manifest), NodeError> {
    let docker = &host.docker;
    report(progress, "checkpoint", 0, 0);
    docker.checkpoint(container, id).await.map_err(|e| {
        NodeError::FailedPrecondition(format!("checkpoint failed: {}", e.naming(container, "the sandbox")))
    })?;
    let result = async {
        let scratch = tempfile::tempdir().map_err(internal)?;
        let work_tar = scratch.path().join(WORK_TAR);
        let mut file = tokio::fs::File::create(&work_tar).await.map_err(internal)?;
        let mut work = Box::pin(docker.get_archive(container, &format!("{WORK}/.")));
        while let Some(chunk) = work.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk.map_err(internal)?).await.map_err(internal)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(internal)?;
        let dir = docker.checkpoint_dir(container, id).await.map_err(internal)?;
        report(progress, "store", 0, 0);
        tokio::task::spawn_blocking(move || write_memory_blob(writer, &work_tar, &dir))
            .await
            .map_err(internal)?
            .map_err(internal)
    }
    .await;
    if let Err(e) = docker.delete_checkpoint(container, id).await {
        tracing::warn!(container, checkpoint = id, error = %e, "could not delete the engine's checkpoint");
    }
    result
}

fn write_memory_blob(w: BlobWriter, work_tar: &PathBuf, checkpoint: &PathBuf) -> Result<(String, Manifest), BlobError> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.append_path_with_name(work_tar, WORK_TAR)?;
    b.append_dir_all(CHECKPOINT_DIR, checkpoint)?;
    b.into_inner()?.finish()
}
