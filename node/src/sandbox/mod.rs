//! Sandboxes on this node: one [`actor::SandboxActor`] per sandbox container, started and
//! stopped by the [`reconciler`] from the catalog, and exec sessions ([`exec`]) that stream a
//! process's stdio between a client and the container.
//!
//! ```text
//! catalog (Raft) ──applied──▶ Reconciler ──spawn/stop──▶ SandboxActor (one per sandbox)
//!                                                          │ create/adopt container, timeout,
//!                                                          │ idle timeout, exit → report to catalog
//! client ─▶ any node ─Worker.Exec─▶ hosting node ─▶ exec session ─▶ engine exec (streams)
//! ```
//!
//! The catalog is the truth: a sandbox is live on this node when its record says so. The
//! actor reports what it observes (started, exited, timed out, failed) as catalog commands;
//! a terminate from a user makes the record final first, and the reconciler then stops the
//! actor, which removes the container. Restart policy: an actor that stops is not restarted
//! by itself; the reconciler spawns a new one on its next pass if the record is still live,
//! and the new actor adopts the running container (labels carry the sandbox id and
//! generation), so a node daemon restart keeps its sandboxes running.

pub mod actor;
pub mod exec;
pub mod failover;
pub mod fence;
#[cfg(test)]
mod golden;
pub mod kept_logs;
pub mod pool;
pub mod reconciler;
mod restore;
pub mod snapshot;
pub mod validate;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_raft::{Command, Rejection, SnapshotState};
use ractor::ActorRef;

use crate::blobs::{BlobStore, KeeperOptions};
use crate::cluster::Cluster;
use crate::error::NodeError;
use crate::runtime::{Docker, Listed};

/// Container label holding the sandbox id.
pub const LABEL_SANDBOX: &str = "flotilla.sandbox";
/// Container label holding the sandbox generation.
pub const LABEL_GENERATION: &str = "flotilla.generation";
/// Container label naming the node instance (its data dir's instance id) that owns the
/// container. Several nodes may share one engine (tests, small setups); each only ever
/// adopts or removes its own containers.
pub const LABEL_INSTANCE: &str = "flotilla.instance";

/// Exec ids remembered per node for retries; the oldest are forgotten first.
const EXEC_LOG_CAPACITY: usize = 10_000;
/// How long a report (started, finished) is retried while there is no leader.
const REPORT_FOR: Duration = Duration::from_secs(120);

/// The container name of a sandbox generation; also how a pooled container, whose labels
/// were fixed before it had an owner, is recognised after a restart.
pub fn container_name(id: &str, generation: u64) -> String {
    format!("flotilla-{id}-g{generation}")
}

/// The sandbox (id, generation) one of this node's containers belongs to, from its labels
/// or, for a container that came from the warm pool, its name.
pub fn owner(c: &Listed) -> Option<(String, u64)> {
    if let (Some(id), Some(g)) = (c.labels.get(LABEL_SANDBOX), c.labels.get(LABEL_GENERATION)) {
        return Some((id.clone(), g.parse().ok()?));
    }
    let (id, g) = c.name.strip_prefix("flotilla-")?.rsplit_once("-g")?;
    id.starts_with("sb-").then(|| Some((id.to_string(), g.parse().ok()?)))?
}

/// Keeps a snapshot id in [`SandboxHost`]'s in-flight set while it is being taken.
pub(crate) struct InFlight {
    set: Arc<Mutex<std::collections::HashSet<String>>>,
    id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set.lock().expect("in-flight lock").remove(&self.id);
    }
}

/// What an exec id has done, for idempotent retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecRecord {
    Running,
    Exited(i64),
}

/// The sandboxes hosted here, shared by the reconciler, the actors and the Worker service.
#[derive(Clone)]
pub struct SandboxHost {
    pub docker: Docker,
    pub cluster: Cluster,
    /// This node's instance id (see [`LABEL_INSTANCE`]).
    pub instance: String,
    pub pool: std::sync::Arc<pool::WarmPool>,
    /// Snapshot blobs kept by this node.
    pub blobs: BlobStore,
    /// Replication and upkeep of snapshot copies.
    pub keeper: KeeperOptions,
    /// Set while this node has had no contact with the leader and a majority for its lease,
    /// and from start until it has caught up with the leader: its sandboxes are frozen and it
    /// serves no exec (see [`fence`]).
    pub fenced: Arc<std::sync::atomic::AtomicBool>,
    /// Logs of this node's removed sandbox containers.
    pub kept_logs: kept_logs::KeptLogs,
    actors: Arc<Mutex<HashMap<String, ActorRef<actor::SandboxMsg>>>>,
    /// Sandboxes whose actor is being spawned (creating a container takes a while).
    starting: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Sandboxes whose actor reported their end; not restarted while that report is on its
    /// way into the catalog (the reconciler forgets them once the record is final).
    ended: Arc<Mutex<std::collections::HashSet<String>>>,
    execs: Arc<Mutex<ExecLog>>,
    /// Snapshots this process is taking now (added before the `CreateSnapshot` is proposed),
    /// so that a pending snapshot of this node that is not in it is known to be abandoned.
    snapshots_in_flight: Arc<Mutex<std::collections::HashSet<String>>>,
}

#[derive(Default)]
struct ExecLog {
    records: HashMap<String, ExecRecord>,
    order: VecDeque<String>,
}

impl SandboxHost {
    pub fn new(
        docker: Docker,
        cluster: Cluster,
        instance: String,
        pool: std::sync::Arc<pool::WarmPool>,
        blobs: BlobStore,
        keeper: KeeperOptions,
        kept_logs: kept_logs::KeptLogs,
    ) -> Self {
        Self {
            docker,
            cluster,
            instance,
            pool,
            blobs,
            keeper,
            fenced: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            kept_logs,
            actors: Default::default(),
            starting: Default::default(),
            ended: Default::default(),
            execs: Default::default(),
            snapshots_in_flight: Default::default(),
        }
    }

    /// The label selector for this node's containers.
    pub fn instance_label(&self) -> String {
        format!("{LABEL_INSTANCE}={}", self.instance)
    }

    /// Whether this node is fenced off (see [`fence`]).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Tells a sandbox's actor something happened (exec activity for the idle timer).
    pub fn notify(&self, id: &str, msg: actor::SandboxMsg) {
        if let Some(a) = self.actors.lock().expect("actors lock").get(id) {
            let _ = a.cast(msg);
        }
    }

    fn register(&self, id: &str, a: ActorRef<actor::SandboxMsg>) {
        self.actors.lock().expect("actors lock").insert(id.to_string(), a);
    }

    fn unregister(&self, id: &str) {
        self.actors.lock().expect("actors lock").remove(id);
    }

    /// Records that the sandbox's end was reported by this node.
    fn mark_ended(&self, id: &str) {
        self.ended.lock().expect("ended lock").insert(id.to_string());
    }

    /// Forgets ended sandboxes that are no longer among `live` (their final record applied).
    fn forget_ended(&self, live: &std::collections::HashSet<&str>) {
        self.ended.lock().expect("ended lock").retain(|id| live.contains(id.as_str()));
    }

    /// Marks `id` as being started; false if it already is, already has an actor, or has
    /// just ended here.
    fn begin_start(&self, id: &str) -> bool {
        if self.ended.lock().expect("ended lock").contains(id) {
            return false;
        }
        let live = self
            .actors
            .lock()
            .expect("actors lock")
            .get(id)
            .is_some_and(|a| a.get_status() != ractor::ActorStatus::Stopped);
        !live && self.starting.lock().expect("starting lock").insert(id.to_string())
    }

    fn end_start(&self, id: &str) {
        self.starting.lock().expect("starting lock").remove(id);
    }

    /// Ids with an actor, dropping entries whose actor has stopped.
    fn hosted(&self) -> Vec<String> {
        let mut actors = self.actors.lock().expect("actors lock");
        actors.retain(|_, a| a.get_status() != ractor::ActorStatus::Stopped);
        actors.keys().cloned().collect()
    }

    /// Claims `exec_id` for a new run; returns what it did before if it is a retry.
    pub fn claim_exec(&self, exec_id: &str) -> Option<ExecRecord> {
        let mut log = self.execs.lock().expect("exec log lock");
        if let Some(r) = log.records.get(exec_id) {
            return Some(*r);
        }
        if log.order.len() >= EXEC_LOG_CAPACITY {
            if let Some(old) = log.order.pop_front() {
                log.records.remove(&old);
            }
        }
        log.records.insert(exec_id.to_string(), ExecRecord::Running);
        log.order.push_back(exec_id.to_string());
        None
    }

    /// Forgets an exec id whose command never started.
    pub fn forget_exec(&self, exec_id: &str) {
        let mut log = self.execs.lock().expect("exec log lock");
        log.records.remove(exec_id);
        log.order.retain(|id| id != exec_id);
    }

    /// Records how an exec ended.
    pub fn finish_exec(&self, exec_id: &str, code: i64) {
        if let Some(r) = self.execs.lock().expect("exec log lock").records.get_mut(exec_id) {
            *r = ExecRecord::Exited(code);
        }
    }

    /// Marks snapshot `id` as being taken by this process until the guard drops.
    pub(crate) fn snapshot_in_flight(&self, id: &str) -> InFlight {
        self.snapshots_in_flight.lock().expect("in-flight lock").insert(id.to_string());
        InFlight { set: self.snapshots_in_flight.clone(), id: id.to_string() }
    }

    /// Pending snapshots this node was taking that no task here is taking any more (the
    /// node restarted mid-way, or gave up and could not record it): each becomes `failed`
    /// with the reason, and its sandbox `running` again, so the next snapshot can start.
    async fn fail_abandoned_snapshots(&self) {
        let me = self.cluster.id;
        let abandoned: Vec<String> = self.cluster.view.read(|c| {
            let in_flight = self.snapshots_in_flight.lock().expect("in-flight lock");
            c.snapshots
                .values()
                .filter(|s| s.node == me && s.state == SnapshotState::Pending && !in_flight.contains(&s.id))
                .map(|s| s.id.clone())
                .collect()
        });
        for id in abandoned {
            let reason = Some(format!("node {me} restarted (or gave up) while taking it"));
            tracing::warn!(snapshot = %id, "pending snapshot abandoned by this node: marking it failed");
            if let Err(e) = self.cluster.write(Command::SnapshotFailed { id: id.clone(), reason }).await {
                tracing::debug!(snapshot = %id, error = %e, "could not mark the abandoned snapshot failed yet");
            }
        }
    }

    /// Commits an observation about a sandbox, retrying while there is no leader. A stale or
    /// not-found answer means the record moved on (terminated, reassigned): nothing to do.
    pub fn report(&self, cmd: Command) {
        let cluster = self.cluster.clone();
        let host = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + REPORT_FOR;
            loop {
                match cluster.write(cmd.clone()).await {
                    Ok(_) => return,
                    Err(NodeError::Rejected(Rejection::Stale(_) | Rejection::SandboxNotFound(_))) => return,
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::error!(error = %e, ?cmd, "could not report sandbox state; giving up");
                        // Let the reconciler take the sandbox up again rather than leave a
                        // live record with nothing behind it.
                        if let Command::SandboxFinished { id, .. } = &cmd {
                            host.ended.lock().expect("ended lock").remove(id);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "sandbox report not accepted yet; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }
}
