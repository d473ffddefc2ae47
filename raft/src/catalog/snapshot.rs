//! Snapshots of sandboxes: the metadata only. The bytes are a content-addressed blob kept by
//! the nodes in `replicas` (outside Raft); the record names it by its sha256.
//!
//! Life of a snapshot: the hosting node commits `CreateSnapshot` (state `pending`, the
//! sandbox `snapshotting`), stores the blob, pushes it to peers, then commits `SnapshotReady`
//! with the size, digest and the nodes that hold a copy (the sandbox goes back to `running`
//! and remembers it as its `last_snapshot`). A snapshot that could not be taken is dropped
//! (`SnapshotFailed`), or kept as `failed` with a reason when the node taking it restarted
//! or died mid-way. `replicas` changes when a copy is repaired or lost; a ready snapshot
//! with no copy left is `lost`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sandbox::{Sandbox, SandboxSpec, SandboxState};
use crate::command::{Rejection, Response};
use crate::NodeId;

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// The sandbox's writable filesystem (its `/work` volume: the rootfs is read-only, so
    /// that is the whole difference from its image).
    Fs,
    /// One directory, by absolute path.
    Dir,
    /// Processes and memory (a CRIU checkpoint) plus the filesystem.
    Memory,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Fs => "fs",
            SnapshotKind::Dir => "dir",
            SnapshotKind::Memory => "memory",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fs" => Some(SnapshotKind::Fs),
            "dir" => Some(SnapshotKind::Dir),
            "memory" => Some(SnapshotKind::Memory),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotState {
    /// Being taken and replicated; not restorable yet.
    Pending,
    /// Stored on every node in `replicas`; restorable anywhere.
    Ready,
    /// Every copy is gone.
    Lost,
    /// It was never finished: the node taking it died or restarted mid-way, or went silent.
    /// Kept, with its `reason`, so the user can see why a restore point is missing; never
    /// restorable. `snapshot rm` removes it.
    Failed,
}

impl SnapshotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Pending => "pending",
            SnapshotState::Ready => "ready",
            SnapshotState::Lost => "lost",
            SnapshotState::Failed => "failed",
        }
    }
}

/// A snapshot as the catalog records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `sn-` followed by random hex chosen by the node that takes it.
    pub id: String,
    pub kind: SnapshotKind,
    /// The sandbox it was taken from.
    pub sandbox: String,
    /// That sandbox's generation when it was taken.
    pub generation: u64,
    /// The directory of a `dir` snapshot.
    pub path: Option<String>,
    /// The source sandbox's spec: what a restore creates (image, command, limits).
    pub spec: SandboxSpec,
    /// The node that took it.
    pub node: NodeId,
    pub state: SnapshotState,
    /// Size of the blob, bytes (0 while pending).
    pub size_bytes: u64,
    /// sha256 of the blob, hex (empty while pending): its address in every node's blob store.
    pub sha256: String,
    /// Nodes holding a verified copy.
    pub replicas: Vec<NodeId>,
    /// Unix ms, leader clock.
    pub created_at_ms: i64,
    pub ready_at_ms: Option<i64>,
    /// Why it is `failed`; `None` otherwise.
    pub reason: Option<String>,
}

fn not_found(id: &str) -> Response {
    Response::Rejected(Rejection::SnapshotNotFound(id.to_string()))
}

/// Starts a snapshot of a running sandbox: records it pending and marks the sandbox
/// `snapshotting`. One snapshot at a time per sandbox.
#[allow(clippy::too_many_arguments)]
pub(super) fn create(
    snapshots: &mut BTreeMap<String, Snapshot>,
    sandboxes: &mut BTreeMap<String, Sandbox>,
    id: String,
    sandbox: &str,
    generation: u64,
    kind: SnapshotKind,
    path: Option<String>,
    node: NodeId,
    at_ms: i64,
) -> Response {
    if id.is_empty() || snapshots.contains_key(&id) {
        return Response::Rejected(Rejection::Invalid {
            field: "id".into(),
            message: format!("{id:?} is empty or taken"),
        });
    }
    let Some(sb) = sandboxes.get_mut(sandbox) else {
        return Response::Rejected(Rejection::SandboxNotFound(sandbox.to_string()));
    };
    match sb.state {
        SandboxState::Running if sb.generation == generation && sb.node == node => {}
        SandboxState::Snapshotting => {
            return Response::Rejected(Rejection::Conflict(format!("sandbox {sandbox} is already being snapshotted")))
        }
        s if s.is_final() => {
            return Response::Rejected(Rejection::Stale(format!(
                "sandbox {sandbox} is {}; only a running sandbox can be snapshotted",
                s.as_str()
            )))
        }
        s => {
            return Response::Rejected(Rejection::Stale(format!(
                "sandbox {sandbox} is {} (generation {} on node {}); only a running sandbox can be snapshotted",
                s.as_str(),
                sb.generation,
                sb.node
            )))
        }
    }
    sb.state = SandboxState::Snapshotting;
    let snapshot = Snapshot {
        id: id.clone(),
        kind,
        sandbox: sandbox.to_string(),
        generation,
        path,
        spec: sb.spec.clone(),
        node,
        state: SnapshotState::Pending,
        size_bytes: 0,
        sha256: String::new(),
        replicas: Vec::new(),
        created_at_ms: at_ms,
        ready_at_ms: None,
        reason: None,
    };
    snapshots.insert(id, snapshot.clone());
    Response::Snapshot(snapshot)
}

/// The sandbox a pending snapshot was taken from goes back to `running`.
fn release(sandboxes: &mut BTreeMap<String, Sandbox>, snap: &Snapshot) {
    if let Some(sb) = sandboxes.get_mut(&snap.sandbox) {
        if sb.state == SandboxState::Snapshotting && sb.generation == snap.generation {
            sb.state = SandboxState::Running;
        }
    }
}

pub(super) fn ready(
    snapshots: &mut BTreeMap<String, Snapshot>,
    sandboxes: &mut BTreeMap<String, Sandbox>,
    id: &str,
    size_bytes: u64,
    sha256: String,
    replicas: Vec<NodeId>,
    at_ms: i64,
) -> Response {
    let Some(snap) = snapshots.get_mut(id) else { return not_found(id) };
    if snap.state != SnapshotState::Pending {
        return Response::Rejected(Rejection::Stale(format!("snapshot {id} is already {}", snap.state.as_str())));
    }
    if sha256.len() != 64 || replicas.is_empty() {
        return Response::Rejected(Rejection::Invalid {
            field: "sha256".into(),
            message: "a ready snapshot needs a sha256 digest and at least one replica".into(),
        });
    }
    snap.state = SnapshotState::Ready;
    snap.size_bytes = size_bytes;
    snap.sha256 = sha256;
    snap.replicas = replicas;
    snap.ready_at_ms = Some(at_ms);
    let snap = snap.clone();
    release(sandboxes, &snap);
    if let Some(sb) = sandboxes.get_mut(&snap.sandbox) {
        sb.last_snapshot = Some(snap.id.clone());
    }
    Response::Snapshot(snap)
}

/// A pending snapshot that could not be taken: its sandbox goes back to `running`. Without a
/// `reason` the record is dropped (the node that tried told its caller why); with one it is
/// kept as `failed` with that reason (nobody was there to be told: the node restarted or died
/// mid-way).
pub(super) fn failed(
    snapshots: &mut BTreeMap<String, Snapshot>,
    sandboxes: &mut BTreeMap<String, Sandbox>,
    id: &str,
    reason: Option<String>,
) -> Response {
    let Some(snap) = snapshots.get_mut(id) else { return not_found(id) };
    if snap.state != SnapshotState::Pending {
        return Response::Rejected(Rejection::Stale(format!("snapshot {id} is already {}", snap.state.as_str())));
    }
    let snap = match reason {
        None => snapshots.remove(id).expect("checked above"),
        Some(reason) => {
            snap.state = SnapshotState::Failed;
            snap.reason = Some(reason);
            snap.clone()
        }
    };
    release(sandboxes, &snap);
    Response::Snapshot(snap)
}

/// Removes a snapshot's record (its blobs are then collected by every node). A sandbox whose
/// latest snapshot it was falls back to its previous ready one.
pub(super) fn remove(
    snapshots: &mut BTreeMap<String, Snapshot>,
    sandboxes: &mut BTreeMap<String, Sandbox>,
    id: &str,
) -> Response {
    let Some(snap) = snapshots.remove(id) else { return not_found(id) };
    release(sandboxes, &snap);
    if let Some(sb) = sandboxes.get_mut(&snap.sandbox) {
        if sb.last_snapshot.as_deref() == Some(id) {
            sb.last_snapshot = latest_ready(snapshots, &snap.sandbox).map(|s| s.id.clone());
        }
    }
    Response::Snapshot(snap)
}

/// Records which nodes hold a verified copy (after a repair, or a copy found missing). A
/// ready snapshot with none left is `lost`; one that gets a copy back is `ready` again.
pub(super) fn set_replicas(snapshots: &mut BTreeMap<String, Snapshot>, id: &str, replicas: Vec<NodeId>) -> Response {
    let Some(snap) = snapshots.get_mut(id) else { return not_found(id) };
    if matches!(snap.state, SnapshotState::Pending | SnapshotState::Failed) {
        return Response::Rejected(Rejection::Stale(format!("snapshot {id} is {}", snap.state.as_str())));
    }
    snap.state = if replicas.is_empty() { SnapshotState::Lost } else { SnapshotState::Ready };
    snap.replicas = replicas;
    Response::Snapshot(snap.clone())
}

/// The newest ready snapshot of `sandbox`.
pub fn latest_ready<'a>(snapshots: &'a BTreeMap<String, Snapshot>, sandbox: &str) -> Option<&'a Snapshot> {
    snapshots
        .values()
        .filter(|s| s.sandbox == sandbox && s.state == SnapshotState::Ready)
        .max_by_key(|s| (s.ready_at_ms, s.created_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::sandbox::tests::spec;
    use crate::{Catalog, Command};

    fn running(c: &mut Catalog, id: &str) {
        c.apply(Command::CreateSandbox {
            id: id.into(),
            name: None,
            spec: spec(),
            node: 1,
            gpus: vec![],
            request_id: None,
            at_ms: 1,
        });
        c.apply(Command::SandboxStarted { id: id.into(), generation: 1, container_id: "c".into(), at_ms: 2 });
    }

    fn take(id: &str, sandbox: &str) -> Command {
        Command::CreateSnapshot {
            id: id.into(),
            sandbox: sandbox.into(),
            generation: 1,
            kind: SnapshotKind::Fs,
            path: None,
            node: 1,
            at_ms: 3,
        }
    }

    fn ready_cmd(id: &str, at_ms: i64) -> Command {
        Command::SnapshotReady { id: id.into(), size_bytes: 10, sha256: "a".repeat(64), replicas: vec![1, 2], at_ms }
    }

    #[test]
    fn pending_then_ready_marks_the_sandbox() {
        let mut c = Catalog::default();
        running(&mut c, "sb-1");
        assert!(matches!(c.apply(take("sn-1", "sb-1")), Response::Snapshot(_)));
        assert_eq!(c.sandboxes["sb-1"].state, SandboxState::Snapshotting);
        assert_eq!(c.snapshots["sn-1"].state, SnapshotState::Pending);
        // One at a time.
        assert!(matches!(c.apply(take("sn-2", "sb-1")), Response::Rejected(Rejection::Conflict(_))));
        c.apply(ready_cmd("sn-1", 4));
        let sb = &c.sandboxes["sb-1"];
        assert_eq!((sb.state, sb.last_snapshot.as_deref()), (SandboxState::Running, Some("sn-1")));
        let snap = &c.snapshots["sn-1"];
        assert_eq!((snap.state, snap.replicas.clone(), snap.size_bytes), (SnapshotState::Ready, vec![1, 2], 10));
        // Ready twice is stale.
        assert!(matches!(c.apply(ready_cmd("sn-1", 5)), Response::Rejected(Rejection::Stale(_))));
    }

    #[test]
    fn only_running_sandboxes_are_snapshotted() {
        let mut c = Catalog::default();
        assert!(matches!(c.apply(take("sn-1", "nope")), Response::Rejected(Rejection::SandboxNotFound(_))));
        running(&mut c, "sb-1");
        c.apply(Command::TerminateSandbox { id: "sb-1".into(), at_ms: 3 });
        assert!(matches!(c.apply(take("sn-1", "sb-1")), Response::Rejected(Rejection::Stale(_))));
        assert!(c.snapshots.is_empty());
    }

    #[test]
    fn a_failed_snapshot_is_dropped_and_the_sandbox_runs_on() {
        let mut c = Catalog::default();
        running(&mut c, "sb-1");
        c.apply(take("sn-1", "sb-1"));
        assert!(matches!(c.apply(Command::SnapshotFailed { id: "sn-1".into(), reason: None }), Response::Snapshot(_)));
        assert!(c.snapshots.is_empty());
        assert_eq!(c.sandboxes["sb-1"].state, SandboxState::Running);
    }

    #[test]
    fn an_abandoned_snapshot_is_kept_failed_with_its_reason_and_the_next_one_works() {
        let mut c = Catalog::default();
        running(&mut c, "sb-1");
        c.apply(take("sn-1", "sb-1"));
        let why = Some("node 1 restarted".to_string());
        assert!(matches!(
            c.apply(Command::SnapshotFailed { id: "sn-1".into(), reason: why.clone() }),
            Response::Snapshot(_)
        ));
        let snap = &c.snapshots["sn-1"];
        assert_eq!((snap.state, snap.reason.clone()), (SnapshotState::Failed, why.clone()));
        assert_eq!(c.sandboxes["sb-1"].state, SandboxState::Running);
        // Final: neither failed again, made ready, nor given replicas.
        assert!(matches!(
            c.apply(Command::SnapshotFailed { id: "sn-1".into(), reason: why }),
            Response::Rejected(Rejection::Stale(_))
        ));
        assert!(matches!(c.apply(ready_cmd("sn-1", 4)), Response::Rejected(Rejection::Stale(_))));
        let replicas = Command::SetSnapshotReplicas { id: "sn-1".into(), replicas: vec![1] };
        assert!(matches!(c.apply(replicas), Response::Rejected(Rejection::Stale(_))));
        assert!(latest_ready(&c.snapshots, "sb-1").is_none());
        // The next snapshot is taken.
        assert!(matches!(c.apply(take("sn-2", "sb-1")), Response::Snapshot(_)));
        c.apply(ready_cmd("sn-2", 5));
        assert_eq!(c.sandboxes["sb-1"].last_snapshot.as_deref(), Some("sn-2"));
    }

    #[test]
    fn rm_falls_back_to_the_previous_snapshot_and_lost_copies_show() {
        let mut c = Catalog::default();
        running(&mut c, "sb-1");
        c.apply(take("sn-1", "sb-1"));
        c.apply(ready_cmd("sn-1", 4));
        c.apply(take("sn-2", "sb-1"));
        c.apply(ready_cmd("sn-2", 5));
        assert_eq!(c.sandboxes["sb-1"].last_snapshot.as_deref(), Some("sn-2"));
        c.apply(Command::RemoveSnapshot { id: "sn-2".into() });
        assert_eq!(c.sandboxes["sb-1"].last_snapshot.as_deref(), Some("sn-1"));
        assert!(matches!(
            c.apply(Command::RemoveSnapshot { id: "sn-2".into() }),
            Response::Rejected(Rejection::SnapshotNotFound(_))
        ));
        c.apply(Command::SetSnapshotReplicas { id: "sn-1".into(), replicas: vec![] });
        assert_eq!(c.snapshots["sn-1"].state, SnapshotState::Lost);
        assert!(latest_ready(&c.snapshots, "sb-1").is_none());
        c.apply(Command::SetSnapshotReplicas { id: "sn-1".into(), replicas: vec![3] });
        assert_eq!(c.snapshots["sn-1"].state, SnapshotState::Ready);
    }

    #[test]
    fn restore_from_snapshot_and_failover_bump_the_generation() {
        let mut c = Catalog::default();
        running(&mut c, "sb-1");
        c.apply(take("sn-1", "sb-1"));
        c.apply(ready_cmd("sn-1", 4));
        // A new sandbox from the snapshot starts `restoring`.
        let mut from = spec();
        from.from_snapshot = Some("sn-1".into());
        let created = c.apply(Command::CreateSandbox {
            id: "sb-2".into(),
            name: None,
            spec: from.clone(),
            node: 2,
            gpus: vec![],
            request_id: None,
            at_ms: 5,
        });
        let Response::Sandbox(sb2) = created else { panic!("{created:?}") };
        assert_eq!((sb2.state, sb2.restore_from.as_deref()), (SandboxState::Restoring, Some("sn-1")));
        from.from_snapshot = Some("sn-404".into());
        let missing = Command::CreateSandbox {
            id: "sb-3".into(),
            name: None,
            spec: from,
            node: 2,
            gpus: vec![],
            request_id: None,
            at_ms: 5,
        };
        assert!(matches!(c.apply(missing), Response::Rejected(Rejection::SnapshotNotFound(_))));
        // Failover: same id, next generation, on another node, restoring.
        let moved = c.apply(Command::RestoreSandbox { id: "sb-1".into(), node: 3, snapshot: "sn-1".into(), at_ms: 6 });
        let Response::Sandbox(sb1) = moved else { panic!("{moved:?}") };
        assert_eq!((sb1.node, sb1.generation, sb1.state), (3, 2, SandboxState::Restoring));
        assert_eq!(sb1.container_id, None);
        // The old generation's reports are stale; the new one's start makes it running.
        let old = Command::SandboxStarted { id: "sb-1".into(), generation: 1, container_id: "c".into(), at_ms: 7 };
        assert!(matches!(c.apply(old), Response::Rejected(Rejection::Stale(_))));
        c.apply(Command::SandboxStarted { id: "sb-1".into(), generation: 2, container_id: "d".into(), at_ms: 8 });
        assert_eq!(c.sandboxes["sb-1"].state, SandboxState::Running);
    }
}
