//! The node's handle on its Raft group: writes that reach the leader, reads that are
//! linearizable from any node, membership changes, and the node's view of who is up.
//!
//! **Writes.** [`Cluster::propose`] runs a [`Proposal`] on the leader: locally when this node
//! leads, otherwise through the leader's Peer `Forward`. The leader stamps commands with its
//! clock ([`Command::stamp`]) and answers after commit. A forwarded request is never forwarded
//! again: if the receiver has lost leadership it answers "unavailable" and the client retries.
//!
//! **Reads** use the read-index protocol: the leader confirms it still leads with a quorum
//! (`ensure_linearizable`) and names an index; a follower asks the leader for that index over
//! Peer `ReadIndex` and waits until it has applied it. A read that starts after a write was
//! acknowledged anywhere therefore sees it.

mod batcher;
pub mod events;
pub mod images;
mod leader;
pub mod liveness;
pub mod recovery;
pub mod retention;

use std::time::Duration;

use flotilla_proto::peer::{ForwardRequest, ReadIndexRequest};
use flotilla_raft::network::PeerPool;
use flotilla_raft::store::CatalogView;
use flotilla_raft::{codec, Command, NodeId, Proposal, ProposalReply, Raft, Response};
pub use liveness::Liveness;

use crate::error::NodeError;

/// How long a request waits for a leader to be elected before it gives up as unavailable.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// How long a follower waits to apply up to the leader's read index.
const READ_APPLY_WAIT: Duration = Duration::from_secs(5);
/// Deadline of one forwarded request to the leader. Adding a node waits for it to catch up.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a request handler needs to reach the replicated catalog. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub id: NodeId,
    /// This node's advertised address.
    pub addr: String,
    pub raft: Raft,
    /// The catalog as applied on this node.
    pub view: CatalogView,
    /// Clients for this node's own calls to peers.
    pub peers: PeerPool,
    pub liveness: Liveness,
    /// Function inputs running and waiting here and, from their Ping replies, on peers.
    pub load: crate::function::load::Load,
    /// Held by the leader from choosing a node for a workload until that choice is applied.
    pub placement_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Batches this node's catalog writes while it leads.
    pub batcher: batcher::Batcher,
    /// This node's Prometheus series, recorded where things happen (see `metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Unsafe recovery of a cluster that lost its quorum (`remove-node --force`).
    pub recovery: recovery::Recovery,
    /// The images each node's engine has, from liveness pings (see [`images`]).
    pub images: images::ImageInventory,
}

/// This node's view of the group, copied out of openraft's metrics.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// Every member's address.
    pub addrs: std::collections::BTreeMap<NodeId, String>,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
}

impl Cluster {
    /// Starts the write batcher for `raft` (see [`batcher`]).
    pub fn batcher_for(raft: &Raft, id: NodeId) -> batcher::Batcher {
        batcher::Batcher::start(raft.clone(), leader::write_error, id)
    }

    /// A copy of the current Raft metrics that matter here. Never holds the metrics borrow.
    pub fn group(&self) -> GroupView {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        GroupView {
            leader: m.current_leader,
            term: m.current_term,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            addrs: membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
        }
    }

    /// The leader's id and address if this node knows them. On every request's path, so it
    /// reads the metrics in place instead of copying them as [`Self::group`] does.
    pub fn known_leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&leader)?.addr.clone();
        Some((leader, addr))
    }

    /// The leader's id and address, waiting up to [`LEADER_WAIT`] for one to be elected.
    async fn leader(&self) -> Result<(NodeId, String), NodeError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            if let Some(leader) = self.known_leader() {
                return Ok(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Carries out `proposal` on the leader and returns its committed result.
    pub async fn propose(&self, proposal: Proposal) -> Result<ProposalReply, NodeError> {
        let (leader, addr) = self.leader().await?;
        if leader == self.id {
            return self.lead(proposal).await;
        }
        let unreachable = |cause: String| NodeError::LeaderUnreachable { leader, addr: addr.clone(), cause };
        let bytes = codec::encode(&proposal).map_err(|e| NodeError::Internal(e.to_string()))?;
        let mut client = self.peers.get(&addr).map_err(|e| unreachable(e.to_string()))?;
        let mut req = tonic::Request::new(ForwardRequest { proposal: bytes });
        req.set_timeout(FORWARD_TIMEOUT);
        crate::request_id::propagate(&mut req);
        let reply = client.forward(req).await.map_err(|status| match status.code() {
            tonic::Code::Unavailable if status.message().contains("connect") => unreachable(status.to_string()),
            _ => NodeError::Forwarded(status),
        })?;
        codec::decode_untrusted(&reply.into_inner().reply).map_err(|e| NodeError::Internal(e.to_string()))
    }

    /// Proposes a catalog command and returns its response; a catalog rejection is an error.
    pub async fn write(&self, cmd: Command) -> Result<Response, NodeError> {
        match self.propose(Proposal::Write(cmd)).await? {
            ProposalReply::Write(Response::Rejected(r)) => Err(r.into()),
            ProposalReply::Write(resp) => Ok(resp),
            other => Err(NodeError::Internal(format!("unexpected reply to a write: {other:?}"))),
        }
    }

    /// [`Self::write`] for a node's report of what it observed: retried every 200 ms while
    /// there is no leader (or it is unreachable), for up to `within`. A rejection is final at
    /// once (the record moved on) and is returned like any other answer.
    pub async fn write_retrying(&self, cmd: Command, within: Duration) -> Result<Response, NodeError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.write(cmd.clone()).await {
                r @ (Ok(_) | Err(NodeError::Rejected(_))) => return r,
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Returns once this node's catalog reflects every write acknowledged before the call.
    pub async fn linearizable(&self) -> Result<(), NodeError> {
        let (leader, addr) = self.leader().await?;
        let index = if leader == self.id {
            self.read_index().await?
        } else {
            let mut client = self.peers.get(&addr).map_err(|e| NodeError::LeaderUnreachable {
                leader,
                addr: addr.clone(),
                cause: e.to_string(),
            })?;
            let mut req = tonic::Request::new(ReadIndexRequest {});
            req.set_timeout(READ_APPLY_WAIT);
            crate::request_id::propagate(&mut req);
            client.read_index(req).await.map_err(NodeError::Forwarded)?.into_inner().index
        };
        self.raft
            .wait(Some(READ_APPLY_WAIT))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|e| NodeError::Stopped(format!("waiting to apply index {index}: {e}")))?;
        Ok(())
    }
}
