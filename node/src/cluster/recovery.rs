//! Unsafe recovery: `flotilla cluster remove-node ID --force`, for a cluster whose quorum is
//! lost for good (a voter that never answered, or voters whose machines are gone).
//!
//! openraft changes membership only through a committed entry, which needs the quorum that is
//! missing. Raft's effective membership, though, is the **last membership entry in a node's
//! log, committed or not**. So the recovery writes one by hand, like etcd's
//! `--force-new-cluster`:
//!
//! 1. **Check** (`term = 0`): the CLI asks every member it can reach. Each refuses while the
//!    cluster has a quorum (a read index confirmed by a quorum within [`QUORUM_CHECK`]): the
//!    normal `remove-node` works then, and nothing unsafe is done. Each otherwise reports its
//!    vote term and last log id. The node being removed must not answer at all.
//! 2. **Write** on **one** node: the survivor with the most up-to-date log (the highest last
//!    log id, the one Raft would elect), so the fewest acknowledged writes are at risk. The CLI
//!    passes a term above every term any survivor reported; the node raises it above its own
//!    vote if it campaigned since (the others' logs cannot grow without a leader). That node
//!    stops Raft (and its
//!    background work, as on SIGTERM), appends a membership entry without the removed voter
//!    at `last_index + 1` with that term, saves the vote for that term
//!    ([`flotilla_raft::store::LogStore::force_membership`]), and **restarts**: it re-executes
//!    its own binary with the same arguments (same pid), as etcd requires a restart. Its new
//!    Raft takes the new membership, campaigns with a log newer than every survivor's, is
//!    elected with the other survivors' votes, and replicates the entry to them; a survivor's
//!    differing tail is replaced as in any leader change (the entry's term exists nowhere else,
//!    so Log Matching holds).
//!
//! **What can be lost**: writes that were acknowledged but are only on the removed node(s) (a
//! quorum that included them committed entries the chosen survivor never received). That is
//! why it is unsafe, refused while a quorum exists, and documented in docs/reliability.md.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flotilla_raft::store::{ForceError, LogStore};
use flotilla_raft::{Node, NodeId};
use openraft::Membership;
use tokio::sync::{mpsc, oneshot};

use super::Cluster;
use crate::error::NodeError;

/// How long the check waits for a read index confirmed by a quorum before it concludes that
/// the cluster has none. Above the 3 s a follower waits for a leader to be known.
const QUORUM_CHECK: Duration = Duration::from_secs(5);

/// A forced membership entry to write once Raft has stopped, handed to the node's main loop.
pub struct Rewrite {
    /// The lowest term the entry may have: above every term the surviving members reported.
    pub term: u64,
    pub membership: Membership<NodeId, Node>,
    /// Answered once the entry and the vote are durable, just before the node restarts.
    pub done: oneshot::Sender<Result<(), String>>,
}

/// The node's side of the recovery: its log (for positions and the rewrite) and the channel
/// to the main loop, which alone can stop Raft and restart the node. Cheap to clone.
#[derive(Clone)]
pub struct Recovery {
    log: LogStore,
    /// Capacity 1: one recovery at a time; a second one while the first runs is refused.
    tx: mpsc::Sender<Rewrite>,
}

impl Recovery {
    /// The recovery handle over `log`, and the receiver the main loop waits on.
    pub fn new(log: LogStore) -> (Self, mpsc::Receiver<Rewrite>) {
        let (tx, rx) = mpsc::channel(1);
        (Self { log, tx }, rx)
    }

    /// Writes `rewrite`'s entry into `log`, which must be this node's log with Raft stopped.
    pub fn write(&self, node: NodeId, rewrite: Rewrite) {
        // The node's own terms may have grown (it kept campaigning) since the CLI read them.
        let (vote_term, last_term, _) = self.log.position();
        let term = rewrite.term.max(vote_term + 1).max(last_term + 1);
        let result = self.log.force_membership(term, node, rewrite.membership.clone());
        match &result {
            Ok(f) => tracing::warn!(index = f.log_id.index, term, membership = ?rewrite.membership,
                "forced membership entry written (unsafe recovery)"),
            Err(e) => tracing::error!(error = %e, "forced membership entry not written"),
        }
        let _ = rewrite.done.send(result.map(|_| ()).map_err(|e: ForceError| e.to_string()));
    }
}

/// What a node reports to `ForceRemoveNode`.
#[derive(Debug, Clone)]
pub struct Position {
    pub vote_term: u64,
    pub last_log_term: u64,
    pub last_log_index: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub addrs: BTreeMap<NodeId, String>,
}

impl Cluster {
    /// `ForceRemoveNode`: with `term == 0` checks and reports; otherwise also rewrites this
    /// node's membership and has the node restart (see the module doc).
    pub async fn force_remove(&self, id: NodeId, term: u64) -> Result<Position, NodeError> {
        let g = self.group();
        if !g.addrs.contains_key(&id) {
            return Err(NodeError::invalid("id", format!("node {id} is not a member of the cluster")));
        }
        if id == self.id {
            return Err(NodeError::FailedPrecondition(format!(
                "node {id} answered this request itself, so it is not gone; stop it for good first, or use \
                 `remove-node {id}` without --force"
            )));
        }
        let voters: Vec<NodeId> = g.voters.iter().copied().filter(|v| *v != id).collect();
        if voters.is_empty() {
            return Err(NodeError::Membership("the cluster would have no voters left".into()));
        }
        let learners: Vec<NodeId> = g.learners.iter().copied().filter(|v| *v != id).collect();
        if self.has_quorum().await {
            let leader = self.known_leader().map_or("?".to_string(), |(l, _)| l.to_string());
            return Err(NodeError::FailedPrecondition(format!(
                "the cluster has a quorum (leader {leader}): use `remove-node {id}` without --force"
            )));
        }
        let (vote_term, last_log_term, last_log_index) = self.recovery.log.position();
        let position = Position { vote_term, last_log_term, last_log_index, voters, learners, addrs: g.addrs };
        if term == 0 {
            return Ok(position);
        }
        let nodes: BTreeMap<NodeId, Node> =
            position.addrs.iter().filter(|(n, _)| **n != id).map(|(n, addr)| (*n, Node::new(addr.clone()))).collect();
        let config: BTreeSet<NodeId> = position.voters.iter().copied().collect();
        let membership = Membership::new(vec![config], nodes);
        let (done, written) = oneshot::channel();
        self.recovery
            .tx
            .try_send(Rewrite { term, membership, done })
            .map_err(|_| NodeError::FailedPrecondition("a forced removal is already under way on this node".into()))?;
        match written.await {
            Ok(Ok(())) => Ok(position),
            Ok(Err(e)) => Err(NodeError::FailedPrecondition(format!("membership not rewritten: {e}"))),
            Err(_) => Err(NodeError::Stopped("the node stopped before rewriting its membership".into())),
        }
    }

    /// Whether a leader can still confirm its leadership with a quorum (a linearizable read
    /// succeeds) within [`QUORUM_CHECK`]. Retried until then: right after a leader died, this
    /// node may still name it, or no leader is elected yet.
    pub(super) async fn has_quorum(&self) -> bool {
        let deadline = tokio::time::Instant::now() + QUORUM_CHECK;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if matches!(tokio::time::timeout(left, self.linearizable()).await, Ok(Ok(()))) {
                return true;
            }
            if tokio::time::Instant::now() + Duration::from_millis(200) >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
