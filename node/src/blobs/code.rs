//! Code blobs: the tar archives a client uploads (`PutBlob`) for the `code` of an app spec's
//! functions (a Python app's module and the local packages beside it), and how a replica gets
//! one.
//!
//! An upload is written into this node's blob store as it streams in, then pushed to
//! `replication_factor - 1` live peers before the client gets the digest, so a deploy that
//! names it survives the loss of the node that took the upload. The keeper keeps every blob
//! the current spec of an app names ([`referenced`]); one uploaded and never deployed goes
//! after the store's grace period. A node starting a replica of a function with `code` uses
//! its own copy or fetches one from any peer that has it ([`bytes`]); the replica then
//! unpacks it into its container (see `function::replica`).

use std::collections::HashSet;
use std::io::{Read, Write};

use flotilla::AppSpec;
use flotilla_proto::control::{BlobUpload, PutBlobReply};
use flotilla_raft::Catalog;
use futures::{Stream, StreamExt};
use tonic::Status;

use super::store::{is_digest, BlobStore};
use super::{replicate, transfer};
use crate::cluster::Cluster;

/// Largest upload, bytes. Code is unpacked into the replica's `/tmp`, a tmpfs of half the
/// function's memory, so a function needs twice its code's size in `memory_mib`.
pub const MAX_UPLOAD: u64 = 64 << 20;

/// Stores the uploaded stream as a blob here and copies it to `copies - 1` peers. The reply
/// names it and the nodes that hold it.
pub async fn upload(
    cluster: &Cluster,
    store: &BlobStore,
    mut parts: impl Stream<Item = Result<BlobUpload, Status>> + Unpin,
    copies: usize,
) -> Result<PutBlobReply, Status> {
    let mut writer = store.writer();
    while let Some(part) = parts.next().await {
        let data = part?.data;
        if writer.size() + data.len() as u64 > MAX_UPLOAD {
            return Err(Status::invalid_argument(format!("data: the blob is over the limit of {MAX_UPLOAD} bytes")));
        }
        writer = tokio::task::spawn_blocking(move || writer.write_all(&data).map(|_| writer))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("storing the blob: {e}")))?;
    }
    let (blob, manifest) = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("storing the blob: {e}")))?;
    let mut nodes = vec![cluster.id];
    let want = copies.saturating_sub(1);
    nodes.extend(replicate(cluster, store, &blob, want, &[], |_, _, _| {}).await);
    if nodes.len() < copies.min(cluster.group().addrs.len()) {
        return Err(Status::unavailable(format!(
            "blob {blob} is stored on nodes {nodes:?} only; {copies} copies are needed (too few live nodes), retry"
        )));
    }
    tracing::info!(%blob, size = manifest.size, ?nodes, "blob uploaded");
    Ok(PutBlobReply { sha256: blob, size: manifest.size, nodes })
}

/// The code blobs that the current spec of some app names.
pub fn referenced(catalog: &Catalog) -> HashSet<String> {
    catalog
        .apps
        .values()
        .filter_map(|a| serde_json::from_str::<AppSpec>(&a.spec_json).ok())
        .flat_map(|spec| spec.functions.into_values().filter_map(|f| f.code))
        .collect()
}

/// The bytes of code blob `blob`: this node's copy, or one fetched (and kept) from the first
/// live peer that has a good one.
pub async fn bytes(cluster: &Cluster, store: &BlobStore, blob: &str) -> Result<Vec<u8>, String> {
    if !is_digest(blob) {
        return Err(format!("code {blob:?} is not a sha256"));
    }
    if !store.has_blob(blob) {
        let mut errors = Vec::new();
        for (node, addr) in super::targets(cluster) {
            match transfer::fetch(&cluster.peers, &addr, store, blob, |_, _| {}).await {
                Ok(_) => break,
                Err(e) => errors.push(format!("node {node}: {e}")),
            }
        }
        if !store.has_blob(blob) {
            return Err(format!("no live node has code blob {blob} ({})", errors.join("; ")));
        }
    }
    // Read whole into memory: only an archive an upload could have made.
    match store.manifest(blob) {
        Ok(Some(m)) if m.size <= MAX_UPLOAD => {}
        Ok(Some(m)) => return Err(format!("blob {blob} holds {} bytes, more than code may ({MAX_UPLOAD})", m.size)),
        Ok(None) => return Err(format!("code blob {blob} vanished")),
        Err(e) => return Err(format!("reading code blob {blob}: {e}")),
    }
    let (s, b) = (store.clone(), blob.to_string());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        s.reader(&b).and_then(|mut r| r.read_to_end(&mut out).map_err(Into::into)).map(|_| out)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading code blob {blob}: {e}"))
}
