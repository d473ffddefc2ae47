//! Sandboxes: ephemeral containers for untrusted code. The catalog holds what each sandbox
//! should be (spec, node, generation) and what it was last seen to be (state, exit code).
//! The hosting node's reconciler makes the container match the record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::replica::GpuRequest;
use super::snapshot::{Snapshot, SnapshotState};
use crate::command::{Rejection, Response};
use crate::NodeId;

/// What the user asked for. Validated at the edge before it reaches the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub image: String,
    /// Entrypoint; empty keeps the container alive with an idle PID 1 for exec.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory of the entrypoint and of execs without their own.
    pub workdir: Option<String>,
    /// CPU cores.
    pub cpu: f64,
    /// Memory limit, MiB.
    pub memory_mib: u64,
    /// The sandbox ends (exit 124) this long after it starts, seconds; 0 = never.
    pub timeout_s: u64,
    /// The sandbox ends (exit 124) after this long with no exec running and no stdin, seconds;
    /// 0 = never.
    pub idle_timeout_s: u64,
    /// No network interface but loopback.
    pub block_network: bool,
    /// OCI runtime: `runc` (default) or `runsc` (gVisor).
    pub runtime: String,
    /// User labels, for finding sandboxes again.
    pub tags: BTreeMap<String, String>,
    /// GPUs the sandbox needs, if any.
    pub gpu: Option<GpuRequest>,
    /// If its node dies, the leader restores it on a live node from its latest ready
    /// snapshot (same id, next generation).
    pub restore_on_failure: bool,
    /// Its node takes a snapshot every this many seconds; 0 = never.
    pub snapshot_every_s: u64,
    /// The snapshot it was created from, if any.
    pub from_snapshot: Option<String>,
    /// Size of its `/work` filesystem, MiB; writes past it get ENOSPC. 0 (records made
    /// before sizes existed): no limit.
    pub disk_mib: u64,
    /// A writable root filesystem (read-only by default).
    #[serde(default)]
    pub writable_rootfs: bool,
}

/// Lifecycle. `Terminated` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// Recorded and assigned; the container is being created.
    Pending,
    Running,
    /// Ended: its command exited, it timed out, or it was terminated.
    Terminated,
    /// Could not be started (e.g. the image is missing on its node).
    Failed,
    /// Running, while its node takes a snapshot of it.
    Snapshotting,
    /// Assigned, and being restored from a snapshot (created from one, or moved off a dead
    /// node); `running` once the container is back.
    Restoring,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Pending => "pending",
            SandboxState::Running => "running",
            SandboxState::Terminated => "terminated",
            SandboxState::Failed => "failed",
            SandboxState::Snapshotting => "snapshotting",
            SandboxState::Restoring => "restoring",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, SandboxState::Terminated | SandboxState::Failed)
    }
}

/// A sandbox as the catalog records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    /// `sb-` followed by leader-chosen random hex.
    pub id: String,
    /// Unique among sandboxes that are not final.
    pub name: Option<String>,
    pub spec: SandboxSpec,
    /// The node that hosts it.
    pub node: NodeId,
    /// GPU indices on `node` leased to the sandbox until it ends.
    pub gpus: Vec<u32>,
    /// The client's id for the create request, to recognise a retry.
    pub request_id: Option<String>,
    /// 1 when created; reassignment to another node (failover, a later release) will bump it.
    /// Reports from another generation are stale and refused.
    pub generation: u64,
    pub state: SandboxState,
    /// Engine container id once created.
    pub container_id: Option<String>,
    /// Exit code once final: the command's own, 124 timeout, 137 terminated, 128+N signal N.
    pub exit_code: Option<i64>,
    /// Why it ended, in words ("exited", "timeout", "idle timeout", "terminated", or the error).
    pub reason: Option<String>,
    /// Unix ms, leader clock.
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// Its newest ready snapshot.
    pub last_snapshot: Option<String>,
    /// The snapshot this generation's container is restored from (`None`: a fresh one).
    pub restore_from: Option<String>,
}

/// Records a new sandbox. A retried create (a known request id) was answered by the caller
/// from the catalog's request index.
#[allow(clippy::too_many_arguments)] // one per field of the command
pub(super) fn create(
    sandboxes: &mut BTreeMap<String, Sandbox>,
    snapshots: &BTreeMap<String, Snapshot>,
    id: String,
    name: Option<String>,
    spec: SandboxSpec,
    node: NodeId,
    gpus: Vec<u32>,
    request_id: Option<String>,
    at_ms: i64,
) -> Response {
    if id.is_empty() || sandboxes.contains_key(&id) {
        return Response::Rejected(Rejection::Invalid {
            field: "id".into(),
            message: format!("{id:?} is empty or taken"),
        });
    }
    if let Some(name) = &name {
        if let Some(other) = sandboxes.values().find(|s| s.name.as_ref() == Some(name) && !s.state.is_final()) {
            return Response::Rejected(Rejection::Conflict(format!("sandbox name {name:?} is in use by {}", other.id)));
        }
    }
    if let Some(from) = &spec.from_snapshot {
        if !snapshots.get(from).is_some_and(|s| s.state == SnapshotState::Ready) {
            return Response::Rejected(Rejection::SnapshotNotFound(from.clone()));
        }
    }
    let restore_from = spec.from_snapshot.clone();
    let sandbox = Sandbox {
        id: id.clone(),
        name,
        spec,
        node,
        gpus,
        request_id,
        generation: 1,
        state: if restore_from.is_some() { SandboxState::Restoring } else { SandboxState::Pending },
        container_id: None,
        exit_code: None,
        reason: None,
        created_at_ms: at_ms,
        started_at_ms: None,
        finished_at_ms: None,
        last_snapshot: None,
        restore_from,
    };
    sandboxes.insert(id, sandbox.clone());
    Response::Sandbox(sandbox)
}

/// Looks a sandbox up for a report from its node: unknown ids, stale generations and final
/// sandboxes are refused.
#[allow(clippy::result_large_err)] // the Err is the Response `apply` returns anyway
fn live<'a>(
    sandboxes: &'a mut BTreeMap<String, Sandbox>,
    id: &str,
    generation: u64,
) -> Result<&'a mut Sandbox, Response> {
    let Some(sb) = sandboxes.get_mut(id) else {
        return Err(Response::Rejected(Rejection::SandboxNotFound(id.to_string())));
    };
    if sb.generation != generation {
        return Err(Response::Rejected(Rejection::Stale(format!(
            "sandbox {id} is at generation {}, report is for {generation}",
            sb.generation
        ))));
    }
    if sb.state.is_final() {
        return Err(Response::Rejected(Rejection::Stale(format!("sandbox {id} is already {}", sb.state.as_str()))));
    }
    Ok(sb)
}

pub(super) fn started(
    sandboxes: &mut BTreeMap<String, Sandbox>,
    id: &str,
    generation: u64,
    container_id: String,
    at_ms: i64,
) -> Response {
    let sb = match live(sandboxes, id, generation) {
        Ok(sb) => sb,
        Err(r) => return r,
    };
    sb.state = SandboxState::Running;
    sb.container_id = Some(container_id);
    sb.started_at_ms.get_or_insert(at_ms);
    Response::Sandbox(sb.clone())
}

pub(super) fn finished(
    sandboxes: &mut BTreeMap<String, Sandbox>,
    id: &str,
    generation: u64,
    failed: bool,
    exit_code: Option<i64>,
    reason: String,
    at_ms: i64,
) -> Response {
    let sb = match live(sandboxes, id, generation) {
        Ok(sb) => sb,
        Err(r) => return r,
    };
    sb.state = if failed { SandboxState::Failed } else { SandboxState::Terminated };
    sb.exit_code = exit_code;
    sb.reason = Some(reason);
    sb.finished_at_ms = Some(at_ms);
    Response::Sandbox(sb.clone())
}

/// Failover: the leader moves a live sandbox to `node` as its next generation, restored from
/// `snapshot`. Reports from the old generation are stale from here on.
pub(super) fn restore(
    sandboxes: &mut BTreeMap<String, Sandbox>,
    snapshots: &BTreeMap<String, Snapshot>,
    id: &str,
    node: NodeId,
    snapshot: &str,
) -> Response {
    let Some(sb) = sandboxes.get_mut(id) else {
        return Response::Rejected(Rejection::SandboxNotFound(id.to_string()));
    };
    if sb.state.is_final() {
        return Response::Rejected(Rejection::Stale(format!("sandbox {id} is already {}", sb.state.as_str())));
    }
    if !snapshots.get(snapshot).is_some_and(|s| s.state == SnapshotState::Ready && s.sandbox == id) {
        return Response::Rejected(Rejection::SnapshotNotFound(snapshot.to_string()));
    }
    sb.generation += 1;
    sb.node = node;
    sb.state = SandboxState::Restoring;
    sb.container_id = None;
    sb.restore_from = Some(snapshot.to_string());
    Response::Sandbox(sb.clone())
}

/// A user's terminate: final at once in the catalog (exit 137); the hosting node sees the
/// final record and removes the container. Terminating a final sandbox changes nothing.
pub(super) fn terminate(sandboxes: &mut BTreeMap<String, Sandbox>, id: &str, at_ms: i64) -> Response {
    let Some(sb) = sandboxes.get_mut(id) else {
        return Response::Rejected(Rejection::SandboxNotFound(id.to_string()));
    };
    if !sb.state.is_final() {
        sb.state = SandboxState::Terminated;
        sb.exit_code = Some(137);
        sb.reason = Some("terminated".into());
        sb.finished_at_ms = Some(at_ms);
    }
    Response::Sandbox(sb.clone())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Catalog, Command};

    pub(crate) fn spec() -> SandboxSpec {
        SandboxSpec {
            image: "flotilla/busybox".into(),
            command: vec![],
            env: BTreeMap::new(),
            workdir: None,
            cpu: 0.5,
            memory_mib: 128,
            timeout_s: 0,
            idle_timeout_s: 0,
            block_network: false,
            runtime: "runc".into(),
            tags: BTreeMap::new(),
            gpu: None,
            restore_on_failure: false,
            snapshot_every_s: 0,
            writable_rootfs: false,
            from_snapshot: None,
            disk_mib: 0,
        }
    }

    fn create(id: &str, name: Option<&str>) -> Command {
        Command::CreateSandbox {
            id: id.into(),
            name: name.map(Into::into),
            spec: spec(),
            node: 1,
            gpus: vec![],
            request_id: None,
            at_ms: 10,
        }
    }

    fn sandbox(r: Response) -> Sandbox {
        match r {
            Response::Sandbox(s) => s,
            other => panic!("expected a sandbox, got {other:?}"),
        }
    }

    #[test]
    fn lifecycle_pending_running_terminated() {
        let mut c = Catalog::default();
        let sb = sandbox(c.apply(create("sb-1", Some("a"))));
        assert_eq!((sb.state, sb.generation, sb.node), (SandboxState::Pending, 1, 1));
        let sb = sandbox(c.apply(Command::SandboxStarted {
            id: "sb-1".into(),
            generation: 1,
            container_id: "c1".into(),
            at_ms: 20,
        }));
        assert_eq!(
            (sb.state, sb.started_at_ms, sb.container_id.as_deref()),
            (SandboxState::Running, Some(20), Some("c1"))
        );
        let sb = sandbox(c.apply(Command::SandboxFinished {
            id: "sb-1".into(),
            generation: 1,
            failed: false,
            exit_code: Some(124),
            reason: "timeout".into(),
            at_ms: 30,
        }));
        assert_eq!(
            (sb.state, sb.exit_code, sb.reason.as_deref()),
            (SandboxState::Terminated, Some(124), Some("timeout"))
        );
    }

    #[test]
    fn names_are_unique_among_live_sandboxes_only() {
        let mut c = Catalog::default();
        c.apply(create("sb-1", Some("a")));
        assert!(matches!(c.apply(create("sb-2", Some("a"))), Response::Rejected(Rejection::Conflict(_))));
        assert!(!c.sandboxes.contains_key("sb-2"));
        c.apply(Command::TerminateSandbox { id: "sb-1".into(), at_ms: 40 });
        assert_eq!(sandbox(c.apply(create("sb-2", Some("a")))).name.as_deref(), Some("a"));
    }

    #[test]
    fn stale_and_late_reports_are_refused() {
        let mut c = Catalog::default();
        c.apply(create("sb-1", None));
        let stale = Command::SandboxStarted { id: "sb-1".into(), generation: 2, container_id: "c".into(), at_ms: 1 };
        assert!(matches!(c.apply(stale), Response::Rejected(Rejection::Stale(_))));
        let terminated = sandbox(c.apply(Command::TerminateSandbox { id: "sb-1".into(), at_ms: 5 }));
        assert_eq!((terminated.state, terminated.exit_code), (SandboxState::Terminated, Some(137)));
        // The node's report that arrives after the terminate changes nothing.
        let late = Command::SandboxStarted { id: "sb-1".into(), generation: 1, container_id: "c".into(), at_ms: 6 };
        assert!(matches!(c.apply(late), Response::Rejected(Rejection::Stale(_))));
        assert_eq!(c.sandboxes["sb-1"], terminated);
        // Terminating again is a no-op; unknown ids are not found.
        assert_eq!(sandbox(c.apply(Command::TerminateSandbox { id: "sb-1".into(), at_ms: 9 })), terminated);
        assert!(matches!(
            c.apply(Command::TerminateSandbox { id: "nope".into(), at_ms: 9 }),
            Response::Rejected(Rejection::SandboxNotFound(_))
        ));
    }

    #[test]
    fn a_retried_create_returns_the_first_sandbox() {
        let mut c = Catalog::default();
        let with_rid = |id: &str| Command::CreateSandbox {
            id: id.into(),
            name: None,
            spec: spec(),
            node: 1,
            gpus: vec![],
            request_id: Some("req-1".into()),
            at_ms: 10,
        };
        let first = sandbox(c.apply(with_rid("sb-1")));
        assert_eq!(sandbox(c.apply(with_rid("sb-2"))), first);
        assert_eq!(c.sandboxes.len(), 1);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut c = Catalog::default();
        c.apply(create("sb-1", None));
        assert!(matches!(c.apply(create("sb-1", None)), Response::Rejected(Rejection::Invalid { .. })));
    }
}
