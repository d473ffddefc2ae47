//! The Worker service: the data plane. Exec and file transfer run on the node that hosts
//! the sandbox; any other node proxies the stream there unchanged, so a client can use any
//! endpoint. Nothing here goes through Raft.

use std::pin::Pin;
use std::time::Duration;

use flotilla_proto::worker::worker_client::WorkerClient;
use flotilla_proto::worker::worker_server::Worker;
use flotilla_proto::worker::{
    exec_input, snapshot_progress, ArchiveChunk, ExecInput, ExecOutput, GetArchiveRequest, Image, InvokeReply,
    InvokeRequest, ListImagesReply, ListImagesRequest, NodeInfoReply, NodeInfoRequest, PutArchiveReply, SnapshotDone,
    SnapshotProgress, SnapshotRequest, SnapshotStep,
};
use flotilla_raft::{Sandbox, SandboxState};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::error::NodeError;
use crate::function::{router, FunctionHost};
use crate::resources::Resources;
use crate::sandbox::{exec, snapshot, validate, SandboxHost};

/// How long an exec or copy waits for a just-created sandbox to start running.
const WAIT_RUNNING: Duration = Duration::from_secs(60);
/// Largest archive accepted by `PutArchive`, bytes.
pub const MAX_PUT_BYTES: usize = 1 << 30;
/// Bounded buffer of output messages per exec stream; a slow client slows the exec down.
const STREAM_BUFFER: usize = 64;
/// Chunk size of archives sent back.
const CHUNK: usize = 1 << 20;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Where a sandbox's data plane is served.
enum Route {
    /// Hosted here; the sandbox's environment and working directory, which execs inherit.
    Local {
        container: String,
        env: std::collections::BTreeMap<String, String>,
        workdir: Option<String>,
    },
    Remote {
        addr: String,
    },
}

pub struct WorkerService {
    pub host: SandboxHost,
    pub functions: FunctionHost,
    pub resources: Resources,
}

impl WorkerService {
    pub fn new(host: SandboxHost, functions: FunctionHost, resources: Resources) -> Self {
        Self { host, functions, resources }
    }

    /// A Worker client for the node at `addr`, on the channel the node already keeps to it.
    fn worker(&self, addr: &str) -> Result<WorkerClient<Channel>, Status> {
        let channel = self.host.cluster.peers.channel(addr).map_err(|e| Status::internal(e.to_string()))?;
        Ok(WorkerClient::new(channel).max_decoding_message_size(64 << 20))
    }

    fn record(&self, id: &str) -> Option<Sandbox> {
        self.host.cluster.view.read(|c| c.sandboxes.get(id).cloned())
    }

    /// Finds where `id` runs, waiting for a pending sandbox to start.
    async fn route(&self, id: &str) -> Result<Route, Status> {
        if self.record(id).is_none() {
            self.host.cluster.linearizable().await?;
        }
        let deadline = tokio::time::Instant::now() + WAIT_RUNNING;
        loop {
            let sb = self.record(id).ok_or_else(|| Status::not_found(format!("sandbox {id:?} not found")))?;
            match sb.state {
                SandboxState::Running | SandboxState::Snapshotting if sb.node == self.host.cluster.id => {
                    if self.host.is_fenced() {
                        return Err(Status::unavailable(format!(
                            "node {} is fenced (it has lost the leader or a quorum); sandbox {id} is not served here",
                            sb.node
                        )));
                    }
                    let container =
                        sb.container_id.ok_or_else(|| Status::internal("running sandbox without a container"))?;
                    return Ok(Route::Local { container, env: sb.spec.env, workdir: sb.spec.workdir });
                }
                SandboxState::Running
                | SandboxState::Pending
                | SandboxState::Snapshotting
                | SandboxState::Restoring
                    if sb.node != self.host.cluster.id =>
                {
                    return Ok(Route::Remote { addr: member_addr(&self.host.cluster, id, sb.node)? });
                }
                SandboxState::Terminated | SandboxState::Failed => {
                    return Err(Status::failed_precondition(format!(
                        "sandbox {id} is {} (exit {}: {})",
                        sb.state.as_str(),
                        sb.exit_code.map_or("none".into(), |c| c.to_string()),
                        sb.reason.unwrap_or_default()
                    )));
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(Status::unavailable(format!("sandbox {id} did not start within {WAIT_RUNNING:?}")));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// A failed copy in or out of a sandbox (`what` names it by sandbox id and path, never by
/// the engine's container id) as the status a client sees.
fn copy_status(what: &str, e: crate::runtime::RuntimeError) -> Status {
    use crate::runtime::RuntimeError as E;
    match e {
        E::NotFound(why) => Status::not_found(format!("{what}: {why}")),
        E::InvalidSpec(why) => Status::invalid_argument(format!("data: {what}: {why}")),
        E::Engine(why) => Status::failed_precondition(format!("{what}: {why}")),
        other => Status::unavailable(format!("{what}: {other}")),
    }
}

/// The address of node `node`, which hosts sandbox `sandbox`; unavailable when it is no
/// longer a member.
pub(super) fn member_addr(cluster: &crate::cluster::Cluster, sandbox: &str, node: u64) -> Result<String, Status> {
    cluster
        .group()
        .addrs
        .get(&node)
        .cloned()
        .ok_or_else(|| Status::unavailable(format!("sandbox {sandbox} is on node {node}, which is not a member")))
}

/// A proxied request, carrying the caller's token and request id on to the hosting node.
pub(super) fn onward<T>(
    message: T,
    token: &Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(t) = token {
        req.metadata_mut().insert(crate::auth::AUTHORIZATION, t.clone());
    }
    crate::request_id::propagate(&mut req);
    req
}

pub(super) fn token_of<T>(req: &Request<T>) -> Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    req.metadata().get(crate::auth::AUTHORIZATION).cloned()
}

/// The rest of a client stream as plain messages, ending at the first error.
pub(super) fn forward<T: Send + 'static>(first: T, rest: Streaming<T>) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::once(async move { first })
        .chain(rest.take_while(|r| futures::future::ready(r.is_ok())).filter_map(|r| async move { r.ok() }))
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn node_info(&self, _: Request<NodeInfoRequest>) -> Result<Response<NodeInfoReply>, Status> {
        Ok(Response::new(NodeInfoReply {
            node_id: self.host.cluster.id,
            addr: self.host.cluster.addr.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            cpus: self.resources.cpus,
            memory_mib: self.resources.memory_mib,
        }))
    }

    type ExecStream = BoxStream<ExecOutput>;

    async fn exec(&self, req: Request<Streaming<ExecInput>>) -> Result<Response<Self::ExecStream>, Status> {
        let token = token_of(&req);
        let mut input = req.into_inner();
        let first = input.message().await?.ok_or_else(|| Status::invalid_argument("start: the stream was empty"))?;
        let Some(exec_input::Input::Start(start)) = &first.input else {
            return Err(NodeError::invalid("start", "the first message must be `start`").into());
        };
        let request = validate::exec(start)?;
        match self.route(&request.sandbox_id).await? {
            Route::Remote { addr } => {
                let out = self.worker(&addr)?.exec(onward(forward(first, input), &token)).await?.into_inner();
                Ok(Response::new(Box::pin(out)))
            }
            Route::Local { container, env, workdir } => {
                let mut request = request;
                // The exec's own settings win over the sandbox's.
                let mut merged = env;
                merged.extend(request.env.drain(..));
                request.env = merged.into_iter().collect();
                request.workdir = request.workdir.or(workdir);
                let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
                tokio::spawn(exec::run(self.host.clone(), container, request, input, tx));
                Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
            }
        }
    }

    async fn put_archive(&self, req: Request<Streaming<ArchiveChunk>>) -> Result<Response<PutArchiveReply>, Status> {
        let token = token_of(&req);
        let mut input = req.into_inner();
        let first =
            input.message().await?.ok_or_else(|| Status::invalid_argument("sandbox_id: the stream was empty"))?;
        if first.sandbox_id.is_empty() {
            return Err(NodeError::invalid("sandbox_id", "is required on the first chunk").into());
        }
        if !first.path.starts_with('/') {
            return Err(NodeError::invalid(
                "path",
                format!("{:?} must be an absolute folder in the sandbox", first.path),
            )
            .into());
        }
        match self.route(&first.sandbox_id).await? {
            Route::Remote { addr } => Ok(Response::new(
                self.worker(&addr)?.put_archive(onward(forward(first, input), &token)).await?.into_inner(),
            )),
            Route::Local { container, .. } => {
                let (dir, mut data) = (first.path.clone(), first.data);
                while let Some(chunk) = input.message().await? {
                    data.extend_from_slice(&chunk.data);
                    if data.len() > MAX_PUT_BYTES {
                        return Err(Status::invalid_argument(format!(
                            "data: the archive is larger than {MAX_PUT_BYTES} bytes"
                        )));
                    }
                }
                let bytes = data.len() as u64;
                self.host.docker.tar_in(&container, &dir, data).await.map_err(|e| {
                    let e = e.naming(&container, &format!("sandbox {}", first.sandbox_id));
                    copy_status(&format!("copy into {}:{dir}", first.sandbox_id), e)
                })?;
                Ok(Response::new(PutArchiveReply { bytes }))
            }
        }
    }

    type GetArchiveStream = BoxStream<ArchiveChunk>;

    async fn get_archive(&self, req: Request<GetArchiveRequest>) -> Result<Response<Self::GetArchiveStream>, Status> {
        let token = token_of(&req);
        let req = req.into_inner();
        if !req.path.starts_with('/') {
            return Err(
                NodeError::invalid("path", format!("{:?} must be an absolute path in the sandbox", req.path)).into()
            );
        }
        match self.route(&req.sandbox_id).await? {
            Route::Remote { addr } => {
                Ok(Response::new(Box::pin(self.worker(&addr)?.get_archive(onward(req, &token)).await?.into_inner())))
            }
            Route::Local { container, .. } => {
                let (id, path) = (req.sandbox_id.clone(), req.path.clone());
                let engine_id = container.clone();
                let stream = self.host.docker.tar_out(&container, &req.path).flat_map(move |r| {
                    let chunks: Vec<Result<ArchiveChunk, Status>> = match r {
                        Ok(bytes) => bytes
                            .chunks(CHUNK)
                            .map(|c| {
                                Ok(ArchiveChunk { sandbox_id: String::new(), path: String::new(), data: c.to_vec() })
                            })
                            .collect(),
                        Err(e) => {
                            let e = e.naming(&engine_id, &format!("sandbox {id}"));
                            vec![Err(copy_status(&format!("copy from {id}:{path}"), e))]
                        }
                    };
                    futures::stream::iter(chunks)
                });
                Ok(Response::new(Box::pin(stream)))
            }
        }
    }

    async fn list_images(&self, _: Request<ListImagesRequest>) -> Result<Response<ListImagesReply>, Status> {
        let images = self.host.docker.list_images().await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ListImagesReply {
            images: images
                .into_iter()
                .map(|i| Image { name: i.name, id: i.id, size_bytes: i.size_bytes, created_unix: i.created_unix })
                .collect(),
        }))
    }

    async fn invoke(&self, req: Request<InvokeRequest>) -> Result<Response<InvokeReply>, Status> {
        let req = req.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.deadline_ms);
        let result = router::invoke_here(&self.functions, &req.app, &req.function, req.input, deadline)
            .await
            .ok_or_else(|| Status::unavailable(format!("no replica of {}/{} on this node", req.app, req.function)))?;
        Ok(Response::new(match result {
            Ok(output) => InvokeReply { ok: true, output, error: String::new() },
            Err(error) => InvokeReply { ok: false, output: vec![], error },
        }))
    }

    type SnapshotStream = BoxStream<SnapshotProgress>;

    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let token = token_of(&req);
        let req = req.into_inner();
        let (kind, path) = validate::snapshot(&req)?;
        match self.route(&req.sandbox_id).await? {
            Route::Remote { addr } => {
                Ok(Response::new(Box::pin(self.worker(&addr)?.snapshot(onward(req, &token)).await?.into_inner())))
            }
            Route::Local { .. } => {
                let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
                let (steps_tx, mut steps) = tokio::sync::mpsc::channel::<snapshot::Step>(STREAM_BUFFER);
                let host = self.host.clone();
                let out = tx.clone();
                tokio::spawn(async move {
                    while let Some(s) = steps.recv().await {
                        let step =
                            SnapshotStep { phase: s.phase, done_bytes: s.done_bytes, total_bytes: s.total_bytes };
                        let msg = SnapshotProgress { progress: Some(snapshot_progress::Progress::Step(step)) };
                        let _ = out.try_send(Ok(msg));
                    }
                });
                // The snapshot runs to its end even if the client leaves: the catalog must
                // not keep a pending record behind.
                tokio::spawn(async move {
                    let result = snapshot::take(&host, &req.sandbox_id, kind, path, steps_tx).await;
                    let msg = result.map_err(Status::from).map(|t| SnapshotProgress {
                        progress: Some(snapshot_progress::Progress::Done(SnapshotDone {
                            id: t.id,
                            size_bytes: t.size_bytes,
                            sha256: t.sha256,
                            replicas: t.replicas,
                            store_s: t.store_s,
                            replicate_s: t.replicate_s,
                        })),
                    });
                    let _ = tx.send(msg).await;
                });
                Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
            }
        }
    }
}
