//! One actor per sandbox container on this node: creates or adopts the container, enforces
//! the sandbox's timeout and idle timeout, and reports how it ended.
//!
//! Everything the actor does runs in a `sandbox` tracing span with the sandbox's `id`, its
//! `generation` and the `request_id` of the request that created it, so the lines of one
//! sandbox (and of the request behind it) can be found on the node that runs it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flotilla_raft::{Command, Sandbox, SandboxState, SnapshotState};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use super::pool::WarmPool;
use super::{container_name, owner, SandboxHost, LABEL_GENERATION, LABEL_INSTANCE, LABEL_SANDBOX};
use crate::runtime::{ContainerSpec, Limits, RuntimeError};

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(200);
/// Process limit inside every sandbox, so a fork bomb stays inside it.
pub const PIDS_LIMIT: i64 = 512;

/// Messages a sandbox actor handles.
#[derive(Debug)]
pub enum SandboxMsg {
    /// Check the timeout and idle deadlines.
    Tick,
    /// An exec began; the sandbox is not idle while one runs.
    ExecStarted,
    /// An exec ended.
    ExecEnded,
    /// Stdin arrived for an exec: activity for the idle timer.
    Input,
    /// The container's main process exited with this code.
    Exited(i64),
    /// The catalog says the sandbox is final: remove the container and stop.
    Stop,
    /// A periodic snapshot finished: the new one's id, if it was taken.
    Snapshotted(Option<String>),
    /// This node fenced itself (see [`super::fence`]): freeze the container.
    Fence,
    /// The fence lifted and the sandbox is still this node's: thaw the container.
    Thaw,
}

pub struct SandboxActor;

pub struct Args {
    pub record: Sandbox,
    pub host: SandboxHost,
    /// The span the actor runs in.
    pub span: tracing::Span,
}

pub struct State {
    record: Sandbox,
    host: SandboxHost,
    span: tracing::Span,
    container: Option<String>,
    /// When the sandbox started running here (or was adopted).
    started: Instant,
    last_activity: Instant,
    active_execs: u32,
    /// When the last periodic snapshot was started (`--snapshot-every`).
    last_periodic: Instant,
    /// A periodic snapshot is being taken.
    periodic_in_flight: bool,
    /// The previous periodic snapshot, removed once the next one is ready.
    previous_periodic: Option<String>,
    /// The container is frozen because this node is fenced: no deadline or snapshot runs.
    frozen: bool,
}

/// The container spec of `record` on this node, with the node's GPUs it leases.
pub(super) fn spec_for(host: &SandboxHost, record: &Sandbox) -> ContainerSpec {
    let node_gpus = host.cluster.view.read(|c| c.nodes.get(&record.node).map(|n| n.gpus.clone()));
    container_spec(record, &host.instance, &node_gpus.unwrap_or_default())
}

fn container_spec(record: &Sandbox, instance: &str, node_gpus: &[flotilla_raft::Gpu]) -> ContainerSpec {
    let s = &record.spec;
    let mut env: Vec<(String, String)> = s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let (gpu_env, gpu_devices) = crate::gpu::hand_out(node_gpus, &record.gpus);
    env.extend(gpu_env);
    ContainerSpec {
        name: Some(container_name(&record.id, record.generation)),
        image: s.image.clone(),
        cmd: (!s.command.is_empty()).then(|| s.command.clone()),
        env,
        workdir: s.workdir.clone(),
        limits: Limits { cpu: s.cpu, memory_mib: s.memory_mib, pids: PIDS_LIMIT },
        block_network: s.block_network,
        runtime: (s.runtime != "runc").then(|| s.runtime.clone()),
        labels: BTreeMap::from([
            (LABEL_SANDBOX.to_string(), record.id.clone()),
            (LABEL_GENERATION.to_string(), record.generation.to_string()),
            (LABEL_INSTANCE.to_string(), instance.to_string()),
        ]),
        gpu_devices,
        // Records from before sizes existed (0) keep the unlimited volume.
        disk_mib: (s.disk_mib > 0).then_some(s.disk_mib),
        writable_rootfs: s.writable_rootfs,
    }
}

impl State {
    /// Finds this sandbox's container from an earlier run of the daemon, or creates and
    /// starts a new one. Returns the container id and whether it is already running.
    async fn adopt_or_create(&mut self) -> Result<String, RuntimeError> {
        // Only a sandbox already reported started can have a container from an earlier run
        // of the daemon; a pending one goes straight to create (a leftover from a crash
        // before the report shows up as a name conflict, handled below).
        let mut from = self.record.restore_from.clone();
        if self.record.state != SandboxState::Pending {
            if let Some(id) = self.adopt().await? {
                return Ok(id);
            }
            // It ran here and its container is gone (the fence removed it, or the engine lost
            // it): it comes back from its newest ready snapshot, not empty, so the files that
            // snapshot holds are not lost (found by the chaos run with seed 23).
            let newest = self.record.last_snapshot.as_ref().filter(|s| {
                self.host.cluster.view.read(|c| c.snapshots.get(*s).is_some_and(|s| s.state == SnapshotState::Ready))
            });
            if let Some(newest) = newest {
                tracing::info!(sandbox = %self.record.id, snapshot = %newest, "container gone: restoring the newest snapshot");
                from = Some(newest.clone());
            }
        }
        if let Some(from) = &from {
            let snap = self.host.cluster.view.read(|c| c.snapshots.get(from).cloned());
            let snap = snap.ok_or_else(|| RuntimeError::NotFound(format!("snapshot {from} (to restore from)")))?;
            return super::restore::restore(&self.host, &self.record, &snap).await;
        }
        let docker = &self.host.docker;
        let spec = &self.record.spec;
        if WarmPool::eligible(spec) {
            if let Some(id) = self.host.pool.take(&spec.image) {
                match self.hand_out(&id).await {
                    Ok(()) => return Ok(id),
                    Err(e) => {
                        tracing::warn!(sandbox = %self.record.id, error = %e, "pooled container unusable; creating one");
                        let _ = docker.remove(&id).await;
                    }
                }
            }
        }
        let spec = spec_for(&self.host, &self.record);
        let id = match docker.create(&spec).await {
            Err(RuntimeError::Conflict(_)) => {
                let name = container_name(&self.record.id, self.record.generation);
                tracing::info!(sandbox = %self.record.id, "removing a leftover container with this sandbox's name");
                docker.remove(&name).await?;
                docker.create(&spec).await?
            }
            other => other?,
        };
        if let Err(e) = docker.start(&id).await {
            let _ = docker.remove(&id).await;
            // The engine's start errors name the container by id; the reason names the sandbox.
            return Err(e.naming(&id, &format!("sandbox {}", self.record.id)));
        }
        Ok(id)
    }

    /// This sandbox's running container from an earlier run of the daemon, if any; dead
    /// containers and other generations' are removed.
    async fn adopt(&self) -> Result<Option<String>, RuntimeError> {
        let docker = &self.host.docker;
        for c in docker.list_named(&self.host.instance_label()).await? {
            let Some((sandbox, generation)) = owner(&c) else { continue };
            if sandbox != self.record.id {
                continue;
            }
            if let Some(state) =
                docker.state(&c.id).await?.filter(|s| s.running && generation == self.record.generation)
            {
                if state.paused {
                    // Frozen by a fence when the daemon stopped; actors start only unfenced.
                    docker.unpause(&c.id).await?;
                }
                tracing::info!(sandbox = %self.record.id, container = %c.id, "adopted running container");
                return Ok(Some(c.id));
            }
            // A leftover from another generation or a dead container: not ours to keep.
            self.host.kept_logs.keep(docker, &c.id, &sandbox, generation).await;
            docker.remove(&c.id).await?;
        }
        Ok(None)
    }

    /// Makes a pooled container this sandbox's: its name and its limits, both before the
    /// sandbox is reported running (so no exec runs under the pool's limits).
    async fn hand_out(&self, id: &str) -> Result<(), RuntimeError> {
        let docker = &self.host.docker;
        let name = container_name(&self.record.id, self.record.generation);
        let s = &self.record.spec;
        let limits = Limits { cpu: s.cpu, memory_mib: s.memory_mib, pids: PIDS_LIMIT };
        tokio::try_join!(docker.rename(id, &name), docker.update_limits(id, &limits))?;
        Ok(())
    }

    fn finish(&mut self, exit_code: i64, reason: &str) {
        self.host.mark_ended(&self.record.id);
        self.host.report(Command::SandboxFinished {
            id: self.record.id.clone(),
            generation: self.record.generation,
            failed: false,
            exit_code: Some(exit_code),
            reason: reason.to_string(),
            at_ms: 0,
        });
    }

    /// Freezes (`docker pause`) or thaws the container for the node's fence.
    async fn freeze(&mut self, frozen: bool) {
        let Some(id) = &self.container else { return };
        if self.frozen == frozen {
            return;
        }
        let docker = &self.host.docker;
        let done = if frozen { docker.pause(id).await } else { docker.unpause(id).await };
        match done {
            Ok(()) => {
                self.frozen = frozen;
                tracing::info!(sandbox = %self.record.id, frozen, "sandbox container frozen for the fence, or thawed");
            }
            Err(e) => tracing::warn!(sandbox = %self.record.id, frozen, error = %e, "could not freeze or thaw"),
        }
    }

    async fn remove_container(&mut self) {
        if let Some(id) = self.container.take() {
            let (sandbox, generation) = (&self.record.id, self.record.generation);
            self.host.kept_logs.keep(&self.host.docker, &id, sandbox, generation).await;
            if let Err(e) = self.host.docker.remove(&id).await {
                tracing::warn!(sandbox = %self.record.id, error = %e, "could not remove container");
            }
        }
    }
}

impl Actor for SandboxActor {
    type Msg = SandboxMsg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(&self, myself: ActorRef<SandboxMsg>, args: Args) -> Result<State, ActorProcessingErr> {
        let span = args.span.clone();
        Ok(start(myself, args).instrument(span).await)
    }

    async fn handle(
        &self,
        myself: ActorRef<SandboxMsg>,
        msg: SandboxMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        on(myself, msg, state).instrument(span).await;
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<SandboxMsg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        state.host.unregister(&state.record.id);
        Ok(())
    }
}

/// Creates or adopts the container: the actor's state.
async fn start(myself: ActorRef<SandboxMsg>, args: Args) -> State {
    let now = Instant::now();
    let mut state = State {
        record: args.record,
        host: args.host,
        span: args.span,
        container: None,
        started: now,
        last_activity: now,
        active_execs: 0,
        last_periodic: now,
        periodic_in_flight: false,
        previous_periodic: None,
        frozen: false,
    };
    match state.adopt_or_create().await {
        Ok(container) => {
            if state.record.state == SandboxState::Pending || state.record.container_id.as_ref() != Some(&container) {
                state.host.report(Command::SandboxStarted {
                    id: state.record.id.clone(),
                    generation: state.record.generation,
                    container_id: container.clone(),
                    at_ms: 0,
                });
            }
            if let Some(started_ms) = state.record.started_at_ms {
                // Adopted: the timeout counts from when the sandbox first started.
                let ran = chrono::Utc::now().timestamp_millis().saturating_sub(started_ms).max(0) as u64;
                state.started = now.checked_sub(Duration::from_millis(ran)).unwrap_or(now);
            }
            let (docker, waiter, id) = (state.host.docker.clone(), myself.clone(), container.clone());
            tokio::spawn(async move {
                let _ = waiter.cast(SandboxMsg::Exited(wait_for_exit(&docker, &id).await));
            });
            tracing::info!(%container, "sandbox running");
            state.container = Some(container);
            myself.send_interval(TICK, || SandboxMsg::Tick);
        }
        Err(e) => {
            let reason = match &e {
                RuntimeError::ImageNotFound(image) => format!(
                    "image {image} not found on node {} (build it with `flotilla image build-base` or `flotilla image import`)",
                    state.host.cluster.id
                ),
                other => format!("could not start on node {}: {other}", state.host.cluster.id),
            };
            tracing::warn!(sandbox = %state.record.id, %reason, "sandbox failed");
            state.host.mark_ended(&state.record.id);
            state.host.report(Command::SandboxFinished {
                id: state.record.id.clone(),
                generation: state.record.generation,
                failed: true,
                exit_code: None,
                reason,
                at_ms: 0,
            });
            myself.stop(None);
        }
    }
    state
}

/// Handles one message.
async fn on(myself: ActorRef<SandboxMsg>, msg: SandboxMsg, state: &mut State) {
    let spec = &state.record.spec;
    match msg {
        SandboxMsg::Tick if state.frozen => {}
        SandboxMsg::Tick => {
            let now = Instant::now();
            let timed_out =
                spec.timeout_s > 0 && now.duration_since(state.started) >= Duration::from_secs(spec.timeout_s);
            let idle = spec.idle_timeout_s > 0
                && state.active_execs == 0
                && now.duration_since(state.last_activity) >= Duration::from_secs(spec.idle_timeout_s);
            if timed_out || idle {
                let reason = if timed_out { "timeout" } else { "idle timeout" };
                tracing::info!(sandbox = %state.record.id, reason, "sandbox ended");
                state.finish(124, reason);
                state.remove_container().await;
                myself.stop(None);
            } else if spec.snapshot_every_s > 0
                && !state.periodic_in_flight
                && now.duration_since(state.last_periodic) >= Duration::from_secs(spec.snapshot_every_s)
            {
                state.periodic_in_flight = true;
                state.last_periodic = now;
                periodic_snapshot(state.host.clone(), state.record.id.clone(), state.previous_periodic.clone(), myself);
            }
        }
        SandboxMsg::ExecStarted => {
            state.active_execs += 1;
            state.last_activity = Instant::now();
        }
        SandboxMsg::ExecEnded => {
            state.active_execs = state.active_execs.saturating_sub(1);
            state.last_activity = Instant::now();
        }
        SandboxMsg::Input => state.last_activity = Instant::now(),
        SandboxMsg::Exited(code) => {
            if state.container.is_some() {
                tracing::info!(sandbox = %state.record.id, code, "sandbox command exited");
                state.finish(code, "exited");
                state.remove_container().await;
                myself.stop(None);
            }
        }
        SandboxMsg::Stop => {
            state.remove_container().await;
            myself.stop(None);
        }
        SandboxMsg::Snapshotted(id) => {
            state.periodic_in_flight = false;
            if id.is_some() {
                state.previous_periodic = id;
            }
        }
        SandboxMsg::Fence => state.freeze(true).await,
        SandboxMsg::Thaw => state.freeze(false).await,
    }
}

/// Takes a filesystem snapshot for `--snapshot-every` and, once it is ready, removes the
/// previous periodic one (so periodic snapshots keep one restore point, not a growing pile).
fn periodic_snapshot(host: super::SandboxHost, id: String, previous: Option<String>, actor: ActorRef<SandboxMsg>) {
    tokio::spawn(async move {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let taken = super::snapshot::take(&host, &id, flotilla_raft::SnapshotKind::Fs, None, tx).await;
        let new = match taken {
            Ok(t) => {
                if let Some(old) = previous {
                    if let Err(e) = host.cluster.write(Command::RemoveSnapshot { id: old.clone() }).await {
                        tracing::debug!(sandbox = %id, snapshot = %old, error = %e, "previous periodic snapshot not removed");
                    }
                }
                Some(t.id)
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "periodic snapshot failed");
                None
            }
        };
        let _ = actor.cast(SandboxMsg::Snapshotted(new));
    });
}

/// Waits for the container's main process to exit and returns its code. If the engine stops
/// answering the wait (e.g. it restarted), asks for the container's state instead: a
/// container that is gone counts as killed (137), one still running is waited on again.
async fn wait_for_exit(docker: &crate::runtime::Docker, id: &str) -> i64 {
    loop {
        match docker.wait(id).await {
            Ok(code) => return code,
            Err(e) => match docker.state(id).await {
                Ok(None) => return 137,
                Ok(Some(s)) if !s.running => return s.exit_code.unwrap_or(137),
                _ => {
                    tracing::debug!(container = %id, error = %e, "wait failed; waiting again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

/// Starts the actor for `record` and registers it with the host. Its span is a child of the
/// current one.
pub async fn spawn(host: &SandboxHost, record: Sandbox) {
    let id = record.id.clone();
    let span = tracing::info_span!(
        "sandbox",
        id = %record.id,
        generation = record.generation,
        request_id = record.request_id.as_deref().unwrap_or_default()
    );
    match Actor::spawn(None, SandboxActor, Args { record, host: host.clone(), span }).await {
        Ok((actor, _)) => {
            // The actor may have stopped already (failed start); then post_stop ran first and
            // the entry would be stale, so only register a live one.
            if actor.get_status() != ractor::ActorStatus::Stopped {
                host.register(&id, actor.clone());
                // Fenced while it started: the fence's broadcast may have missed it.
                if host.is_fenced() {
                    let _ = actor.cast(SandboxMsg::Fence);
                }
            }
        }
        Err(e) => tracing::error!(sandbox = %id, error = %e, "could not spawn sandbox actor"),
    }
    host.end_start(&id);
}
