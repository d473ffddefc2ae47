//! Self-fencing: a node that has lost contact with the leader or with a majority of the
//! voters for its lease stops serving its sandboxes, so that when the leader restores them
//! elsewhere (which it does only after it has not heard from the node for longer than the
//! lease, see [`super::failover`]) there are never two live copies that both accept work.
//!
//! Fenced, the node freezes its sandbox containers (`docker pause`: no process runs, nothing
//! is lost), reports nothing (the catalog is the leader's to change), starts none, answers
//! exec and file calls for its sandboxes with "unavailable", and takes no snapshot of them.
//! A fence that is lifted is recorded as a `fence` event (written once the node can write
//! again, with how long it lasted).
//! The fence lifts once the node has contact again *and* has caught up with the leader's
//! catalog (a linearizable read): only then does it know which sandboxes are still its own. Those are thawed where they were;
//! containers of sandboxes that moved meanwhile are removed. Freezing rather than removing
//! means a fence that ends without a failover (a slow election, a short cut) costs the
//! sandbox a pause, not its processes and the files written since its last snapshot.
//!
//! What counts as contact (see [`has_quorum`]) mirrors how the leader judges: within the
//! lease, two-way probes with a majority of voters *and* with a node that said it was the
//! leader when it probed and answered. A node that does not know the leader (an election
//! is under way, or it is cut off from the leader and keeps standing for election) has no
//! such contact: found by the chaos run with seed 1795687867283975238, where a node cut off
//! from the leader alone still reached the third node, counted a majority, and kept
//! answering exec for 2 s after the leader had moved its sandbox.
//!
//! The judgements are pure and tested by golden scripts without a cluster (`golden/fence/`,
//! see [`super::golden`]): [`Contact::has_quorum`] over plain liveness data, [`Fence::check`]
//! for what one check does, [`lift_plan`] for what lifting does to each hosted sandbox.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use flotilla_raft::{EventKind, NodeId};
use tokio::sync::watch;

use super::actor::SandboxMsg;
use super::SandboxHost;

/// How often reachability is judged.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// What this node knows of its contact with the others, within the lease.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contact {
    pub me: NodeId,
    pub voters: Vec<NodeId>,
    /// The leader this node's Raft knows of.
    pub leader: Option<NodeId>,
    /// Members with two-way probe traffic within the lease.
    pub two_way: BTreeSet<NodeId>,
    /// Whether traffic went both ways within the lease with a member that said it led.
    pub leader_contact: bool,
}

impl Contact {
    pub fn of(host: &SandboxHost, lease: Duration) -> Self {
        let g = host.cluster.group();
        let live = &host.cluster.liveness;
        Self {
            me: host.cluster.id,
            two_way: g.voters.iter().copied().filter(|&v| live.two_way_within(v, lease)).collect(),
            voters: g.voters,
            leader: g.leader,
            leader_contact: live.leader_contact_within(lease),
        }
    }

    /// Whether this node had, within the lease, two-way contact with a majority of the voters
    /// (itself included) and with a sitting leader (itself, or a member whose probe and answer
    /// both said it led). A node that is not a voter (joining, learner) does not judge.
    pub fn has_quorum(&self) -> bool {
        if !self.voters.contains(&self.me) {
            return true;
        }
        let reached = self.voters.iter().filter(|&&v| v == self.me || self.two_way.contains(&v)).count();
        let leader_ok = self.leader == Some(self.me) || self.leader_contact;
        reached * 2 > self.voters.len() && leader_ok
    }
}

/// Whether `host` has contact now (see [`Contact::has_quorum`]).
pub fn has_quorum(host: &SandboxHost, lease: Duration) -> bool {
    Contact::of(host, lease).has_quorum()
}

/// What one check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Contact lost: freeze every hosted sandbox.
    Freeze,
    /// Fenced with contact again: lift once a linearizable read says the catalog caught up.
    TryLift,
    /// Nothing to do.
    Stay,
}

/// The fence of one node: whether it is up, and whether it was ever lifted (the first lift,
/// after start, is routine; later ones follow a real loss of contact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub fenced: bool,
    pub lifted_before: bool,
}

impl Fence {
    /// A node starts fenced: after a restart it may have been judged down and its sandboxes
    /// moved, so it serves nothing until it has caught up.
    pub fn at_start() -> Self {
        Self { fenced: true, lifted_before: false }
    }

    /// One check given whether this node has contact.
    pub fn check(&mut self, has_quorum: bool) -> Step {
        match (has_quorum, self.fenced) {
            (false, false) => {
                self.fenced = true;
                Step::Freeze
            }
            (false, true) => Step::Stay,
            (true, true) => Step::TryLift,
            (true, false) => Step::Stay,
        }
    }

    /// The catalog caught up: the fence lifts. Returns whether this lift follows a real loss
    /// of contact (not the routine one after start).
    pub fn lifted(&mut self) -> bool {
        let after_loss = self.lifted_before;
        self.fenced = false;
        self.lifted_before = true;
        after_loss
    }
}

/// What lifting the fence does to each hosted sandbox: thaw those the caught-up catalog still
/// assigns here (`mine`), stop the others (they moved meanwhile).
pub fn lift_plan(hosted: &[String], mine: &HashSet<String>) -> Vec<(String, bool)> {
    hosted.iter().map(|id| (id.clone(), mine.contains(id))).collect()
}

/// Runs until shutdown: fences as soon as contact is older than `lease`, lifts the fence
/// once contact is back and the catalog has caught up.
pub async fn run(host: SandboxHost, lease: Duration, mut shutdown: watch::Receiver<bool>) {
    // `SandboxHost::new` starts the node fenced too (see `Fence::at_start`).
    let mut fence = Fence::at_start();
    // When this node last fenced itself after a real loss of contact, for the fence event.
    let mut fenced_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        match fence.check(has_quorum(&host, lease)) {
            Step::Freeze => {
                host.fenced.store(true, Ordering::SeqCst);
                fenced_at = Some(std::time::Instant::now());
                tracing::warn!(
                    lease_ms = lease.as_millis() as u64,
                    "no contact with the leader and a majority within the lease: freezing this node's sandboxes"
                );
                for id in host.hosted() {
                    host.notify(&id, SandboxMsg::Fence);
                }
            }
            Step::TryLift => match host.cluster.linearizable().await {
                Ok(()) => {
                    lift(&host, fence.lifted());
                    if let Some(at) = fenced_at.take() {
                        let me = host.cluster.id;
                        let message = format!(
                            "node {me} was fenced for {:.1} s (no contact with the leader and a majority within the \
                             lease); fence lifted",
                            at.elapsed().as_secs_f64()
                        );
                        host.cluster.record_event(EventKind::Fence, format!("node {me}"), message, Some(me));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "fence stays until this node has caught up with the leader"),
            },
            Step::Stay => {}
        }
    }
}

/// Lifts the fence: thaws the sandboxes the (caught-up) catalog still assigns here and
/// removes the others; the reconciler starts any that have no actor yet.
fn lift(host: &SandboxHost, after_loss: bool) {
    host.fenced.store(false, Ordering::SeqCst);
    let mine: HashSet<String> = super::reconciler::mine(host).into_iter().map(|s| s.id).collect();
    for (id, thaw) in lift_plan(&host.hosted(), &mine) {
        host.notify(&id, if thaw { SandboxMsg::Thaw } else { SandboxMsg::Stop });
    }
    if after_loss {
        tracing::warn!("contact with the leader and a majority again, catalog caught up: fence lifted");
    } else {
        tracing::info!("caught up with the leader after start: fence lifted");
    }
}
