//! What only the leader does: propose stamped commands, change membership, name read indexes.
//! Called for local requests when this node leads, and by the Peer service for forwarded ones.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_proto::peer::PingRequest;
use flotilla_raft::{Command, EventKind, Node, NodeId, Proposal, ProposalReply};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::Cluster;
use crate::error::NodeError;
use crate::placement;

/// openraft's write error as the node's: "not leader" and "stopped" are retryable.
pub fn write_error(id: NodeId, e: WriteError) -> NodeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => NodeError::NotLeader(id),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            NodeError::Membership(membership_message(&c))
        }
        RaftError::Fatal(f) => NodeError::Stopped(f.to_string()),
    }
}

/// openraft's membership error in words; its own text shows `LogId` structs, which mean
/// nothing to an operator.
fn membership_message(e: &openraft::error::ChangeMembershipError<NodeId>) -> String {
    use openraft::error::ChangeMembershipError as E;
    match e {
        E::InProgress(_) => "another membership change is still in progress; retry when it has finished".into(),
        E::EmptyMembership(_) => "the cluster would have no voters left".into(),
        E::LearnerNotFound(l) => format!("node {} is not a learner of this cluster; add it first", l.node_id),
    }
}

/// How long placement waits for a first registered, live node.
const NO_NODES_WAIT: Duration = Duration::from_secs(10);

/// How long a joining node may take to catch up as a learner before the add fails.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `add-node` keeps asking a node to answer before it refuses to add it.
const PROBE_FOR: Duration = Duration::from_secs(5);
/// Deadline of one probe of a node being added.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

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
                let placed = self.place(req, Some(&spec.image)).await;
                if let Err(e) = &placed {
                    let subject = name.clone().unwrap_or_else(|| "sandbox".to_string());
                    self.record_event(EventKind::Placement, subject, format!("a sandbox cannot be placed: {e}"), None);
                }
                let placement::Placed { node, gpus } = placed?;
                let id = format!("sb-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
                let at_ms = chrono::Utc::now().timestamp_millis();
                let cmd = Command::CreateSandbox { id, name, spec, node, gpus, request_id, at_ms };
                let resp = self.raft.client_write(cmd).await.map_err(|e| self.write_error(e))?;
                Ok(ProposalReply::Write(resp.data))
            }
        }
    }

    /// Picks a node for a new workload, preferring nodes that have its `image` (see
    /// [`super::images`]). Right after the cluster starts, nodes are still registering (and
    /// being probed); a request that finds no node at all waits for one for a few seconds
    /// instead of failing.
    pub(crate) async fn place(
        &self,
        req: placement::Request<'_>,
        image: Option<&str>,
    ) -> Result<placement::Placed, NodeError> {
        self.try_place(req, image).await.map_err(|e| NodeError::NoCapacity(e.to_string()))
    }

    /// [`Self::place`] with the typed reason when nothing fits.
    pub(crate) async fn try_place(
        &self,
        req: placement::Request<'_>,
        image: Option<&str>,
    ) -> Result<placement::Placed, placement::PlacementError> {
        let has_image = |node| image.is_some_and(|i| self.images.has(node, i));
        let deadline = tokio::time::Instant::now() + NO_NODES_WAIT;
        loop {
            let candidates = self.view.read(|c| placement::candidates(c, |id| self.liveness.is_up(id)));
            match placement::place_preferring(&candidates, req, has_image) {
                Err(placement::PlacementError::NoNodes) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                result => return result,
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
        self.probe(id, &addr).await?;
        tracing::info!(node = id, %addr, "node answered; adding it as a learner");
        // Not openraft's blocking add: it counts a learner that never answered as caught up
        // while the log is short. Catching up is judged here, from what the node acknowledged.
        let added = self.raft.add_learner(id, Node::new(addr.clone()), false).await.map_err(|e| self.write_error(e))?;
        let target = added.log_id.index;
        let caught_up = self
            .raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .is_some_and(|matched| matched.is_some_and(|l| l.index >= target))
                },
                "learner caught up",
            )
            .await;
        if caught_up.is_err() {
            // Leave the membership as it was: the learner goes again (a learner is not in any
            // quorum, so this needs only the voters).
            if let Err(e) = self.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await {
                tracing::warn!(node = id, error = %e, "learner that did not catch up not removed");
            }
            return Err(NodeError::NodeUnreachable {
                id,
                addr,
                cause: format!("answered but did not catch up within {CATCH_UP_TIMEOUT:?}; not added"),
            });
        }
        tracing::info!(node = id, "learner caught up; promoting to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(self.membership_reply())
    }

    /// Asks the node at `addr` who it is (Peer `Ping`), retrying for up to [`PROBE_FOR`]. A
    /// node is added only once it has answered as node `id`: a wrong address must not become
    /// a voter that never answers, which would leave the cluster without a write quorum.
    async fn probe(&self, id: NodeId, addr: &str) -> Result<(), NodeError> {
        let deadline = tokio::time::Instant::now() + PROBE_FOR;
        loop {
            let cause = match self.peers.get(addr) {
                Err(e) => e.to_string(),
                Ok(mut client) => {
                    let mut req = tonic::Request::new(PingRequest { from: self.id, leading: true, adding: true });
                    req.set_timeout(PROBE_TIMEOUT);
                    match client.ping(req).await {
                        Ok(reply) if reply.get_ref().node_id == id => return Ok(()),
                        Ok(reply) => {
                            return Err(NodeError::NodeUnreachable {
                                id,
                                addr: addr.to_string(),
                                cause: format!("the node there is node {}; not added", reply.get_ref().node_id),
                            })
                        }
                        Err(status) if status.message().starts_with(crate::grpc::OTHER_CLUSTER) => {
                            return Err(NodeError::NodeUnreachable {
                                id,
                                addr: addr.to_string(),
                                cause: format!("{}; not added", status.message()),
                            })
                        }
                        Err(status) => status.message().to_string(),
                    }
                }
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::NodeUnreachable {
                    id,
                    addr: addr.to_string(),
                    cause: format!("no answer within {PROBE_FOR:?} ({cause}); not added, nothing changed"),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
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
        // Without a quorum the change could never commit and the caller would wait for good.
        if !self.has_quorum().await {
            return Err(NodeError::Membership(format!(
                "the cluster has no quorum (voters {:?}, not enough of them answer), so no membership change can \
                 commit; if the missing voters are gone for good, `remove-node {id} --force` recovers (read its help \
                 first)",
                g.voters
            )));
        }
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
