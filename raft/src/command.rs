//! Every replicated write ([`Command`]) and what applying it returns ([`Response`]).

use serde::{Deserialize, Serialize};

use crate::catalog::{
    App, Call, CallOutcome, CompactReport, EventKind, Gpu, NodeRecord, Replica, Sandbox, SandboxSpec, ScheduleRecord,
    ScheduleSpec, Snapshot, SnapshotKind, Token,
};
use crate::NodeId;

/// A write to the catalog. Built by the node that took the client request, stamped by the
/// leader, then proposed. Fields named `at_ms` are leader-chosen wall-clock times (Unix ms),
/// filled in by [`Command::stamp`] so that `apply` never reads a clock.
// A sandbox create carries its whole spec; commands are short-lived, so it is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create an app or replace it atomically with a new version.
    DeployApp {
        /// App name, unique in the cluster.
        name: String,
        /// Names of the app's functions, sorted.
        functions: Vec<String>,
        /// The validated spec in canonical JSON (opaque to the catalog).
        spec_json: String,
        /// Chosen by the client once per deploy: a retried request with the same id is
        /// applied once and answers with the version it created.
        request_id: String,
        at_ms: i64,
        /// The app's schedules, computed by the node from the validated spec; installed in the
        /// same entry as the new version, so a redeploy is atomic.
        schedules: Vec<ScheduleSpec>,
    },
    /// Stop an app: it stays in the catalog, marked stopped. Stopping twice is a no-op.
    StopApp { name: String, at_ms: i64 },
    /// A node announces itself and its capacity when it starts (idempotent).
    RegisterNode { id: NodeId, addr: String, cpus: u32, memory_mib: u64, gpus: Vec<Gpu>, at_ms: i64 },
    /// Record a new sandbox, placed by the leader on `node`. A `request_id` seen before
    /// answers with the sandbox it created (a client retry), creating nothing.
    CreateSandbox {
        id: String,
        name: Option<String>,
        spec: SandboxSpec,
        node: NodeId,
        /// GPU indices on `node` the leader chose for the sandbox; leased with the record.
        gpus: Vec<u32>,
        request_id: Option<String>,
        at_ms: i64,
    },
    /// The hosting node started the sandbox's container.
    SandboxStarted { id: String, generation: u64, container_id: String, at_ms: i64 },
    /// The sandbox ended on its node (its command exited, a timeout, or it could not start).
    SandboxFinished {
        id: String,
        generation: u64,
        /// It never ran (e.g. missing image), as opposed to having run and ended.
        failed: bool,
        exit_code: Option<i64>,
        reason: String,
        at_ms: i64,
    },
    /// A user ends a sandbox: final at once; its node removes the container.
    TerminateSandbox { id: String, at_ms: i64 },
    /// Record an API token (its hash). With `first`, only if the cluster has no token yet:
    /// that is the bootstrap, and `apply` makes it happen at most once.
    CreateToken { id: String, name: String, hash: String, first: bool, at_ms: i64 },
    /// Revoke a token; it stops working on each node as the entry is applied there.
    RevokeToken { id: String, at_ms: i64 },
    /// Drop a removed node's record. Proposed by the leader after it removed the node from
    /// the Raft membership; a no-op if there is no record.
    ForgetNode { id: NodeId },
    /// Several commands proposed as one entry by the leader's write batcher; applied in
    /// order, each as if it were its own entry. Batches do not nest.
    Batch(Vec<Command>),
    /// Record a durable call to `app`/`function`, queued for a node with a replica. A
    /// `request_id` seen before answers with the call it created.
    SpawnCall { id: String, app: String, function: String, input: Vec<u8>, request_id: Option<String>, at_ms: i64 },
    /// `node` claims a queued call's `attempt` to run it; refused unless that attempt is queued
    /// and due.
    StartCall { id: String, node: NodeId, attempt: u32, at_ms: i64 },
    /// The running `attempt` ended. A failure with `retry_at_ms` queues the next attempt for
    /// then (the node computed the backoff from the function's retry policy).
    FinishCall { id: String, attempt: u32, outcome: CallOutcome, retry_at_ms: Option<i64>, at_ms: i64 },
    /// The running `attempt` was lost with its node: queue the next one now. Leader only.
    RequeueCall { id: String, attempt: u32, reason: String, at_ms: i64 },
    /// A user cancels a call; its node stops the attempt when it sees the record final.
    CancelCall { id: String, at_ms: i64 },
    /// The autoscaler assigns a new warm replica of `app`/`function` at `version` to `node`,
    /// with the GPU indices it chose there.
    AddReplica {
        id: String,
        app: String,
        function: String,
        version: u64,
        node: NodeId,
        cpu: f64,
        memory_mib: u64,
        gpus: Vec<u32>,
        at_ms: i64,
    },
    /// The hosting node's container for the replica is up.
    ReplicaReady { id: String, at_ms: i64 },
    /// The autoscaler retires a replica; its node drains in-flight inputs, then removes it.
    RemoveReplica { id: String, at_ms: i64 },
    /// The hosting node could not start the replica (e.g. its image is missing there).
    ReplicaFailed { id: String, reason: String, at_ms: i64 },
    /// The leader's Scheduler commits one tick of `schedule` (`app/function`): accepted only
    /// when `scheduled_at_ms` is the schedule's next tick at `revision`; then the tick's call
    /// `call_id` is recorded (queued, or skipped for `skip`'s reason or by the overlap policy)
    /// and the schedule moves on to `next_fire_at_ms`, computed by the leader.
    Fire {
        schedule: String,
        revision: u64,
        scheduled_at_ms: i64,
        next_fire_at_ms: Option<i64>,
        call_id: String,
        /// The leader that proposed it.
        node: NodeId,
        /// Set when the catch-up policy drops the tick: the reason recorded on its call.
        skip: Option<String>,
        at_ms: i64,
    },
    /// Stop firing `schedule` until it is resumed.
    PauseSchedule { schedule: String, at_ms: i64 },
    /// Fire `schedule` again from `next_fire_at_ms`, the first tick after the resume.
    ResumeSchedule { schedule: String, next_fire_at_ms: Option<i64>, at_ms: i64 },
    /// The hosting node starts a snapshot of a running sandbox (id chosen by that node):
    /// recorded `pending`, the sandbox `snapshotting`.
    CreateSnapshot {
        id: String,
        sandbox: String,
        generation: u64,
        kind: SnapshotKind,
        path: Option<String>,
        node: NodeId,
        at_ms: i64,
    },
    /// The blob is stored on every node of `replicas`: the snapshot is restorable.
    SnapshotReady { id: String, size_bytes: u64, sha256: String, replicas: Vec<NodeId>, at_ms: i64 },
    /// A pending snapshot could not be taken or replicated: dropped, or, with a `reason`,
    /// kept as `failed` (the node taking it restarted or died mid-way).
    SnapshotFailed { id: String, reason: Option<String> },
    /// `snapshot rm`: the record goes; every node then collects the blob.
    RemoveSnapshot { id: String },
    /// The nodes holding a verified copy changed (repair, or a copy found missing).
    SetSnapshotReplicas { id: String, replicas: Vec<NodeId> },
    /// Failover: the leader moves a live sandbox to `node` as its next generation, restored
    /// from `snapshot`.
    RestoreSandbox { id: String, node: NodeId, snapshot: String, at_ms: i64 },
    /// `app rm`: the app, its schedules and its replica records go in one entry (every node
    /// then drains and removes the containers of replicas it no longer has a record for);
    /// its queued calls end cancelled; final calls stay until retention.
    RemoveApp { name: String, at_ms: i64 },
    /// The leader's autoscaler records why a replica of `app`/`function` at `version` cannot
    /// be placed (`Some`), or that it can again (`None`). Written only when the reason
    /// changes; a record for another version is stale.
    SetPending { app: String, function: String, version: u64, reason: Option<String>, at_ms: i64 },
    /// Revoke a token unless it is the last one not yet revoked: that would lock every client
    /// out for good (bootstrap stays closed once the table has a token). Refused with
    /// [`Rejection::Precondition`] then; [`Command::RevokeToken`] is the forced form.
    RevokeTokenUnlessLast { id: String, at_ms: i64 },
    /// Retention: remove final records older than `retention_ms` before `at_ms`, and each
    /// schedule's final runs beyond its `runs_kept` (by `app/function`; absent means
    /// [`DEFAULT_RUNS_KEPT`](crate::catalog::DEFAULT_RUNS_KEPT)). Proposed periodically by
    /// the leader; see `catalog::retention`.
    Compact { retention_ms: u64, runs_kept: std::collections::BTreeMap<String, u32>, at_ms: i64 },
    /// Record a cluster event that no other command carries (a sandbox that could not be
    /// placed, a new leader, a lifted fence). Proposed fire-and-forget by the node that saw
    /// it; repeats coalesce (see [`crate::catalog::Events`]).
    RecordEvent { kind: EventKind, subject: String, message: String, node: Option<NodeId>, at_ms: i64 },
    /// `image login`: the login the nodes use to pull from `registry` (replaces an earlier one).
    RegistryLogin { registry: String, username: String, password: crate::catalog::Password, at_ms: i64 },
}

impl Command {
    /// Sets every leader-chosen time to `now_ms`. Called by the leader just before it proposes.
    pub fn stamp(&mut self, now_ms: i64) {
        match self {
            Command::Batch(cmds) => cmds.iter_mut().for_each(|c| c.stamp(now_ms)),
            c => {
                if let Some(at_ms) = c.at_ms_mut() {
                    *at_ms = now_ms;
                }
            }
        }
    }

    /// The command's leader-chosen time, if it has one (a batch has none of its own).
    pub fn at_ms_mut(&mut self) -> Option<&mut i64> {
        match self {
            Command::DeployApp { at_ms, .. }
            | Command::StopApp { at_ms, .. }
            | Command::RegisterNode { at_ms, .. }
            | Command::CreateSandbox { at_ms, .. }
            | Command::SandboxStarted { at_ms, .. }
            | Command::SandboxFinished { at_ms, .. }
            | Command::TerminateSandbox { at_ms, .. }
            | Command::CreateToken { at_ms, .. }
            | Command::RevokeToken { at_ms, .. }
            | Command::SpawnCall { at_ms, .. }
            | Command::StartCall { at_ms, .. }
            | Command::FinishCall { at_ms, .. }
            | Command::RequeueCall { at_ms, .. }
            | Command::CancelCall { at_ms, .. }
            | Command::AddReplica { at_ms, .. }
            | Command::ReplicaReady { at_ms, .. }
            | Command::RemoveReplica { at_ms, .. }
            | Command::ReplicaFailed { at_ms, .. }
            | Command::Fire { at_ms, .. }
            | Command::PauseSchedule { at_ms, .. }
            | Command::ResumeSchedule { at_ms, .. }
            | Command::CreateSnapshot { at_ms, .. }
            | Command::SnapshotReady { at_ms, .. }
            | Command::RestoreSandbox { at_ms, .. }
            | Command::RemoveApp { at_ms, .. }
            | Command::SetPending { at_ms, .. }
            | Command::RevokeTokenUnlessLast { at_ms, .. }
            | Command::Compact { at_ms, .. }
            | Command::RecordEvent { at_ms, .. }
            | Command::RegistryLogin { at_ms, .. } => Some(at_ms),
            Command::ForgetNode { .. }
            | Command::SnapshotFailed { .. }
            | Command::RemoveSnapshot { .. }
            | Command::SetSnapshotReplicas { .. }
            | Command::Batch(_) => None,
        }
    }
}

/// The outcome of applying a [`Command`], the same on every node. Variants carry whole
/// records (a sandbox with its spec is the largest); responses are short-lived, so they are
/// not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Membership changes and other entries with no catalog result.
    Empty,
    App(App),
    Node(NodeRecord),
    Sandbox(Sandbox),
    Token(Token),
    Call(Call),
    Replica(Replica),
    /// One response per command of a [`Command::Batch`], in order.
    Batch(Vec<Response>),
    /// The command was invalid for the catalog as it stood; nothing changed.
    Rejected(Rejection),
    Schedule(ScheduleRecord),
    Snapshot(Snapshot),
    /// What a [`Command::Compact`] removed.
    Compacted(CompactReport),
}

/// Why `apply` refused a command. Deterministic: every node refuses it the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("app {0:?} not found")]
    AppNotFound(String),
    #[error("sandbox {0:?} not found")]
    SandboxNotFound(String),
    #[error("token {0:?} not found")]
    TokenNotFound(String),
    #[error("function {0:?} not found")]
    FunctionNotFound(String),
    #[error("call {0:?} not found")]
    CallNotFound(String),
    /// The call existed, was final, and was compacted away by retention.
    #[error("call {0:?} expired: final calls are removed after the cluster's retention window ([retention] final_records_s) or beyond their schedule's runs_kept")]
    CallExpired(String),
    /// The request conflicts with a record that exists (e.g. a name in use).
    #[error("{0}")]
    Conflict(String),
    /// A report from a node about an older generation or an already final record.
    #[error("stale: {0}")]
    Stale(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("schedule {0:?} not found")]
    ScheduleNotFound(String),
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    /// The app exists but is stopped: deploying it again runs it.
    #[error("app {0:?} is stopped (deploy it again to run it)")]
    AppStopped(String),
    /// The command is valid but the catalog's state forbids it; the message says why and
    /// how to go ahead anyway.
    #[error("{0}")]
    Precondition(String),
}

/// A write only the leader can carry out, as a follower forwards it (Peer `Forward`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Proposal {
    /// A catalog command; the leader stamps it before proposing.
    Write(Command),
    /// Add a node: as a learner until it has caught up, then as a voter.
    AddNode { id: NodeId, addr: String },
    /// Remove a node from the voters and learners.
    RemoveNode { id: NodeId },
    /// Create a sandbox: the leader picks its id and node, then proposes `CreateSandbox`.
    CreateSandbox { name: Option<String>, spec: SandboxSpec, request_id: Option<String> },
}

/// What the leader answers to a [`Proposal`] once it is committed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProposalReply {
    Write(Response),
    Membership { voters: Vec<NodeId>, learners: Vec<NodeId> },
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The variant names of `pub enum Command`, read from this file's source: the lines
    /// indented one level inside the enum that start with a capitalised name.
    fn enum_variants() -> BTreeSet<String> {
        let source = include_str!("command.rs");
        let body = source.split("pub enum Command {\n").nth(1).expect("the enum is in this file");
        let body = &body[..body.find("\n}\n").expect("the enum ends at column 0")];
        body.lines()
            .filter_map(|line| line.strip_prefix("    "))
            .filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|line| line.chars().take_while(|c| c.is_ascii_alphanumeric()).collect())
            .collect()
    }

    /// The names in the first column of the command table in docs/architecture/index.md.
    fn documented_commands() -> BTreeSet<String> {
        let doc = include_str!("../../docs/architecture/index.md");
        let table = doc.split("A write is a `Command`").nth(1).expect("index.md has the command table");
        table
            .lines()
            .skip_while(|line| !line.starts_with("| command |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .flat_map(|row| {
                row.split('|').nth(1).unwrap_or_default().split(',').map(str::to_string).collect::<Vec<_>>()
            })
            .map(|name| name.trim().trim_matches('`').to_string())
            .collect()
    }

    #[test]
    fn the_architecture_table_lists_every_command() {
        let variants = enum_variants();
        assert!(variants.contains("DeployApp") && variants.contains("Batch"), "parsed {variants:?}");
        let documented = documented_commands();
        let missing: Vec<_> = variants.difference(&documented).collect();
        let gone: Vec<_> = documented.difference(&variants).collect();
        assert!(
            missing.is_empty() && gone.is_empty(),
            "docs/architecture/index.md's command table drifted from `Command`: \
             not documented {missing:?}, documented but not a variant {gone:?}"
        );
    }
}
