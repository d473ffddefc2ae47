//! One warm container of a function: its lifecycle ([`ReplicaActor`]) and the way inputs run
//! on it ([`ReplicaCore`]).
//!
//! The actor creates the container when its record appears here (a keepalive PID 1 with the
//! function's env, limits and GPUs), unpacks the function's `code` into it (a blob fetched
//! from a peer if this node has none, see `blobs::code`), starts the worker process in worker
//! mode, and reports `ReplicaReady`; a container that cannot be made is reported with
//! `ReplicaFailed` and the reason (a missing image, say), which callers waiting for the
//! function see. When the
//! record goes, the actor drains: it stops taking inputs, waits for those running, then
//! removes the container. Replica containers are not adopted across a daemon restart: the
//! inputs they ran were lost with the daemon, so the reconciler removes them and the
//! records' new actors start fresh ones.
//!
//! The actor runs in a `replica` tracing span with the replica's `id`, `app` and `function`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flotilla::spec::{FunctionSpec, Mode, CODE_DIR};
use flotilla_raft::{Command, Replica};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::output::Sink;
use super::worker_mode::WorkerProcess;
use super::{container_name, exec_mode, FunctionHost, LABEL_REPLICA};
use crate::runtime::{ContainerSpec, Docker, Limits, RuntimeError};
use crate::sandbox::LABEL_INSTANCE;

/// Process limit inside a replica container.
const PIDS_LIMIT: i64 = 1024;
/// How long a report to the catalog is retried while there is no leader.
const REPORT_FOR: Duration = Duration::from_secs(60);

/// A replica as inputs see it: shared by the router, the executor and the actor.
pub struct ReplicaCore {
    pub id: String,
    pub app: String,
    pub function: String,
    pub version: u64,
    pub spec: Arc<FunctionSpec>,
    container: String,
    docker: Docker,
    permits: Arc<Semaphore>,
    ready: AtomicBool,
    draining: AtomicBool,
    running: AtomicU32,
    worker: tokio::sync::Mutex<Option<Arc<WorkerProcess>>>,
    /// The node's metrics, where each input's duration is recorded.
    metrics: crate::metrics::Metrics,
    /// Where its processes' stderr is kept for `flotilla logs fn`.
    output: Sink,
}

/// Permission to run one input on a replica; the replica's concurrency is one less while held.
pub struct Slot {
    pub replica: Arc<ReplicaCore>,
    _permit: OwnedSemaphorePermit,
}

impl ReplicaCore {
    /// Whether new inputs may be sent here.
    pub fn accepting(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    /// Inputs running now.
    pub fn running(&self) -> u32 {
        self.running.load(Ordering::SeqCst)
    }

    /// A free slot now, if the replica has one.
    pub fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        if !self.accepting() {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Slot { replica: self.clone(), _permit: permit })
    }

    /// Waits for a free slot; `None` if the replica starts draining meanwhile.
    pub async fn slot(self: &Arc<Self>) -> Option<Slot> {
        if !self.accepting() {
            return None;
        }
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        self.accepting().then(|| Slot { replica: self.clone(), _permit: permit })
    }

    /// Runs one input within the function's time limit; `call` is the durable call it is an
    /// attempt of (`None` for a synchronous input), which its process's stderr is attributed
    /// to. `Err` is the failure message.
    pub async fn run(&self, input: Vec<u8>, call: Option<&str>) -> Result<Vec<u8>, String> {
        self.running.fetch_add(1, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let timeout = Duration::from_secs(self.spec.timeout_s);
        let result = match self.spec.mode {
            Mode::Exec => {
                let output = self.output.only(call);
                exec_mode::run(&self.docker, &self.container, &self.spec.command, input, timeout, Some(&output)).await
            }
            Mode::Worker => {
                let _attributed = self.output.running(call);
                self.run_on_worker(input, timeout).await
            }
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.metrics.call_finished(&self.app, &self.function, result.is_ok(), started.elapsed());
        result
    }

    async fn run_on_worker(&self, input: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, String> {
        let worker = self.worker().await?;
        match tokio::time::timeout(timeout, worker.call(input)).await {
            Ok(reply) => reply,
            Err(_) => {
                // A worker stuck on one input would hold its slot forever: restart it. Other
                // inputs in flight on it fail with the reason.
                let _ = self.docker.kill_exec(worker.exec_id()).await;
                Err(format!("timed out after {}s; the worker process was restarted", timeout.as_secs()))
            }
        }
    }

    /// The worker process, started again if it has ended.
    async fn worker(&self) -> Result<Arc<WorkerProcess>, String> {
        let mut current = self.worker.lock().await;
        if let Some(w) = current.as_ref().filter(|w| !w.is_dead()) {
            return Ok(w.clone());
        }
        let w = WorkerProcess::start(&self.docker, &self.container, &self.spec.command, self.output.clone()).await?;
        *current = Some(w.clone());
        Ok(w)
    }

    /// Stops taking inputs and waits until those running have finished.
    async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let all = self.spec.concurrency;
        let _ = self.permits.acquire_many(all).await;
        self.permits.close();
    }
}

/// Messages a replica actor handles.
#[derive(Debug)]
pub enum ReplicaMsg {
    /// The record is gone: drain, remove the container, stop.
    Retire,
}

pub struct ReplicaActor;

pub struct Args {
    pub record: Replica,
    pub spec: Arc<FunctionSpec>,
    pub host: FunctionHost,
    /// The span the actor runs in.
    pub span: tracing::Span,
}

pub struct State {
    core: Arc<ReplicaCore>,
    host: FunctionHost,
    /// The span the actor runs in.
    span: tracing::Span,
}

/// The container of a replica: the function's image, env (and `FLOTILLA_CODE` when it has
/// code) and limits, a keepalive PID 1, and its leased GPUs (see `crate::gpu`).
fn container_spec(record: &Replica, spec: &FunctionSpec, host: &FunctionHost) -> ContainerSpec {
    let mut env: Vec<(String, String)> = spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if spec.code.is_some() {
        env.push(("FLOTILLA_CODE".into(), CODE_DIR.into()));
    }
    let node_gpus = host.cluster.view.read(|c| c.nodes.get(&record.node).map(|n| n.gpus.clone()));
    let (gpu_env, devices) = crate::gpu::hand_out(&node_gpus.unwrap_or_default(), &record.gpus);
    env.extend(gpu_env);
    ContainerSpec {
        name: Some(container_name(&record.id)),
        image: spec.image.clone(),
        cmd: None,
        env,
        workdir: None,
        limits: Limits { cpu: spec.cpu, memory_mib: spec.memory_mib, pids: PIDS_LIMIT },
        block_network: false,
        runtime: None,
        labels: BTreeMap::from([
            (LABEL_REPLICA.to_string(), record.id.clone()),
            (LABEL_INSTANCE.to_string(), host.instance.clone()),
        ]),
        gpu_devices: devices,
        disk_mib: None,
        writable_rootfs: spec.writable_rootfs,
    }
}

async fn create(docker: &Docker, spec: &ContainerSpec) -> Result<String, RuntimeError> {
    let id = match docker.create(spec).await {
        Err(RuntimeError::Conflict(_)) => {
            let name = spec.name.clone().unwrap_or_default();
            docker.remove(&name).await?;
            docker.create(spec).await?
        }
        other => other?,
    };
    if let Err(e) = docker.start(&id).await {
        let _ = docker.remove(&id).await;
        // The engine's start errors name the container by id; the reason names the replica.
        let name = spec.name.as_deref().map_or_else(|| "the replica".to_string(), |n| format!("replica container {n}"));
        return Err(e.naming(&id, &name));
    }
    Ok(id)
}

impl Actor for ReplicaActor {
    type Msg = ReplicaMsg;
    type State = Option<State>;
    type Arguments = Args;

    async fn pre_start(&self, myself: ActorRef<ReplicaMsg>, args: Args) -> Result<Option<State>, ActorProcessingErr> {
        let span = args.span.clone();
        Ok(start(myself, args).instrument(span).await)
    }

    async fn handle(
        &self,
        myself: ActorRef<ReplicaMsg>,
        msg: ReplicaMsg,
        state: &mut Option<State>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(span) = state.as_ref().map(|s| s.span.clone()) else {
            myself.stop(None);
            return Ok(());
        };
        match msg {
            ReplicaMsg::Retire => retire(state).instrument(span).await,
        }
        myself.stop(None);
        Ok(())
    }
}

/// Creates the container (with the function's code, and the worker process): the actor's
/// state, `None` if it failed (reported with the reason).
async fn start(myself: ActorRef<ReplicaMsg>, args: Args) -> Option<State> {
    let Args { record, spec, host, span } = args;
    match prepare(&record, spec, &host).await {
        Ok(core) => {
            host.replicas.lock().expect("replicas lock").insert(record.id.clone(), core.clone());
            report(&host, Command::ReplicaReady { id: record.id.clone(), at_ms: 0 });
            tracing::info!("replica ready");
            Some(State { core, host, span })
        }
        Err(reason) => {
            tracing::warn!(%reason, "replica failed");
            report(&host, Command::ReplicaFailed { id: record.id.clone(), reason, at_ms: 0 });
            myself.stop(None);
            None
        }
    }
}

/// The replica's container, running and ready for inputs; on failure nothing is left behind.
async fn prepare(record: &Replica, spec: Arc<FunctionSpec>, host: &FunctionHost) -> Result<Arc<ReplicaCore>, String> {
    let node = host.cluster.id;
    let container = create(&host.docker, &container_spec(record, &spec, host)).await.map_err(|e| match e {
        RuntimeError::ImageNotFound(image) => format!(
            "image {image} not found on node {node} (build it with `flotilla image build-base` or `flotilla image import`)"
        ),
        other => format!("could not start a replica on node {node}: {other}"),
    })?;
    let core = Arc::new(ReplicaCore {
        id: record.id.clone(),
        app: record.app.clone(),
        function: record.function.clone(),
        version: record.version,
        permits: Arc::new(Semaphore::new(spec.concurrency as usize)),
        spec,
        container,
        docker: host.docker.clone(),
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        running: AtomicU32::new(0),
        worker: Default::default(),
        metrics: host.cluster.metrics.clone(),
        output: Sink::new(host.output.clone(), record.app.clone(), record.function.clone(), record.id.clone()),
    });
    let ready = async {
        if let Some(code) = &core.spec.code {
            let tar = crate::blobs::code::bytes(&host.cluster, &host.blobs, code).await?;
            host.docker
                .unpack(&core.container, CODE_DIR, tar)
                .await
                .map_err(|e| format!("could not unpack the function's code on node {node}: {e}"))?;
        }
        if core.spec.mode == Mode::Worker {
            core.worker().await?;
        }
        Ok(())
    };
    if let Err(reason) = ready.await {
        let _ = host.docker.remove(&core.container).await;
        return Err(reason);
    }
    core.ready.store(true, Ordering::SeqCst);
    Ok(core)
}

/// Drains the replica, removes its container and forgets it.
async fn retire(state: &mut Option<State>) {
    let Some(s) = state.take() else { return };
    s.core.drain().await;
    if let Some(w) = s.core.worker.lock().await.take() {
        let _ = s.core.docker.kill_exec(w.exec_id()).await;
    }
    if let Err(e) = s.host.docker.remove(&s.core.container).await {
        tracing::warn!(error = %e, "could not remove replica container");
    }
    s.host.replicas.lock().expect("replicas lock").remove(&s.core.id);
    tracing::info!("replica retired");
}

/// Commits a replica's state change, retrying while there is no leader; a stale answer
/// (the record is gone) ends it.
fn report(host: &FunctionHost, cmd: Command) {
    let cluster = host.cluster.clone();
    tokio::spawn(async move {
        match cluster.write_retrying(cmd.clone(), REPORT_FOR).await {
            Ok(_) | Err(crate::error::NodeError::Rejected(_)) => {}
            Err(e) => tracing::error!(error = %e, ?cmd, "could not report replica state; giving up"),
        }
    });
}

/// Starts the actor for `record`; it registers its core with the host once ready. Its span
/// is a child of the current one.
pub async fn spawn(host: &FunctionHost, record: Replica, spec: Arc<FunctionSpec>) -> Option<ActorRef<ReplicaMsg>> {
    let id = record.id.clone();
    let span = tracing::info_span!("replica", id = %record.id, app = %record.app, function = %record.function);
    match Actor::spawn(None, ReplicaActor, Args { record, spec, host: host.clone(), span }).await {
        Ok((actor, _)) => Some(actor),
        Err(e) => {
            tracing::error!(replica = %id, error = %e, "could not spawn replica actor");
            None
        }
    }
}
