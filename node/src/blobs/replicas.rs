//! Keeping a snapshot's copies: replicate a new blob to peers, obtain a blob for a restore
//! from whichever replica has a good copy (repairing the bad ones), and a background keeper
//! that checks this node's copies and collects blobs no snapshot references.

use std::collections::HashSet;
use std::time::Duration;

use flotilla_raft::{Command, NodeId, Snapshot, SnapshotState};
use tokio::sync::watch;

use super::store::{BlobError, BlobStore};
use super::transfer;
use crate::cluster::Cluster;

/// How the keeper and replication behave; from the node's `[snapshots]` config.
#[derive(Debug, Clone, PartialEq)]
pub struct KeeperOptions {
    /// Copies a snapshot must have before it is ready (this node's included).
    pub replication_factor: usize,
    /// Period of the keeper's pass (check own copies, repair, collect).
    pub scrub_every: Duration,
    /// Blobs and chunks younger than this are never collected (a snapshot being written or
    /// received has them before the catalog knows its digest).
    pub gc_grace: Duration,
}

/// Live peers to hold copies, in the order to try them: starting after this node's id, so
/// copies spread over the cluster.
pub fn targets(cluster: &Cluster) -> Vec<(NodeId, String)> {
    let me = cluster.id;
    let mut peers: Vec<(NodeId, String)> =
        cluster.group().addrs.into_iter().filter(|&(n, _)| n != me && cluster.liveness.is_up(n)).collect();
    peers.sort_by_key(|&(n, _)| (n < me, n));
    peers
}

/// Pushes stored blob `blob` to live peers not in `skip` until `want` of them hold it,
/// trying others when one fails. Returns the peers that now hold a copy.
/// `progress(node, sent, total)`.
pub async fn replicate(
    cluster: &Cluster,
    store: &BlobStore,
    blob: &str,
    want: usize,
    skip: &[NodeId],
    progress: impl Fn(NodeId, u64, u64) + Clone + Send + 'static,
) -> Vec<NodeId> {
    let mut done = Vec::new();
    for (node, addr) in targets(cluster).into_iter().filter(|(n, _)| !skip.contains(n)) {
        if done.len() >= want {
            break;
        }
        let p = progress.clone();
        match transfer::push(&cluster.peers, &addr, store, blob, move |s, t| p(node, s, t)).await {
            Ok(bytes) => {
                tracing::info!(%blob, node, bytes, "blob replicated");
                done.push(node);
            }
            Err(e) => tracing::warn!(%blob, node, error = %e, "could not replicate blob; trying another node"),
        }
    }
    done
}

/// How much [`obtain`] checks a copy this node already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalCheck {
    /// Present: the manifest and every chunk file exist. For a restore, which reads (and
    /// checks) every byte anyway and calls again with `Verify` if that fails.
    Present,
    /// Read and check every digest (bad chunks are dropped on the way).
    Verify,
}

/// Makes sure this node holds a good copy of `snap`'s blob: its own, else one fetched from
/// another replica. Replicas found with a bad or missing copy are repaired in the background
/// by pushing the good one to them. `progress(received, total)`.
pub async fn obtain(
    cluster: &Cluster,
    store: &BlobStore,
    snap: &Snapshot,
    check: LocalCheck,
    progress: impl Fn(u64, u64) + Clone,
) -> Result<(), String> {
    let blob = snap.sha256.clone();
    let (s, b) = (store.clone(), blob.clone());
    let local = tokio::task::spawn_blocking(move || match check {
        LocalCheck::Present if s.has_blob(&b) => Ok(0),
        LocalCheck::Present => Err(BlobError::Missing(format!("blob {b}"))),
        LocalCheck::Verify => s.verify(&b),
    });
    match local.await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(BlobError::Missing(_))) => {}
        Ok(Err(e)) => tracing::warn!(snapshot = %snap.id, error = %e, "local copy is bad; fetching another"),
        Err(e) => return Err(e.to_string()),
    }
    let addrs = cluster.group().addrs;
    let mut bad = Vec::new();
    let mut errors = Vec::new();
    for &node in snap.replicas.iter().filter(|&&n| n != cluster.id) {
        let Some(addr) = addrs.get(&node) else { continue };
        match transfer::fetch(&cluster.peers, addr, store, &blob, progress.clone()).await {
            Ok(_) => {
                for node in bad {
                    repair_peer(cluster.clone(), store.clone(), blob.clone(), node);
                }
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(snapshot = %snap.id, node, error = %e, "replica could not serve the blob; trying another");
                if e.is_bad_copy() {
                    bad.push(node);
                }
                errors.push(format!("node {node}: {e}"));
            }
        }
    }
    Err(format!("no replica of snapshot {} has a good copy ({})", snap.id, errors.join("; ")))
}

/// Pushes a good copy to a replica that served a bad one.
fn repair_peer(cluster: Cluster, store: BlobStore, blob: String, node: NodeId) {
    tokio::spawn(async move {
        let Some(addr) = cluster.group().addrs.get(&node).cloned() else { return };
        match transfer::push(&cluster.peers, &addr, &store, &blob, |_, _| {}).await {
            Ok(bytes) => tracing::info!(%blob, node, bytes, "repaired a replica's bad copy"),
            Err(e) => tracing::warn!(%blob, node, error = %e, "could not repair a replica"),
        }
    });
}

/// Every `scrub_every`: checks each copy this node is listed for (fetching a good one from
/// another replica when it is bad or missing, or taking this node off the list when no
/// replica has one), then collects blobs that no snapshot and no app's current spec (its
/// functions' `code`) references. Runs until shutdown.
pub async fn keep(cluster: Cluster, store: BlobStore, options: KeeperOptions, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(options.scrub_every) => {}
            _ = shutdown.changed() => return,
        }
        let snapshots: Vec<Snapshot> = cluster.view.read(|c| c.snapshots.values().cloned().collect());
        for snap in snapshots.iter().filter(|s| s.state == SnapshotState::Ready && s.replicas.contains(&cluster.id)) {
            if let Err(e) = obtain(&cluster, &store, snap, LocalCheck::Verify, |_, _| {}).await {
                tracing::error!(snapshot = %snap.id, error = %e, "this node's copy is lost");
                let replicas = snap.replicas.iter().copied().filter(|&n| n != cluster.id).collect();
                let _ = cluster.write(Command::SetSnapshotReplicas { id: snap.id.clone(), replicas }).await;
            }
        }
        let mut keep: HashSet<String> = snapshots.into_iter().map(|s| s.sha256).filter(|d| !d.is_empty()).collect();
        keep.extend(cluster.view.read(super::code::referenced));
        let (s, grace) = (store.clone(), options.gc_grace);
        match tokio::task::spawn_blocking(move || s.collect(&keep, grace)).await {
            Ok(Ok(c)) if c.blobs + c.chunks > 0 => {
                tracing::info!(blobs = c.blobs, chunks = c.chunks, "collected unreferenced blobs")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "blob collection failed"),
            _ => {}
        }
    }
}
