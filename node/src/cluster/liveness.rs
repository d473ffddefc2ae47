//! Which members answer. Every node probes every other member with Peer `Ping` and remembers
//! when each last answered (and the function load each reports, for the autoscaler);
//! `cluster status` reports a member `down` when it has not answered for [`DOWN_AFTER`].
//! Liveness is local and in memory: nothing here goes through Raft.
//!
//! Both a probe and its answer say whether their sender leads the group, so a node knows
//! when it last had two-way contact with a *sitting* leader: self-fencing
//! ([`crate::sandbox::fence`]) keeps a node's sandboxes serving only while it has, because only
//! a leader moves them and it judges a node by its own probes. A deposed leader says so in its
//! next probe, so contact with it stops counting at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_proto::peer::{PingReply, PingRequest};
use flotilla_raft::NodeId;
use tokio::sync::watch;

use super::Cluster;

/// Period of the probe round.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Deadline of one probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// A member that has not answered for this long is reported down.
pub const DOWN_AFTER: Duration = Duration::from_secs(2);

/// When each member last answered a probe. Shared; the lock is held only to read or write
/// the map, never across an `.await`.
#[derive(Clone, Default)]
pub struct Liveness {
    last_seen: Arc<Mutex<HashMap<NodeId, Instant>>>,
    /// When each member's own probe last reached this node (the other direction).
    last_heard: Arc<Mutex<HashMap<NodeId, Instant>>>,
    /// `last_seen` and `last_heard` counting only answers and probes that said their sender led.
    leader_seen: Arc<Mutex<HashMap<NodeId, Instant>>>,
    leader_heard: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl Liveness {
    /// Whether `id` answered within [`DOWN_AFTER`].
    pub fn is_up(&self, id: NodeId) -> bool {
        let seen = self.last_seen.lock().expect("liveness lock poisoned");
        seen.get(&id).is_some_and(|t| t.elapsed() < DOWN_AFTER)
    }

    /// Whether `id` answered within `window`.
    pub fn seen_within(&self, id: NodeId, window: Duration) -> bool {
        let seen = self.last_seen.lock().expect("liveness lock poisoned");
        seen.get(&id).is_some_and(|t| t.elapsed() < window)
    }

    /// Records that `id`'s probe reached this node, and whether `id` said it led.
    pub fn heard_from(&self, id: NodeId, leading: bool) {
        stamp(&self.last_heard, id);
        if leading {
            stamp(&self.leader_heard, id);
        }
    }

    /// Whether traffic went both ways with `id` within `window`: this node's probe was
    /// answered and `id`'s probe arrived. Self-fencing judges by this, because the leader
    /// judges a node by its own probes, and either direction failing fails those.
    pub fn two_way_within(&self, id: NodeId, window: Duration) -> bool {
        let heard =
            self.last_heard.lock().expect("liveness lock poisoned").get(&id).is_some_and(|t| t.elapsed() < window);
        heard && self.seen_within(id, window)
    }

    /// Whether traffic went both ways within `window` with some member that said it led the
    /// group each way (its probe reached this node, and it answered this node's probe).
    pub fn leader_contact_within(&self, window: Duration) -> bool {
        let heard = self.leader_heard.lock().expect("liveness lock poisoned");
        let seen = self.leader_seen.lock().expect("liveness lock poisoned");
        heard.iter().any(|(id, h)| h.elapsed() < window && seen.get(id).is_some_and(|s| s.elapsed() < window))
    }

    fn saw(&self, id: NodeId, leading: bool) {
        stamp(&self.last_seen, id);
        if leading {
            stamp(&self.leader_seen, id);
        }
    }
}

fn stamp(map: &Mutex<HashMap<NodeId, Instant>>, id: NodeId) {
    map.lock().expect("liveness lock poisoned").insert(id, Instant::now());
}

/// Whether a probe's answer shows that this node was removed from the cluster: it comes from
/// a node that leads in a term not older than this node's, and this node, which counts itself
/// a member, is not in that leader's membership. (A leader's membership includes a node from
/// the moment it appends the entry adding it, before the node can know of it.)
fn shows_removed(me: NodeId, my_term: u64, reply: &PingReply) -> bool {
    reply.leader == Some(reply.node_id) && reply.term >= my_term && !reply.members.contains(&me)
}

/// Probes every member until `shutdown` turns true, or until this node learns that it was
/// removed from the cluster (its own membership, once it had it, no longer lists it, or a
/// sitting leader's answer shows it): then it returns `Removed` (the node exits).
pub async fn run(cluster: Cluster, mut shutdown: watch::Receiver<bool>) -> Option<Removed> {
    let (removed_tx, mut removed_rx) = tokio::sync::mpsc::channel::<Removed>(1);
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut was_member = false;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return None,
            removed = removed_rx.recv() => return removed,
        }
        let group = cluster.group();
        let leading = group.leader == Some(cluster.id);
        let member = group.addrs.contains_key(&cluster.id);
        // The membership this node applied no longer has it (it got the entry removing it).
        if was_member && !member {
            return Some(Removed { by_leader: group.leader, term: group.term });
        }
        was_member |= member;
        cluster.liveness.saw(cluster.id, leading);
        for (id, addr) in group.addrs {
            if id == cluster.id {
                continue;
            }
            let (peers, liveness, from, load, images) = (
                cluster.peers.clone(),
                cluster.liveness.clone(),
                cluster.id,
                cluster.load.clone(),
                cluster.images.clone(),
            );
            let (removed_tx, term) = (removed_tx.clone(), group.term);
            tokio::spawn(async move {
                let Ok(mut client) = peers.get(&addr) else { return };
                let mut req = tonic::Request::new(PingRequest { from, leading, adding: false });
                req.set_timeout(PROBE_TIMEOUT);
                if let Ok(reply) = client.ping(req).await {
                    let reply = reply.into_inner();
                    if member && shows_removed(from, term, &reply) {
                        let _ = removed_tx.try_send(Removed { by_leader: Some(reply.node_id), term: reply.term });
                        return;
                    }
                    liveness.saw(id, reply.leader == Some(reply.node_id));
                    load.record_peer(id, reply.loads);
                    images.record(id, reply.images);
                }
            });
        }
    }
}

/// This node learned that it is no longer a member, from its own applied membership or from
/// a sitting leader's answer; the leader, if known.
#[derive(Debug, Clone, Copy)]
pub struct Removed {
    pub by_leader: Option<NodeId>,
    pub term: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(node_id: NodeId, leader: Option<NodeId>, term: u64, members: &[NodeId]) -> PingReply {
        PingReply { node_id, term, leader, members: members.to_vec(), ..Default::default() }
    }

    #[test]
    fn only_a_current_leader_without_this_node_shows_it_removed() {
        assert!(shows_removed(3, 2, &reply(1, Some(1), 2, &[1, 2])));
        assert!(shows_removed(3, 2, &reply(1, Some(1), 5, &[1, 2])));
        // Still a member; a follower's view; a leader of an older term (deposed, stale view).
        assert!(!shows_removed(3, 2, &reply(1, Some(1), 2, &[1, 2, 3])));
        assert!(!shows_removed(3, 2, &reply(2, Some(1), 2, &[1, 2])));
        assert!(!shows_removed(3, 2, &reply(1, Some(1), 1, &[1, 2])));
        assert!(!shows_removed(3, 2, &reply(1, None, 2, &[1, 2])));
    }
}
