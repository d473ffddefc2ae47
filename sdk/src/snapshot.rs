//! Snapshots of sandboxes: take them (filesystem, one directory, or memory), list, inspect
//! and remove them, and create sandboxes from them (`client.sandbox().from_snapshot(&snap)`).
//!
//! A snapshot call returns once the snapshot is stored on this cluster's replicas and
//! marked ready, so it can be restored on any node.

use std::sync::Mutex;

use flotilla_proto::control as pb;
use flotilla_proto::worker::{snapshot_progress, worker_client::WorkerClient, SnapshotRequest};
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;

/// A snapshot as the cluster records it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    /// `sn-…`
    pub id: String,
    /// `fs`, `dir` or `memory`.
    pub kind: String,
    /// The sandbox it was taken from.
    pub sandbox: String,
    /// The directory of a `dir` snapshot.
    pub path: Option<String>,
    pub size_bytes: u64,
    /// sha256 of the snapshot's blob, hex.
    pub sha256: String,
    /// Nodes holding a verified copy.
    pub replicas: Vec<u64>,
    /// `pending`, `ready`, `lost` or `failed`.
    pub state: String,
    /// The node that took it.
    pub node: u64,
    pub image: String,
    pub created_at_ms: i64,
    pub ready_at_ms: Option<i64>,
    /// Why a `failed` snapshot failed (its node restarted or went silent mid-way).
    pub reason: Option<String>,
}

impl From<pb::Snapshot> for SnapshotInfo {
    fn from(s: pb::Snapshot) -> Self {
        SnapshotInfo {
            id: s.id,
            kind: s.kind,
            sandbox: s.sandbox,
            path: s.path,
            size_bytes: s.size_bytes,
            sha256: s.sha256,
            replicas: s.replicas,
            state: s.state,
            node: s.node,
            image: s.image,
            created_at_ms: s.created_at_ms,
            ready_at_ms: s.ready_at_ms,
            reason: s.reason,
        }
    }
}

/// What a snapshot in progress is doing, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotProgress {
    /// `checkpoint`, `store`, `replicate to node N`.
    pub phase: String,
    pub done_bytes: u64,
    /// 0 when not known in advance.
    pub total_bytes: u64,
}

/// How long taking the snapshot took, as the hosting node measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotTimings {
    /// Checkpoint (memory) and writing the blob on the hosting node, seconds.
    pub store_s: f64,
    /// Pushing it to the other replicas, seconds.
    pub replicate_s: f64,
}

impl Sandbox {
    /// Snapshots the sandbox's writable filesystem (`/work`: the root filesystem is
    /// read-only, so that is everything it changed).
    pub async fn snapshot_filesystem(&self) -> Result<SnapshotInfo> {
        self.snapshot("fs", None, |_| {}).await.map(|(s, _)| s)
    }

    /// Snapshots one directory, an absolute path below `/work`.
    pub async fn snapshot_directory(&self, path: &str) -> Result<SnapshotInfo> {
        self.snapshot("dir", Some(path), |_| {}).await.map(|(s, _)| s)
    }

    /// Snapshots processes and memory (CRIU) plus the filesystem. The sandbox keeps
    /// running; it is frozen while its memory is dumped. Fails with `FailedPrecondition`
    /// naming what is missing where the node has no CRIU or the engine no experimental mode.
    pub async fn snapshot_memory(&self) -> Result<SnapshotInfo> {
        self.snapshot("memory", None, |_| {}).await.map(|(s, _)| s)
    }

    /// Takes a snapshot of `kind` (`fs`, `dir` with `path`, `memory`), calling `progress` as
    /// the node stores and replicates it.
    pub async fn snapshot(
        &self,
        kind: &str,
        path: Option<&str>,
        progress: impl FnMut(&SnapshotProgress) + Send,
    ) -> Result<(SnapshotInfo, SnapshotTimings)> {
        let req = SnapshotRequest {
            sandbox_id: self.id.clone(),
            kind: kind.to_string(),
            path: path.unwrap_or_default().to_string(),
        };
        let progress = Mutex::new(progress);
        let done = self
            .client()
            .on_endpoints(|channel| {
                let (req, progress) = (req.clone(), &progress);
                async move {
                    let mut w = WorkerClient::new(channel);
                    let mut stream = w.snapshot(req).await?.into_inner();
                    while let Some(msg) = stream.message().await? {
                        match msg.progress {
                            Some(snapshot_progress::Progress::Step(s)) => {
                                let p = SnapshotProgress {
                                    phase: s.phase,
                                    done_bytes: s.done_bytes,
                                    total_bytes: s.total_bytes,
                                };
                                (progress.lock().expect("progress lock"))(&p);
                            }
                            Some(snapshot_progress::Progress::Done(d)) => return Ok(d),
                            None => {}
                        }
                    }
                    Err(Error::Unavailable("the snapshot stream ended without a result".into()))
                }
            })
            .await?;
        let info = self.client().snapshot_info(&done.id).await?;
        Ok((info, SnapshotTimings { store_s: done.store_s, replicate_s: done.replicate_s }))
    }
}

impl Client {
    /// All snapshots, or only those of `sandbox`.
    pub async fn list_snapshots(&self, sandbox: Option<&str>) -> Result<Vec<SnapshotInfo>> {
        let req = pb::ListSnapshotsRequest { sandbox: sandbox.unwrap_or_default().to_string() };
        let reply = self
            .control(|mut c| {
                let req = req.clone();
                async move { c.list_snapshots(req).await }
            })
            .await?;
        Ok(reply.snapshots.into_iter().map(Into::into).collect())
    }

    /// One snapshot by id.
    pub async fn snapshot_info(&self, id: &str) -> Result<SnapshotInfo> {
        let req = pb::GetSnapshotRequest { id: id.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.get_snapshot(req).await }
        })
        .await
        .map(Into::into)
    }

    /// Removes a snapshot; every node then frees its blob.
    pub async fn remove_snapshot(&self, id: &str) -> Result<SnapshotInfo> {
        let req = pb::GetSnapshotRequest { id: id.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.remove_snapshot(req).await }
        })
        .await
        .map(Into::into)
    }
}
