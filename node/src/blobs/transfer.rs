//! Moving blobs between nodes over the Peer service, both ends.
//!
//! **Push** (replication, repair): ask the receiver which chunks it lacks (`MissingChunks`),
//! then stream only those chunks and the header, last (`PushBlob`). A blob still being
//! written is pushed as it is written ([`PushStream`]): every chunk is sent once stored, the
//! header when the blob is complete. The receiver checks each chunk's
//! digest as it stores it and records the manifest (durably) before it answers, so an
//! acknowledged push is a complete copy of verified chunks. (The blob's whole digest is
//! checked on every read of the blob and by the keeper; a sender whose manifest did not match
//! its digest would be a bug, not a transmission error, since every chunk is checked.)
//!
//! **Fetch** (restore, repair, images): `FetchBlob` for the header, then `FetchBlob` again for
//! only the chunks the receiver lacks, each checked by the sender as it reads it and again by
//! the receiver as it stores it. A sender whose copy fails its check answers `DATA_LOSS`; the
//! caller tries another replica, which sends only what the first did not (see [`fetch`]).
//!
//! Chunks travel through bounded channels ([`IN_FLIGHT`] chunks), so a slow receiver slows
//! the sender instead of filling its memory.

use std::time::Duration;

use flotilla_proto::peer::{
    blob_part, BlobChunk, BlobHeader, BlobPart, FetchBlobRequest, MissingChunksReply, MissingChunksRequest,
    PushBlobReply,
};
use flotilla_raft::network::PeerPool;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::store::{BlobError, BlobStore, Manifest};

/// Chunks buffered between the disk and the network, per transfer.
const IN_FLIGHT: usize = 4;
/// Deadline of one transfer; a 1 GB blob over loopback takes a few seconds.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest message a transfer carries: a chunk plus framing.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Most chunk digests one `MissingChunks` may ask about.
const MAX_ASKED: usize = 100_000;

/// A transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("{addr}: {status}")]
    Peer { addr: String, status: Status },
}

impl TransferError {
    /// The remote copy is bad or absent (as opposed to the node being unreachable).
    pub fn is_bad_copy(&self) -> bool {
        match self {
            TransferError::Blob(BlobError::Corrupt(_) | BlobError::Missing(_) | BlobError::BadManifest(_)) => true,
            TransferError::Peer { status, .. } => {
                matches!(status.code(), tonic::Code::DataLoss | tonic::Code::NotFound)
            }
            TransferError::Blob(BlobError::Io(_)) => false,
        }
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BlobError::Io(std::io::Error::other(e)))
}

fn to_status(e: BlobError) -> Status {
    match e {
        BlobError::Corrupt(m) => Status::data_loss(format!("corrupt {m}")),
        BlobError::Missing(m) => Status::not_found(format!("missing {m}")),
        BlobError::BadManifest(m) => Status::invalid_argument(format!("manifest: {m}")),
        BlobError::Io(e) => Status::internal(e.to_string()),
    }
}

fn client(peers: &PeerPool, addr: &str) -> Result<flotilla_raft::network::AuthedPeerClient, TransferError> {
    let c = peers
        .bulk(addr)
        .map_err(|e| TransferError::Peer { addr: addr.to_string(), status: Status::unavailable(e.to_string()) })?;
    Ok(c.max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Pushes blob `blob` to the node at `addr`; `progress(sent, total)` after each chunk.
/// Returns the bytes sent (chunks the receiver already had are not sent).
pub async fn push(
    peers: &PeerPool,
    addr: &str,
    store: &BlobStore,
    blob: &str,
    progress: impl Fn(u64, u64) + Send + 'static,
) -> Result<u64, TransferError> {
    let peer_err = |status| TransferError::Peer { addr: addr.to_string(), status };
    let (s, b) = (store.clone(), blob.to_string());
    let manifest =
        blocking(move || s.manifest(&b)).await??.ok_or_else(|| BlobError::Missing(format!("blob {blob}")))?;
    let mut c = client(peers, addr)?;
    let asked = MissingChunksRequest { chunks: manifest.chunks.iter().map(|c| c.hash.clone()).collect() };
    let missing = c.missing_chunks(asked).await.map_err(peer_err)?.into_inner().missing;
    let missing: std::collections::HashSet<String> = missing.into_iter().collect();
    let total: u64 = manifest.chunks.iter().filter(|c| missing.contains(&c.hash)).map(|c| c.len).sum();

    let (tx, rx) = tokio::sync::mpsc::channel::<BlobPart>(IN_FLIGHT);
    let header = header_part(blob, &manifest);
    let (s, chunks) = (store.clone(), manifest.chunks.clone());
    let reader = tokio::task::spawn_blocking(move || -> Result<(), BlobError> {
        let mut sent = 0;
        for c in chunks.into_iter().filter(|c| missing.contains(&c.hash)) {
            let data = s.read_chunk(&c.hash)?;
            sent += data.len() as u64;
            if tx.blocking_send(chunk_part(c.hash, data)).is_err() {
                return Ok(());
            }
            progress(sent, total);
        }
        let _ = tx.blocking_send(header);
        Ok(())
    });
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.set_timeout(TRANSFER_TIMEOUT);
    let reply = c.push_blob(req).await;
    reader.await.map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
    Ok(reply.map_err(peer_err)?.into_inner().bytes)
}

fn header_part(blob: &str, manifest: &Manifest) -> BlobPart {
    BlobPart {
        part: Some(blob_part::Part::Header(BlobHeader { sha256: blob.to_string(), manifest: manifest.encode() })),
    }
}

/// One chunk as a transfer part.
pub fn chunk_part(hash: String, data: Vec<u8>) -> BlobPart {
    BlobPart { part: Some(blob_part::Part::Chunk(BlobChunk { hash, data })) }
}

/// A push whose chunks are produced while it runs: the replication of a blob still being
/// written. Send chunks on [`PushStream::sender`] (from a blocking thread), then
/// [`PushStream::finish`] with the blob's digest and manifest.
pub struct PushStream {
    addr: String,
    tx: tokio::sync::mpsc::Sender<BlobPart>,
    reply: tokio::task::JoinHandle<Result<PushBlobReply, Status>>,
}

impl PushStream {
    /// Opens a `PushBlob` call to the node at `addr`.
    pub fn open(peers: &PeerPool, addr: &str) -> Result<PushStream, TransferError> {
        let mut c = client(peers, addr)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<BlobPart>(IN_FLIGHT);
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        req.set_timeout(TRANSFER_TIMEOUT);
        let reply = tokio::spawn(async move { c.push_blob(req).await.map(|r| r.into_inner()) });
        Ok(PushStream { addr: addr.to_string(), tx, reply })
    }

    pub fn sender(&self) -> tokio::sync::mpsc::Sender<BlobPart> {
        self.tx.clone()
    }

    /// Sends the header and waits for the receiver to have recorded the blob. Returns the
    /// bytes it received.
    pub async fn finish(self, blob: &str, manifest: &Manifest) -> Result<u64, TransferError> {
        let peer_err = |status| TransferError::Peer { addr: self.addr.clone(), status };
        // A send fails only when the call already ended; its reply says why.
        let _ = self.tx.send(header_part(blob, manifest)).await;
        drop(self.tx);
        let reply = self.reply.await.map_err(|e| peer_err(Status::internal(e.to_string())))?;
        Ok(reply.map_err(peer_err)?.bytes)
    }
}

/// Fetches blob `blob` from the node at `addr` into `store`, checking every chunk and the
/// whole digest; `progress(received, total)` after each chunk, `total` being the bytes this
/// node lacked. Returns the bytes received.
///
/// Resumable: the header comes first (a call of its own), then only the chunks this store
/// lacks are asked for. Chunks are kept as they arrive, so a fetch that broke (the peer died,
/// a bad copy answered `DATA_LOSS`) and is tried again, from the same peer or another copy,
/// moves only what is still missing; a chunk shared with a blob already here never moves.
pub async fn fetch(
    peers: &PeerPool,
    addr: &str,
    store: &BlobStore,
    blob: &str,
    progress: impl Fn(u64, u64),
) -> Result<u64, TransferError> {
    let peer_err = |status| TransferError::Peer { addr: addr.to_string(), status };
    let mut c = client(peers, addr)?;
    let ask = |header_only: bool, chunks: Vec<String>| {
        let mut req = tonic::Request::new(FetchBlobRequest { sha256: blob.to_string(), header_only, chunks });
        req.set_timeout(TRANSFER_TIMEOUT);
        req
    };
    let mut stream = c.fetch_blob(ask(true, Vec::new())).await.map_err(peer_err)?.into_inner();
    let manifest = read_header(&mut stream, addr, blob).await?;
    let hashes: Vec<String> = manifest.chunks.iter().map(|c| c.hash.clone()).collect();
    let s = store.clone();
    let mut missing: Vec<String> = blocking(move || s.missing(&hashes)).await?;
    let mut seen = std::collections::HashSet::new();
    missing.retain(|h| seen.insert(h.clone()));
    let mut wanted: std::collections::HashSet<String> = missing.iter().cloned().collect();
    let total: u64 = manifest.chunks.iter().filter(|c| seen.remove(&c.hash)).map(|c| c.len).sum();
    let mut stream = match missing.is_empty() {
        true => None,
        false => {
            let mut st = c.fetch_blob(ask(false, missing)).await.map_err(peer_err)?.into_inner();
            read_header(&mut st, addr, blob).await?;
            Some(st)
        }
    };
    let mut whole = Sha256::new();
    let mut received = 0;
    for expected in &manifest.chunks {
        let data = match (wanted.remove(&expected.hash), stream.as_mut()) {
            (true, Some(st)) => {
                let chunk = match st.message().await.map_err(peer_err)?.and_then(|p| p.part) {
                    Some(blob_part::Part::Chunk(c)) if c.hash == expected.hash => c,
                    _ => return Err(BlobError::Corrupt(format!("blob {blob} from {addr}: chunks out of order")).into()),
                };
                received += chunk.data.len() as u64;
                let s = store.clone();
                let data = blocking(move || s.put_chunk(&chunk.hash, &chunk.data).map(|()| chunk.data)).await??;
                progress(received, total);
                data
            }
            _ => {
                let (s, h) = (store.clone(), expected.hash.clone());
                blocking(move || s.read_chunk(&h)).await??
            }
        };
        whole.update(&data);
    }
    if hex::encode(whole.finalize()) != blob {
        return Err(BlobError::Corrupt(format!("blob {blob} from {addr} (whole digest)")).into());
    }
    let (s, b) = (store.clone(), blob.to_string());
    blocking(move || s.put_manifest(&b, &manifest)).await??;
    Ok(received)
}

/// The first part of a `FetchBlob` answer: the header of `blob`.
async fn read_header(stream: &mut Streaming<BlobPart>, addr: &str, blob: &str) -> Result<Manifest, TransferError> {
    let part = stream.message().await.map_err(|status| TransferError::Peer { addr: addr.to_string(), status })?;
    match part.and_then(|p| p.part) {
        Some(blob_part::Part::Header(h)) if h.sha256 == blob => Ok(Manifest::decode(&h.manifest)?),
        _ => Err(BlobError::BadManifest(format!("{addr} did not start with the header of {blob}")).into()),
    }
}

/// Serves `MissingChunks`.
pub async fn serve_missing(store: &BlobStore, req: MissingChunksRequest) -> Result<MissingChunksReply, Status> {
    if req.chunks.len() > MAX_ASKED {
        return Err(Status::invalid_argument(format!("chunks: at most {MAX_ASKED} per request")));
    }
    let s = store.clone();
    let missing = blocking(move || s.missing(&req.chunks)).await.map_err(to_status)?;
    Ok(MissingChunksReply { missing })
}

/// Serves `PushBlob`: stores the chunks as they come (on a blocking thread, so the disk and
/// the network overlap), then records the blob when its header arrives, last.
pub async fn serve_push(store: &BlobStore, mut parts: Streaming<BlobPart>) -> Result<PushBlobReply, Status> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<BlobChunk>(IN_FLIGHT);
    let s = store.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<u64, BlobError> {
        let mut bytes = 0;
        while let Some(c) = rx.blocking_recv() {
            bytes += c.data.len() as u64;
            s.put_chunk(&c.hash, &c.data)?;
        }
        Ok(bytes)
    });
    let mut header = None;
    while let Some(part) = parts.next().await {
        match part?.part {
            Some(blob_part::Part::Chunk(c)) if header.is_none() => {
                if tx.send(c).await.is_err() {
                    break; // the writer failed; its error is returned below
                }
            }
            Some(blob_part::Part::Header(h)) if header.is_none() => header = Some(h),
            _ => return Err(Status::invalid_argument("parts: chunks, then one header, last")),
        }
    }
    drop(tx);
    let bytes = writer.await.map_err(|e| Status::internal(e.to_string()))?.map_err(to_status)?;
    let h = header.ok_or_else(|| Status::invalid_argument("header: the push ended without its header"))?;
    if !super::store::is_digest(&h.sha256) {
        return Err(Status::invalid_argument("sha256: not a sha256 digest"));
    }
    let manifest = Manifest::decode(&h.manifest).map_err(to_status)?;
    let s = store.clone();
    blocking(move || s.put_manifest(&h.sha256, &manifest)).await.map_err(to_status)?.map_err(to_status)?;
    Ok(PushBlobReply { bytes })
}

/// Serves `FetchBlob`: the header, then every chunk asked for (all when none are named), each
/// as read and checked.
pub fn serve_fetch(
    store: &BlobStore,
    req: FetchBlobRequest,
) -> Result<ReceiverStream<Result<BlobPart, Status>>, Status> {
    if req.chunks.len() > MAX_ASKED {
        return Err(Status::invalid_argument(format!("chunks: at most {MAX_ASKED} per request")));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        let blob = req.sha256;
        let mut reader = match s.reader(&blob) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(to_status(e)));
                return;
            }
        };
        let manifest = reader.manifest().clone();
        let header = BlobHeader { sha256: blob.clone(), manifest: manifest.encode() };
        if tx.blocking_send(Ok(BlobPart { part: Some(blob_part::Part::Header(header)) })).is_err() || req.header_only {
            return;
        }
        let mut wanted: std::collections::HashSet<String> = req.chunks.into_iter().collect();
        if let Some(stranger) = wanted.iter().find(|h| !manifest.chunks.iter().any(|c| &c.hash == *h)) {
            let _ =
                tx.blocking_send(Err(Status::invalid_argument(format!("chunks: {stranger} is not a chunk of {blob}"))));
            return;
        }
        let all = wanted.is_empty();
        let mut chunks = manifest.chunks.iter();
        loop {
            let next = if all {
                reader.next_chunk()
            } else {
                match chunks.find(|c| wanted.remove(&c.hash)) {
                    Some(c) => s.read_chunk(&c.hash).map(|data| Some((c.hash.clone(), data))),
                    None => Ok(None),
                }
            };
            let part = match next {
                Ok(Some((hash, data))) => Ok(BlobPart { part: Some(blob_part::Part::Chunk(BlobChunk { hash, data })) }),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(%blob, error = %e, "a peer asked for a blob whose copy here is bad");
                    Err(to_status(e))
                }
            };
            let failed = part.is_err();
            if tx.blocking_send(part).is_err() || failed {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}
