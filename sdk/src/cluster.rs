//! Cluster membership and status.

use flotilla_proto::control as pb;
use serde::Serialize;

use crate::client::Client;
use crate::error::Result;

/// The cluster as seen by the node that answered (`flotilla cluster status`).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Current leader's node id, if one is known.
    pub leader: Option<u64>,
    /// Current Raft term.
    pub term: u64,
    pub nodes: Vec<NodeInfo>,
    /// Node that answered.
    pub answered_by: u64,
    /// Last log index on the answering node.
    pub last_log_index: u64,
    /// Last applied index on the answering node.
    pub last_applied: u64,
    /// Log index up to which the answering node has compacted its log into a snapshot.
    pub snapshot_index: u64,
    /// Log index up to which the answering node has purged its log.
    pub purged_index: u64,
}

/// One member of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub id: u64,
    /// Peer/Control address, `host:port`.
    pub addr: String,
    /// `leader`, `follower` or `learner`.
    pub role: String,
    /// `up` or `down`, from the answering node's liveness probes.
    pub status: String,
    pub gpus: Vec<GpuInfo>,
    /// Logical CPUs the node offers (0 until it has registered).
    pub cpus: u32,
    /// Memory the node offers, MiB (0 until it has registered).
    pub memory_mib: u64,
}

/// A GPU slot on a node.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    pub index: u32,
    pub model: String,
    /// Holder of the slot's lease, if any.
    pub leased_to: Option<String>,
}

/// Voters and learners after a membership change.
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// One member's answer to a forced removal (`remove-node --force`): where its log stands,
/// and the membership without the removed node.
#[derive(Debug, Clone, Serialize)]
pub struct ForcePosition {
    /// The member that answered.
    pub node_id: u64,
    /// Its vote's term.
    pub vote_term: u64,
    /// Its last log entry's term and index.
    pub last_log_term: u64,
    pub last_log_index: u64,
    /// Voters and learners without the removed node.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Every member's address before the change.
    pub addrs: std::collections::BTreeMap<u64, String>,
}

impl From<pb::ForceRemoveNodeReply> for ForcePosition {
    fn from(r: pb::ForceRemoveNodeReply) -> Self {
        ForcePosition {
            node_id: r.node_id,
            vote_term: r.vote_term,
            last_log_term: r.last_log_term,
            last_log_index: r.last_log_index,
            voters: r.voters,
            learners: r.learners,
            addrs: r.addrs.into_iter().collect(),
        }
    }
}

impl From<pb::ClusterStatusReply> for ClusterStatus {
    fn from(r: pb::ClusterStatusReply) -> Self {
        ClusterStatus {
            leader: r.leader,
            term: r.term,
            answered_by: r.answered_by,
            last_log_index: r.last_log_index,
            last_applied: r.last_applied,
            snapshot_index: r.snapshot_index,
            purged_index: r.purged_index,
            nodes: r
                .nodes
                .into_iter()
                .map(|n| NodeInfo {
                    id: n.id,
                    addr: n.addr,
                    role: n.role,
                    status: n.status,
                    cpus: n.cpus,
                    memory_mib: n.memory_mib,
                    gpus: n
                        .gpus
                        .into_iter()
                        .map(|g| GpuInfo { index: g.index, model: g.model, leased_to: g.leased_to })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<pb::MembershipReply> for Membership {
    fn from(r: pb::MembershipReply) -> Self {
        Membership { voters: r.voters, learners: r.learners }
    }
}

impl Client {
    /// Leader, term and every member's role and liveness.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        self.control(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await }).await.map(Into::into)
    }

    /// Adds node `id` at `addr` (`host:port`): a learner until it has caught up, then a voter.
    /// The node must be running (started with `--join` or with no bootstrap flag).
    pub async fn add_node(&self, id: u64, addr: &str) -> Result<Membership> {
        let req = pb::AddNodeRequest { id, addr: addr.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.add_node(req).await }
        })
        .await
        .map(Into::into)
    }

    /// Removes node `id` from the cluster.
    pub async fn remove_node(&self, id: u64) -> Result<Membership> {
        self.control(|mut c| async move { c.remove_node(pb::RemoveNodeRequest { id }).await }).await.map(Into::into)
    }

    /// **Unsafe recovery** of a cluster that lost its quorum for good, on the node this client
    /// reaches: with `term` 0 only checks (refused while the cluster has a quorum) and reports
    /// the node's position; otherwise the node appends a membership entry without `id` in
    /// `term` to its log and restarts. `flotilla cluster remove-node --force` drives it.
    pub async fn force_remove_node(&self, id: u64, term: u64) -> Result<ForcePosition> {
        self.control(|mut c| async move { c.force_remove_node(pb::ForceRemoveNodeRequest { id, term }).await })
            .await
            .map(Into::into)
    }
}
