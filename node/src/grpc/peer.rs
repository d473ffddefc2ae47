//! The Peer service: Raft RPCs, forwarded writes, read index and probes between nodes.
//! Authenticated by [`authenticate`] when a cluster secret is configured.

use flotilla_proto::peer::peer_server::Peer;
use flotilla_proto::peer::{
    BlobPart, FetchBlobRequest, ForwardReply, ForwardRequest, MissingChunksReply, MissingChunksRequest, PingReply,
    PingRequest, PushBlobReply, RaftMessage, ReadIndexReply, ReadIndexRequest,
};
use flotilla_raft::network::{self, Admitted, ClusterSecret, OtherCluster, CLUSTER_HEADER, SECRET_HEADER};
use flotilla_raft::{codec, Proposal};
use tonic::{Request, Response, Status, Streaming};

use crate::blobs::{transfer, BlobStore};
use crate::cluster::Cluster;

/// Rejects a Peer call that does not carry the cluster secret, or that comes from another
/// cluster (FAILED_PRECONDITION, both ids named).
pub fn authenticate(secret: ClusterSecret) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    // When a call from another cluster was last logged: its members call every heartbeat.
    let warned = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    move |req: Request<()>| {
        let presented = req.metadata().get(SECRET_HEADER).map(|v| v.as_bytes());
        if !secret.accepts(presented) {
            return Err(Status::unauthenticated("peer call refused: missing or wrong cluster secret"));
        }
        let theirs = req.metadata().get(CLUSTER_HEADER).and_then(|v| v.to_str().ok());
        match secret.cluster().admit(theirs) {
            Ok(Admitted::Yes) => Ok(req),
            Ok(Admitted::Unverified(theirs)) => {
                let mut req = req;
                req.extensions_mut().insert(Unverified(theirs));
                Ok(req)
            }
            Err(OtherCluster { ours, theirs }) => {
                let mut last = warned.lock().expect("warned lock poisoned");
                if last.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(60)) {
                    *last = Some(std::time::Instant::now());
                    tracing::warn!(
                        from = ?req.remote_addr(),
                        ours,
                        theirs,
                        "refusing peer calls from another cluster (a member of it is configured with this node's \
                         address); logged once a minute"
                    );
                }
                Err(Status::failed_precondition(format!(
                    "{OTHER_CLUSTER}: this node is of cluster {ours}, the call came from cluster {theirs}"
                )))
            }
        }
    }
}

/// How a refusal of a call from another cluster begins (the add-node probe looks for it).
pub const OTHER_CLUSTER: &str = "peer call refused: another cluster";

/// Set on a call that names a cluster while this node knows none (it waits to be added or is
/// joining): only an add-node probe may teach it the id; Raft messages are refused until then,
/// since the caller may be another cluster's member calling a reused address.
#[derive(Clone)]
struct Unverified(String);

fn refuse_unverified<T>(req: &Request<T>) -> Result<(), Status> {
    match req.extensions().get::<Unverified>() {
        None => Ok(()),
        Some(Unverified(theirs)) => Err(Status::failed_precondition(format!(
            "{OTHER_CLUSTER}: this node belongs to no cluster yet (add it with `cluster add-node`, or start it with \
             --join), and takes no Raft messages from cluster {theirs} before"
        ))),
    }
}

pub struct PeerService {
    pub cluster: Cluster,
    /// This node's snapshot blobs, for transfers.
    pub blobs: BlobStore,
    /// This node's engine, whose images peers may ask for.
    pub docker: crate::runtime::Docker,
    /// Its exports of images to peers.
    pub exports: std::sync::Arc<crate::blobs::image::Exports>,
}

fn bad_payload(e: codec::CodecError) -> Status {
    Status::invalid_argument(format!("payload: {e}"))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        refuse_unverified(&req)?;
        let payload =
            network::serve_append_entries(&self.cluster.raft, &req.into_inner().payload).await.map_err(bad_payload)?;
        Ok(Response::new(RaftMessage { payload }))
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        refuse_unverified(&req)?;
        let payload = network::serve_vote(&self.cluster.raft, &req.into_inner().payload).await.map_err(bad_payload)?;
        Ok(Response::new(RaftMessage { payload }))
    }

    async fn install_snapshot(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        refuse_unverified(&req)?;
        let payload = network::serve_install_snapshot(&self.cluster.raft, &req.into_inner().payload)
            .await
            .map_err(bad_payload)?;
        Ok(Response::new(RaftMessage { payload }))
    }

    async fn forward(&self, req: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
        let proposal: Proposal = codec::decode_untrusted(&req.into_inner().proposal).map_err(bad_payload)?;
        let reply = self.cluster.lead(proposal).await?;
        let reply = codec::encode(&reply).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardReply { reply }))
    }

    async fn read_index(&self, _: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        Ok(Response::new(ReadIndexReply { index: self.cluster.read_index().await? }))
    }

    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let unverified = req.extensions().get::<Unverified>().cloned();
        let req = req.into_inner();
        let cluster_id = self.cluster.peers.cluster_id();
        match unverified {
            // The leader's add-node probe: the cluster this node is being added to.
            Some(Unverified(theirs)) if req.adding => {
                cluster_id.learn(&theirs).map_err(|OtherCluster { ours, theirs }| {
                    Status::failed_precondition(format!(
                        "{OTHER_CLUSTER}: this node is of cluster {ours}, the call came from cluster {theirs}"
                    ))
                })?
            }
            Some(_) => {}
            None => self.cluster.liveness.heard_from(req.from, req.leading),
        }
        let g = self.cluster.group();
        let leader_addr = g.leader.and_then(|l| g.addrs.get(&l).cloned()).unwrap_or_default();
        Ok(Response::new(PingReply {
            node_id: self.cluster.id,
            term: g.term,
            leader: g.leader,
            leader_addr,
            loads: self.cluster.load.report(),
            members: g.addrs.keys().copied().collect(),
            images: self.cluster.images.of(self.cluster.id),
            cluster_id: cluster_id.get().unwrap_or_default(),
        }))
    }

    async fn missing_chunks(&self, req: Request<MissingChunksRequest>) -> Result<Response<MissingChunksReply>, Status> {
        Ok(Response::new(transfer::serve_missing(&self.blobs, req.into_inner()).await?))
    }

    async fn push_blob(&self, req: Request<Streaming<BlobPart>>) -> Result<Response<PushBlobReply>, Status> {
        Ok(Response::new(transfer::serve_push(&self.blobs, req.into_inner()).await?))
    }

    type FetchBlobStream = tokio_stream::wrappers::ReceiverStream<Result<BlobPart, Status>>;

    async fn fetch_blob(&self, req: Request<FetchBlobRequest>) -> Result<Response<Self::FetchBlobStream>, Status> {
        Ok(Response::new(transfer::serve_fetch(&self.blobs, req.into_inner())?))
    }

    async fn export_image(
        &self,
        req: Request<flotilla_proto::peer::ExportImageRequest>,
    ) -> Result<Response<flotilla_proto::peer::ExportImageReply>, Status> {
        let name = req.into_inner().name;
        let entries = crate::blobs::image::export(&self.exports, &self.docker, &self.blobs, &name).await?;
        Ok(Response::new(flotilla_proto::peer::ExportImageReply { entries }))
    }
}
