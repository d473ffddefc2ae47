//! The Raft network over the Peer gRPC service.
//!
//! openraft's RPCs travel as bincode bytes in `flotilla.v1.peer.Peer` (see `peer.proto`): the
//! client half is [`PeerNetwork`]; the server half is the `serve_*` functions, which the node's
//! Peer service calls with the request bytes. A remote Raft error is sent back inside the
//! payload (`Result<Reply, RaftError>`); a transport failure becomes `Unreachable`, so openraft
//! backs off instead of hammering a dead peer.
//!
//! When a cluster secret is configured, every call carries it in the `x-flotilla-secret`
//! metadata entry and the Peer service refuses calls without it.
//!
//! Every call also carries the sender's [`ClusterId`] (`x-flotilla-cluster`), and a node that
//! knows its own refuses a call from another cluster. Without it, a node that comes up at the
//! address of another cluster's dead member (a reinstalled machine, a port handed out again)
//! takes that cluster's heartbeats: its log is overwritten and openraft panics, while the other
//! cluster's members read the stranger's answers as their own.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::peer::peer_client::PeerClient;
use flotilla_proto::peer::RaftMessage;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::codec::{self, CodecError};
use crate::{Node, NodeId, Raft, TypeConfig};

/// Metadata key that carries the cluster secret on Peer calls.
pub const SECRET_HEADER: &str = "x-flotilla-secret";

/// How long a new connection to a peer may take before the call fails as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Metadata key that carries the sender's cluster id on Peer calls.
pub const CLUSTER_HEADER: &str = "x-flotilla-cluster";

/// A Peer client that adds the cluster secret and the cluster id to every call.
pub type AuthedPeerClient = PeerClient<InterceptedService<Channel, SecretInterceptor>>;

/// Adds the cluster secret, when there is one, and this node's cluster id, once known, to
/// each outgoing call.
#[derive(Clone)]
pub struct SecretInterceptor {
    secret: Option<MetadataValue<tonic::metadata::Ascii>>,
    cluster: ClusterId,
}

impl tonic::service::Interceptor for SecretInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(secret) = &self.secret {
            req.metadata_mut().insert(SECRET_HEADER, secret.clone());
        }
        if let Some(id) = self.cluster.header() {
            req.metadata_mut().insert(CLUSTER_HEADER, id);
        }
        Ok(req)
    }
}

/// Which cluster this node belongs to: made when the cluster is formed (random for a
/// bootstrapped one, derived from `--initial-cluster` so that every initial member agrees),
/// learnt by a node that joins from its seed's answer or by a node waiting to be added from
/// the leader's add-node probe ([`ClusterId::learn`]), and kept in a file of the data dir.
/// Clones share it.
#[derive(Clone, Default)]
pub struct ClusterId {
    id: Arc<std::sync::RwLock<Option<MetadataValue<tonic::metadata::Ascii>>>>,
    file: Option<Arc<std::path::Path>>,
}

/// How [`ClusterId::admit`] judged a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// From this node's cluster, or from a caller that named none.
    Yes,
    /// This node knows no cluster yet, and the call names `0`: only an add-node probe may
    /// teach it; Raft messages must wait (the caller may be a stranger calling a reused address).
    Unverified(String),
}

/// A call from another cluster than this node's.
#[derive(Debug, PartialEq, Eq)]
pub struct OtherCluster {
    pub ours: String,
    pub theirs: String,
}

impl ClusterId {
    /// The id kept in `file`, or else `fresh` (written to `file` at once); none if neither. An
    /// empty file (a crash before its write reached the disk) counts as none.
    pub fn open(file: &std::path::Path, fresh: Option<String>) -> std::io::Result<Self> {
        let this = Self { id: Default::default(), file: Some(file.into()) };
        let kept = match std::fs::read_to_string(file) {
            Ok(kept) => Some(kept.trim().to_string()).filter(|k| !k.is_empty()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match (kept, fresh) {
            (Some(id), _) => this.set(&id)?,
            (None, Some(id)) => this.adopt(&id)?,
            (None, None) => {}
        }
        Ok(this)
    }

    /// The id, once known.
    pub fn get(&self) -> Option<String> {
        self.header().map(|v| v.to_str().unwrap_or_default().to_string())
    }

    fn header(&self) -> Option<MetadataValue<tonic::metadata::Ascii>> {
        self.id.read().expect("cluster id lock poisoned").clone()
    }

    fn set(&self, id: &str) -> std::io::Result<()> {
        let value = id.parse().map_err(|_| std::io::Error::other(format!("cluster id {id:?} is not ASCII")))?;
        *self.id.write().expect("cluster id lock poisoned") = Some(value);
        Ok(())
    }

    /// Takes `id` as this node's and keeps it durably (temp file synced, renamed, directory
    /// synced) before using it.
    fn adopt(&self, id: &str) -> std::io::Result<()> {
        if let Some(file) = &self.file {
            let tmp = file.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, file)?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        self.set(id)
    }

    /// Learns `id` from a source this node trusts (its join seed's answer, the leader's
    /// add-node probe) when it has none; refuses an id other than the one it has.
    pub fn learn(&self, id: &str) -> Result<(), OtherCluster> {
        match self.get() {
            Some(ours) if ours != id => Err(OtherCluster { ours, theirs: id.to_string() }),
            Some(_) => Ok(()),
            None if id.is_empty() => Ok(()),
            None => {
                if let Err(e) = self.adopt(id) {
                    tracing::warn!(error = %e, "the cluster id learnt from a peer was not kept");
                }
                tracing::info!(cluster = id, "learnt this node's cluster id");
                Ok(())
            }
        }
    }

    /// Judges a call that presented `theirs`: refused when it names another cluster than this
    /// node's; [`Admitted::Unverified`] when this node has none yet.
    pub fn admit(&self, theirs: Option<&str>) -> Result<Admitted, OtherCluster> {
        let Some(theirs) = theirs else { return Ok(Admitted::Yes) };
        match self.get() {
            Some(ours) if ours != theirs => Err(OtherCluster { ours, theirs: theirs.to_string() }),
            Some(_) => Ok(Admitted::Yes),
            None => Ok(Admitted::Unverified(theirs.to_string())),
        }
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HTTP/2 flow-control windows of bulk-transfer channels, bytes: a few 1 MiB messages in
/// flight per stream instead of h2's default 64 KiB.
pub const BULK_STREAM_WINDOW: u32 = 8 << 20;
pub const BULK_CONNECTION_WINDOW: u32 = 16 << 20;

/// How this node reaches and proves itself to peers: the cluster secret (empty means
/// none), when TLS is configured the CA that peers' certificates must chain to, the local
/// address its connections to peers start from, and the id of its cluster.
#[derive(Clone, Default)]
pub struct ClusterSecret(Option<Arc<str>>, Option<Arc<Vec<u8>>>, Option<IpAddr>, ClusterId);

impl ClusterSecret {
    /// `None` or an empty string disables peer authentication.
    pub fn new(secret: Option<String>) -> Self {
        Self(secret.filter(|s| !s.is_empty()).map(Into::into), None, None, ClusterId::default())
    }

    /// Calls carry this cluster id, and [`Self::cluster`] judges the ids calls present.
    pub fn with_cluster(mut self, id: ClusterId) -> Self {
        self.3 = id;
        self
    }

    /// This node's cluster id.
    pub fn cluster(&self) -> &ClusterId {
        &self.3
    }

    /// Peers are reached over TLS and must present a certificate signed by this CA (PEM).
    pub fn with_tls_ca(mut self, ca_pem: Vec<u8>) -> Self {
        self.1 = Some(Arc::new(ca_pem));
        self
    }

    /// Connections to peers start from `ip` (the address the node serves on), so peers and
    /// firewall rules see a node's traffic coming from that address. Without it the kernel
    /// picks the source: on loopback always 127.0.0.1, whatever address the node serves on.
    pub fn with_source_ip(mut self, ip: IpAddr) -> Self {
        self.2 = Some(ip);
        self
    }

    /// A channel to `addr` (`host:port`), over TLS when a CA is configured. Lazy: creating
    /// it never fails on a dead peer.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        self.channel_with(addr, |e| e)
    }

    /// A channel of its own for a bulk transfer (snapshot blobs), with HTTP/2 flow-control
    /// windows sized for megabyte messages. Kept apart from the shared channel, so a transfer
    /// that fills its window never delays Raft messages to the same peer.
    pub fn bulk_channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        self.channel_with(addr, |e| {
            e.initial_stream_window_size(BULK_STREAM_WINDOW).initial_connection_window_size(BULK_CONNECTION_WINDOW)
        })
    }

    fn channel_with(
        &self,
        addr: &str,
        tune: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        let scheme = if self.1.is_some() { "https" } else { "http" };
        let mut endpoint = tune(
            Endpoint::from_shared(format!("{scheme}://{addr}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .local_address(self.2),
        );
        if let Some(ca) = &self.1 {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca.as_slice()))
                .domain_name(host);
            endpoint = endpoint.tls_config(tls)?;
        }
        Ok(endpoint.connect_lazy())
    }

    /// Whether a call's presented secret matches. Constant-time in the secret's length.
    pub fn accepts(&self, presented: Option<&[u8]>) -> bool {
        match (&self.0, presented) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got),
        }
    }

    /// A client for the Peer service at `addr` (`host:port`). Connects lazily: the first call
    /// makes the connection, so creating a client never fails on a dead peer.
    pub fn client(&self, addr: &str) -> Result<AuthedPeerClient, tonic::transport::Error> {
        Ok(self.client_on(self.channel(addr)?))
    }

    /// A Peer client over an existing channel, carrying the secret.
    pub fn client_on(&self, channel: Channel) -> AuthedPeerClient {
        let secret = self.0.as_ref().map(|s| s.parse().expect("secret must be ASCII; validated in config"));
        PeerClient::with_interceptor(channel, SecretInterceptor { secret, cluster: self.3.clone() })
            .max_decoding_message_size(64 << 20)
    }
}

/// Channels to other nodes by address, made once and reused (a tonic channel multiplexes
/// calls), for the node's own calls to peers: Peer calls (forwarding, read index, probes)
/// and proxied Worker calls share one connection per peer.
#[derive(Clone, Default)]
pub struct PeerPool {
    secret: ClusterSecret,
    channels: Arc<std::sync::Mutex<std::collections::HashMap<String, Channel>>>,
}

impl PeerPool {
    pub fn new(secret: ClusterSecret) -> Self {
        Self { secret, channels: Default::default() }
    }

    /// The channel to `addr` (over TLS when the cluster uses it), created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().expect("peer pool lock poisoned");
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = self.secret.channel(addr)?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A Peer client for `addr` on a new connection of its own, for a bulk transfer (see
    /// [`ClusterSecret::bulk_channel`]); not cached, it closes when dropped.
    pub fn bulk(&self, addr: &str) -> Result<AuthedPeerClient, tonic::transport::Error> {
        Ok(self.secret.client_on(self.secret.bulk_channel(addr)?))
    }

    /// This node's cluster id.
    pub fn cluster_id(&self) -> &ClusterId {
        self.secret.cluster()
    }

    /// A Peer client for `addr`, on the shared channel.
    pub fn get(&self, addr: &str) -> Result<AuthedPeerClient, tonic::transport::Error> {
        Ok(self.secret.client_on(self.channel(addr)?))
    }
}

/// openraft's network factory: one [`PeerConnection`] per target node.
#[derive(Clone)]
pub struct PeerNetwork {
    secret: ClusterSecret,
}

impl PeerNetwork {
    pub fn new(secret: ClusterSecret) -> Self {
        Self { secret }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerConnection { target, client: self.secret.client(&node.addr).map_err(|e| e.to_string()) }
    }
}

/// The connection to one peer, used by openraft's replication and election tasks.
pub struct PeerConnection {
    target: NodeId,
    /// An invalid address is reported on every call as a network error.
    client: Result<AuthedPeerClient, String>,
}

type RpcResult<Resp, E> = Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(&mut self, method: Method, req: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(e.clone())))),
        };
        let payload = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = RaftMessage { payload };
        let call = async {
            match method {
                Method::Append => client.append_entries(msg).await,
                Method::Vote => client.vote(msg).await,
                Method::Snapshot => client.install_snapshot(msg).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Err(elapsed) => return Err(RPCError::Unreachable(Unreachable::new(&elapsed))),
            Ok(Err(status)) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode_untrusted(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(Method::Vote, &rpc, &option).await
    }
}

/// Serves an AppendEntries payload: decode, hand to Raft, encode the result.
pub async fn serve_append_entries(raft: &Raft, payload: &[u8]) -> Result<Vec<u8>, CodecError> {
    let req: AppendEntriesRequest<TypeConfig> = codec::decode_untrusted(payload)?;
    codec::encode(&raft.append_entries(req).await)
}

/// Serves a Vote payload.
pub async fn serve_vote(raft: &Raft, payload: &[u8]) -> Result<Vec<u8>, CodecError> {
    let req: VoteRequest<NodeId> = codec::decode_untrusted(payload)?;
    codec::encode(&raft.vote(req).await)
}

/// Serves one InstallSnapshot chunk.
pub async fn serve_install_snapshot(raft: &Raft, payload: &[u8]) -> Result<Vec<u8>, CodecError> {
    let req: InstallSnapshotRequest<TypeConfig> = codec::decode_untrusted(payload)?;
    codec::encode(&raft.install_snapshot(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partitions between loopback addresses (chaos-tests) match on the source address, so a
    /// node serving on 127.0.0.2 must reach its peers from 127.0.0.2, not the kernel's 127.0.0.1.
    #[tokio::test]
    async fn peer_connections_start_from_the_source_ip() {
        let listener = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let secret = ClusterSecret::new(None).with_source_ip("127.0.0.2".parse().unwrap());
        let mut client = secret.client(&addr).unwrap();
        let call = tokio::spawn(async move {
            client.ping(flotilla_proto::peer::PingRequest { from: 1, leading: false, adding: false }).await
        });
        let (_conn, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.2");
        call.abort();
    }

    /// A node without an id admits calls as unverified until it learns one from a trusted
    /// source, and keeps it across restarts; from then on only that one is admitted. A call
    /// without an id (a node not yet told) passes. An empty file is no id.
    #[test]
    fn a_cluster_id_is_learnt_once_then_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster_id");
        std::fs::write(&file, "\n").unwrap();
        let id = ClusterId::open(&file, None).unwrap();
        assert_eq!(id.get(), None);
        assert_eq!(id.admit(None), Ok(Admitted::Yes));
        assert_eq!(id.admit(Some("aaa")), Ok(Admitted::Unverified("aaa".into())));
        assert_eq!(id.get(), None, "a call alone does not teach it");
        assert_eq!(id.learn("aaa"), Ok(()));
        assert_eq!(id.get().as_deref(), Some("aaa"));
        assert_eq!(id.admit(Some("aaa")), Ok(Admitted::Yes));
        assert_eq!(id.admit(Some("bbb")).unwrap_err(), OtherCluster { ours: "aaa".into(), theirs: "bbb".into() });
        assert!(id.learn("bbb").is_err());

        // Reopened with a fresh id offered: the kept one wins.
        let reopened = ClusterId::open(&file, Some("ccc".into())).unwrap();
        assert_eq!(reopened.get().as_deref(), Some("aaa"));
        assert!(reopened.admit(Some("ccc")).is_err());
        assert_eq!(reopened.admit(None), Ok(Admitted::Yes));
    }
}
