//! What only the leader does: propose stamped commands, change membership, name read indexes.
//! Called for local requests when this node leads, and by the Peer service for forwarded ones.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_raft::{Command, Node, NodeId, Proposal, ProposalReply};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::Cluster;
use crate::error::NodeError;
use crate::placement;

/// openraft's write error as the node's: "not leader" and "stopped" are retryable.
pub fn write_error(id: NodeId, e: WriteError) -> NodeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => NodeError::NotLeader(id),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => NodeError::Membership(c.to_string()),
        RaftError::Fatal(f) => NodeError::Stopped(f.to_string()),
    }
}

/// How long placement waits for a first registered, live node.
const NO_NODES_WAIT: Duration = Duration::from_secs(10);

/// How long a joining node may take to catch up as a learner before the add fails.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

use super::batcher::WriteError;

impl Cluster {
    /// Carries out a proposal on this node, which must be the leader.
    pub async fn lead(&self, proposal: Proposal) -> Result<ProposalReply, NodeError> {
        match proposal {
            Proposal::Write(mut cmd) => {
                cmd.stamp(chrono::Utc::now().timestamp_millis());
                Ok(ProposalReply::Write(self.batcher.submit(cmd).await?))
            }
            Proposal::AddNode { id, addr } => self.add_node(id, addr).await,
            Proposal::RemoveNode { id } => self.remove_node(id).await,
            Proposal::CreateSandbox { name, spec, request_id } => {
                // Placement reads the applied catalog, so concurrent creates must not choose
                // before the previous one is applied, or they would all pick the same node.
                let _placing = self.placement_lock.lock().await;
                // A retry of a create that already happened answers with that sandbox, even
                // on a cluster that is now full.
                if let Some(rid) = &request_id {
                    if let Some(sb) = self.view.read(|c| c.sandbox_for_request(rid).cloned()) {
                        return Ok(ProposalReply::Write(flotilla_raft::Response::Sandbox(sb)));
                    }
                }
                let req = placement::Request { cpu: spec.cpu, memory_mib: spec.memory_mib, gpu: spec.gpu.as_ref() };
                let placement::Placed { node, gpus } = self.place(req).await?;
                let id = format!("sb-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
                let at_ms = chrono::Utc::now().timestamp_millis();
                let cmd = Command::CreateSandbox { id, name, spec, node, gpus, request_id, at_ms };
                let resp = self.raft.client_write(cmd).await.map_err(|e| self.write_error(e))?;
                Ok(ProposalReply::Write(resp.data))
            }
        }
    }

    /// Picks a node for a new workload. Right after the cluster starts, nodes are still
    /// registering (and being probed); a request that finds no node at all waits for one
    /// for a few seconds instead of failing.
    pub(crate) async fn place(&self, req: placement::Request<'_>) -> Result<placement::Placed, NodeError> {
        let deadline = tokio::time::Instant::now() + NO_NODES_WAIT;
        loop {
            let candidates = self.view.read(|c| placement::candidates(c, |id| self.liveness.is_up(id)));
            match placement::place(&candidates, req) {
                Ok(placed) => return Ok(placed),
                Err(placement::PlacementError::NoNodes) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(NodeError::NoCapacity(e.to_string())),
            }
        }
    }

    /// Confirms leadership with a quorum and returns the index a linearizable read must see:
    /// the end of this leader's log, not only what it knows to be committed.
    ///
    /// openraft answers with `max(committed, the term's first entry)`. A leader SIGKILLed and
    /// restarted within its term (before anyone else was elected) comes back leading the same
    /// term with the committed index it last *saved*, which is not flushed on its own
    /// (raft/src/store/log.rs), so entries committed and acknowledged before the kill could be
    /// beyond it, and a read would miss acknowledged writes (R4 in docs/reliability.md). Every
    /// committed entry is in the leader's log, so its last index is a safe read index; the
    /// read then waits for entries still in flight to commit and apply.
    pub async fn read_index(&self) -> Result<u64, NodeError> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => {
                let last = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
                Ok(log_id.map_or(0, |l| l.index).max(last))
            }
            Err(RaftError::APIError(_)) => Err(NodeError::NotLeader(self.id)),
            Err(RaftError::Fatal(f)) => Err(NodeError::Stopped(f.to_string())),
        }
    }

    fn write_error(&self, e: WriteError) -> NodeError {
        write_error(self.id, e)
    }

    fn membership_reply(&self) -> ProposalReply {
        let g = self.group();
        ProposalReply::Membership { voters: g.voters, learners: g.learners }
    }

    async fn add_node(&self, id: NodeId, addr: String) -> Result<ProposalReply, NodeError> {
        if id == 0 {
            return Err(NodeError::invalid("id", "must be 1 or more"));
        }
        if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
            return Err(NodeError::invalid("addr", format!("{addr:?} is not HOST:PORT")));
        }
        let g = self.group();
        if let Some(known) = g.addrs.get(&id) {
            if *known != addr {
                return Err(NodeError::Membership(format!(
                    "node {id} is already a member at {known}; remove it first to move it to {addr}"
                )));
            }
            if g.voters.contains(&id) {
                return Ok(self.membership_reply());
            }
        }
        tracing::info!(node = id, %addr, "adding node as a learner");
        let added = tokio::time::timeout(CATCH_UP_TIMEOUT, self.raft.add_learner(id, Node::new(addr.clone()), true))
            .await
            .map_err(|_| NodeError::NodeUnreachable {
                id,
                addr: addr.clone(),
                cause: format!("not caught up within {CATCH_UP_TIMEOUT:?}"),
            })?;
        added.map_err(|e| self.write_error(e))?;
        tracing::info!(node = id, "learner caught up; promoting to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(self.membership_reply())
    }

    async fn remove_node(&self, id: NodeId) -> Result<ProposalReply, NodeError> {
        let g = self.group();
        let change = if g.voters.contains(&id) {
            if g.voters.len() == 1 {
                return Err(NodeError::Membership(format!("node {id} is the only voter; it cannot be removed")));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if g.learners.contains(&id) {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(NodeError::invalid("id", format!("node {id} is not a member of the cluster")));
        };
        tracing::info!(node = id, "removing node");
        self.raft.change_membership(change, false).await.map_err(|e| self.write_error(e))?;
        let reply = self.membership_reply();
        // The membership change is what the caller asked for and it is committed; the record
        // is housekeeping, retried by the next remove of the same id if this fails.
        if let Err(e) = self.raft.client_write(Command::ForgetNode { id }).await {
            tracing::warn!(node = id, error = %e, "removed node's catalog record not dropped");
        }
        Ok(reply)
    }
}
