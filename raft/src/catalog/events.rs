//! Cluster events: a bounded, replicated record of what the cluster decided and why
//! (`flotilla events`).
//!
//! **Where events come from.** Most are derived in `apply` from the command being applied
//! (a [`Note`] taken before, its outcome after): a pending reason set by the autoscaler, a
//! replica that came up or failed, a sandbox restored on another node, a snapshot ready,
//! failed or re-replicated, a scheduled tick its policy skipped. They cost no extra Raft
//! write and can never hold up the decision that caused them. What no catalog command
//! carries (a sandbox that could not be placed, a new leader, a node that was fenced) is
//! proposed by the node that saw it as [`Command::RecordEvent`](crate::Command::RecordEvent),
//! fire-and-forget through the leader's write batcher.
//!
//! **Bound.** The ring keeps the newest [`MAX_EVENTS`], each message at most [`MAX_MESSAGE`]
//! bytes; a push beyond drops the oldest. Each
//! event has a sequence number that grows by one per recorded event, so a follower of the
//! stream asks for "after seq N" and never sees one twice.
//!
//! **Coalescing.** An event whose kind, subject and message equal the latest event of the same
//! kind and subject (looked up among the last [`COALESCE_WINDOW`]) is not recorded again:
//! the earlier one's `repeats` grows instead. So a reason that does not change is one event,
//! however often it is reported.
//!
//! **Time.** `at_ms` is the leader's stamp of the command. Commands without a stamp
//! (snapshot failures and replica changes) take the latest stamp applied before them
//! ([`Events::clock_ms`]), which is deterministic and at most one batch old.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Call, CallState, Catalog};
use crate::command::{Command, Response};
use crate::NodeId;

/// Most events kept; the oldest is dropped beyond this.
pub const MAX_EVENTS: usize = 10_000;
/// How many of the newest events a repeat is looked for in.
pub const COALESCE_WINDOW: usize = 256;
/// Longest message kept, bytes (a longer one is cut at a character boundary and marked).
pub const MAX_MESSAGE: usize = 1024;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A sandbox or replica could not be placed, and why (or can be again).
    Placement,
    /// A function replica started or failed.
    Replica,
    /// A sandbox was moved to another node after its node went silent.
    Failover,
    /// A node fenced itself (lost the leader or a quorum) and later lifted the fence.
    Fence,
    /// A node became the leader.
    Leader,
    /// A snapshot became ready, failed, or its copies changed (repair or loss).
    Snapshot,
    /// A scheduled tick was skipped by its overlap or catch-up policy.
    Schedule,
    /// A node fetched an image from a peer (or failed to).
    Image,
}

impl EventKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [EventKind; 8] = [
        EventKind::Placement,
        EventKind::Replica,
        EventKind::Failover,
        EventKind::Fence,
        EventKind::Leader,
        EventKind::Snapshot,
        EventKind::Schedule,
        EventKind::Image,
    ];

    /// The lowercase name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Placement => "placement",
            EventKind::Replica => "replica",
            EventKind::Failover => "failover",
            EventKind::Fence => "fence",
            EventKind::Leader => "leader",
            EventKind::Snapshot => "snapshot",
            EventKind::Schedule => "schedule",
            EventKind::Image => "image",
        }
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the cluster's event history: one more than the event before.
    pub seq: u64,
    /// Leader-stamped time of the first occurrence (Unix ms).
    pub at_ms: i64,
    pub kind: EventKind,
    /// What it is about: `app/function`, a sandbox id, a snapshot id, `node N`, …
    pub subject: String,
    /// What happened and why, for a person.
    pub message: String,
    /// The node it happened on or was decided for, when there is one.
    pub node: Option<NodeId>,
    /// How many identical reports were coalesced into this one after the first.
    pub repeats: u32,
}

/// The event ring, part of the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Events {
    /// The newest events, oldest first, at most [`MAX_EVENTS`].
    pub ring: VecDeque<Event>,
    /// The sequence number the next recorded event gets.
    pub next_seq: u64,
    /// The latest leader stamp applied (Unix ms): the time of events from unstamped commands.
    pub clock_ms: i64,
}

impl Events {
    /// Records an event, or counts it as a repeat of the latest one like it.
    pub fn record(&mut self, at_ms: i64, kind: EventKind, subject: String, mut message: String, node: Option<NodeId>) {
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let same = self.ring.iter_mut().rev().take(COALESCE_WINDOW).find(|e| e.kind == kind && e.subject == subject);
        if let Some(e) = same.filter(|e| e.message == message && e.node == node) {
            e.repeats = e.repeats.saturating_add(1);
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ring.push_back(Event { seq, at_ms, kind, subject, message, node, repeats: 0 });
        while self.ring.len() > MAX_EVENTS {
            self.ring.pop_front();
        }
    }

    /// Events with a sequence number above `after`, oldest first.
    pub fn after(&self, after: Option<u64>) -> impl Iterator<Item = &Event> {
        // The ring is sorted by seq, so everything from the first match on qualifies.
        let start = match after {
            None => 0,
            Some(a) => self.ring.partition_point(|e| e.seq <= a),
        };
        self.ring.range(start..)
    }

    /// The newest `n` events about `subject` (exactly, or `subject/…`), oldest first.
    pub fn latest_about(&self, subject: &str, n: usize) -> Vec<Event> {
        let prefix = format!("{subject}/");
        let mut found: Vec<Event> = self
            .ring
            .iter()
            .rev()
            .filter(|e| e.subject == subject || e.subject.starts_with(&prefix))
            .take(n)
            .cloned()
            .collect();
        found.reverse();
        found
    }
}

/// What `apply` needs to know about a command, taken before it is applied, to record its
/// event afterwards.
pub(super) enum Note {
    Pending { subject: String, reason: Option<String> },
    ReplicaReady { id: String },
    ReplicaFailed { id: String, reason: String },
    Restore { id: String, from: Option<NodeId>, to: NodeId, snapshot: String },
    SnapshotReady { id: String, replicas: Vec<NodeId> },
    SnapshotFailed { id: String, reason: String },
    SnapshotReplicas { id: String, before: Vec<NodeId>, after: Vec<NodeId> },
    Fire { schedule: String, call_id: String, node: NodeId },
    Record { kind: EventKind, subject: String, message: String, node: Option<NodeId> },
}

impl Note {
    /// The note for `cmd` applied to `catalog`, if the command can make an event.
    pub(super) fn of(cmd: &Command, catalog: &Catalog) -> Option<Note> {
        Some(match cmd {
            Command::SetPending { app, function, reason, .. } => {
                Note::Pending { subject: format!("{app}/{function}"), reason: reason.clone() }
            }
            Command::ReplicaReady { id, .. } => Note::ReplicaReady { id: id.clone() },
            Command::ReplicaFailed { id, reason, .. } => Note::ReplicaFailed { id: id.clone(), reason: reason.clone() },
            Command::RestoreSandbox { id, node, snapshot, .. } => Note::Restore {
                id: id.clone(),
                from: catalog.sandboxes.get(id).map(|s| s.node),
                to: *node,
                snapshot: snapshot.clone(),
            },
            Command::SnapshotReady { id, replicas, .. } => {
                Note::SnapshotReady { id: id.clone(), replicas: replicas.clone() }
            }
            Command::SnapshotFailed { id, reason: Some(reason) } => {
                Note::SnapshotFailed { id: id.clone(), reason: reason.clone() }
            }
            Command::SetSnapshotReplicas { id, replicas } => Note::SnapshotReplicas {
                id: id.clone(),
                before: catalog.snapshots.get(id).map(|s| s.replicas.clone()).unwrap_or_default(),
                after: replicas.clone(),
            },
            Command::Fire { schedule, call_id, node, .. } => {
                Note::Fire { schedule: schedule.clone(), call_id: call_id.clone(), node: *node }
            }
            Command::RecordEvent { kind, subject, message, node, .. } => {
                Note::Record { kind: *kind, subject: subject.clone(), message: message.clone(), node: *node }
            }
            _ => return None,
        })
    }

    /// Records this note's event if `resp` says the command took effect.
    pub(super) fn record(self, catalog: &mut Catalog, resp: &Response) {
        if matches!(resp, Response::Rejected(_)) {
            return;
        }
        let at = catalog.events.clock_ms;
        let replica_node = |c: &Catalog, id: &str| c.replicas.get(id).map(|r| r.node);
        let replica_subject =
            |c: &Catalog, id: &str| c.replicas.get(id).map_or(id.to_string(), |r| format!("{}/{}", r.app, r.function));
        let (kind, subject, message, node) = match self {
            Note::Pending { subject, reason: Some(reason) } => {
                (EventKind::Placement, subject, format!("a replica cannot be placed: {reason}"), None)
            }
            Note::Pending { subject, reason: None } => {
                // Only worth saying when it was stuck before; the autoscaler clears on change.
                // The newest placement event about it (replica events may be newer).
                let stuck = catalog
                    .events
                    .ring
                    .iter()
                    .rev()
                    .find(|e| e.kind == EventKind::Placement && e.subject == subject)
                    .is_some_and(|e| e.message.starts_with("a replica cannot be placed"));
                if !stuck {
                    return;
                }
                (EventKind::Placement, subject, "replicas can be placed again".to_string(), None)
            }
            Note::ReplicaReady { id } => {
                let node = replica_node(catalog, &id);
                let subject = replica_subject(catalog, &id);
                (EventKind::Replica, subject, format!("replica {id} started"), node)
            }
            Note::ReplicaFailed { id, reason } => {
                let node = replica_node(catalog, &id);
                let subject = replica_subject(catalog, &id);
                // Without the replica's id, so a function that fails to start again and again
                // (a bad image, say) is one event with repeats, not a flood of them.
                (EventKind::Replica, subject, format!("a replica failed: {reason}"), node)
            }
            Note::Restore { id, from, to, snapshot } => {
                let generation = catalog.sandboxes.get(&id).map_or(0, |s| s.generation);
                let from = from.map_or("an unknown node".to_string(), |n| format!("node {n}"));
                let message = format!(
                    "moved from {from} to node {to} as generation {generation}, restored from snapshot {snapshot}"
                );
                (EventKind::Failover, id, message, Some(to))
            }
            Note::SnapshotReady { id, replicas } => {
                let sandbox = catalog.snapshots.get(&id).map(|s| s.sandbox.clone()).unwrap_or_default();
                let message = format!("snapshot {id} ready, stored on nodes {}", nodes(&replicas));
                (EventKind::Snapshot, sandbox_or(sandbox, &id), message, None)
            }
            Note::SnapshotFailed { id, reason } => {
                let sandbox = catalog.snapshots.get(&id).map(|s| s.sandbox.clone()).unwrap_or_default();
                (EventKind::Snapshot, sandbox_or(sandbox, &id), format!("snapshot {id} failed: {reason}"), None)
            }
            Note::SnapshotReplicas { id, before, after } => {
                if before == after {
                    return;
                }
                let sandbox = catalog.snapshots.get(&id).map(|s| s.sandbox.clone()).unwrap_or_default();
                let message = if after.is_empty() {
                    format!("snapshot {id} lost: no copy left (was on nodes {})", nodes(&before))
                } else if after.len() >= before.len() {
                    format!("snapshot {id} repaired: now on nodes {} (was {})", nodes(&after), nodes(&before))
                } else {
                    format!("snapshot {id} lost copies: now on nodes {} (was {})", nodes(&after), nodes(&before))
                };
                (EventKind::Snapshot, sandbox_or(sandbox, &id), message, None)
            }
            Note::Fire { schedule, call_id, node } => {
                let Some(Call { state: CallState::Skipped, error, .. }) = catalog.calls.get(&call_id) else { return };
                let why = error.clone().unwrap_or_default();
                (EventKind::Schedule, schedule, format!("a tick was skipped: {why}"), Some(node))
            }
            Note::Record { kind, subject, message, node } => (kind, subject, message, node),
        };
        catalog.events.record(at, kind, subject, message, node);
    }
}

/// Subject of a snapshot event: its sandbox's id (so `sandbox show` finds it), else the
/// snapshot's.
fn sandbox_or(sandbox: String, snapshot: &str) -> String {
    if sandbox.is_empty() {
        snapshot.to_string()
    } else {
        sandbox
    }
}

fn nodes(ids: &[NodeId]) -> String {
    ids.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(events: &mut Events, subject: &str, message: &str) {
        events.record(1, EventKind::Placement, subject.into(), message.into(), None);
    }

    #[test]
    fn the_ring_keeps_the_newest_max_events_and_drops_the_oldest() {
        let mut events = Events::default();
        for i in 0..MAX_EVENTS + 25 {
            record(&mut events, &format!("s{i}"), "m");
        }
        assert_eq!(events.ring.len(), MAX_EVENTS);
        assert_eq!(events.ring.front().map(|e| e.seq), Some(25));
        assert_eq!(events.ring.back().map(|e| e.seq), Some((MAX_EVENTS + 24) as u64));
        assert_eq!(events.after(Some((MAX_EVENTS + 22) as u64)).count(), 2);
        assert_eq!(events.after(Some(3)).count(), MAX_EVENTS, "events older than the ring are gone");
    }

    #[test]
    fn a_repeat_is_coalesced_and_a_change_is_recorded() {
        let mut events = Events::default();
        record(&mut events, "etl/f", "no node has 8 free CPUs");
        record(&mut events, "other", "x");
        record(&mut events, "etl/f", "no node has 8 free CPUs");
        assert_eq!(events.ring.len(), 2);
        assert_eq!(events.ring[0].repeats, 1);
        record(&mut events, "etl/f", "no node offers GPU H100");
        record(&mut events, "etl/f", "no node has 8 free CPUs");
        assert_eq!(events.ring.len(), 4, "a reason that came back after another is news");
    }

    /// A catalog with app `etl` (function `f`) deployed.
    fn with_app() -> Catalog {
        let mut c = Catalog::default();
        c.apply(Command::DeployApp {
            name: "etl".into(),
            functions: vec!["f".into()],
            spec_json: "{}".into(),
            request_id: "r".into(),
            at_ms: 7,
            schedules: vec![],
        });
        c
    }

    #[test]
    fn a_pending_reason_becomes_one_placement_event_through_apply() {
        let mut c = with_app();
        let pending = |reason: Option<&str>| Command::SetPending {
            app: "etl".into(),
            function: "f".into(),
            version: 1,
            reason: reason.map(str::to_string),
            at_ms: 9,
        };
        for _ in 0..3 {
            c.apply(pending(Some("no node has 8 free CPUs")));
        }
        c.apply(pending(None));
        let got: Vec<(EventKind, &str, &str, i64)> =
            c.events.ring.iter().map(|e| (e.kind, e.subject.as_str(), e.message.as_str(), e.at_ms)).collect();
        assert_eq!(
            got,
            vec![
                (EventKind::Placement, "etl/f", "a replica cannot be placed: no node has 8 free CPUs", 9),
                (EventKind::Placement, "etl/f", "replicas can be placed again", 9),
            ]
        );
        assert_eq!(c.events.ring[0].repeats, 2);
        // A rejected command records nothing.
        c.apply(Command::SetPending {
            app: "nope".into(),
            function: "f".into(),
            version: 1,
            reason: Some("x".into()),
            at_ms: 10,
        });
        assert_eq!(c.events.ring.len(), 2);
    }

    #[test]
    fn a_replica_failing_again_and_again_is_one_event_and_long_messages_are_cut() {
        let mut c = with_app();
        c.apply(Command::RegisterNode {
            id: 1,
            addr: "n1:7100".into(),
            cpus: 2,
            memory_mib: 1024,
            gpus: vec![],
            at_ms: 7,
        });
        for n in 0..5 {
            let id = format!("rp-{n}");
            c.apply(Command::AddReplica {
                id: id.clone(),
                app: "etl".into(),
                function: "f".into(),
                version: 1,
                node: 1,
                cpu: 0.5,
                memory_mib: 64,
                gpus: vec![],
                at_ms: 8,
            });
            c.apply(Command::ReplicaFailed { id, reason: "image nope not found on node 1".into(), at_ms: 9 });
        }
        let failed: Vec<&Event> = c.events.ring.iter().filter(|e| e.message.contains("failed")).collect();
        assert_eq!(failed.len(), 1, "{:?}", c.events.ring);
        assert_eq!(
            (failed[0].message.as_str(), failed[0].repeats),
            ("a replica failed: image nope not found on node 1", 4)
        );
        let mut events = Events::default();
        record(&mut events, "s", &"é".repeat(MAX_MESSAGE));
        let kept = &events.ring[0].message;
        assert!(kept.len() <= MAX_MESSAGE + '…'.len_utf8() && kept.ends_with('…'), "{} bytes", kept.len());
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}
