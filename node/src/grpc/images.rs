//! The Images service: pulls, builds, the cluster-wide list, removal and registry logins.
//!
//! Every node serves it. A call without `node` is fanned out by the receiving node to every
//! member (itself locally, the others with `node` set to their id, over the channel it keeps
//! to them, carrying the caller's token on); a call with `node` is run there. Progress from
//! all nodes comes back as one stream of [`ImageProgress`] tagged with the node, each node's
//! part ending in exactly one `done` or `error`: a node that cannot be reached is an `error`
//! for that node, not the end of the others' pulls. Likewise a list or a removal goes on
//! without a node that does not answer (or whose engine fails) and names it in its reply.

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use flotilla_proto::images::images_client::ImagesClient;
use flotilla_proto::images::images_server::Images;
use flotilla_proto::images::{
    build_input, image_progress, BuildInput, ClusterImage, ImageDone, ImageProgress, ListImagesReply,
    ListImagesRequest, LoginReply, LoginRequest, PullRequest, RemoveImageReply, RemoveImageRequest,
};
use flotilla_raft::{Command, NodeId, Password};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use super::worker::{forward, onward, token_of};
use crate::cluster::Cluster;
use crate::error::NodeError;
use crate::runtime::{Docker, RuntimeError};

/// Largest build context accepted, bytes.
pub const MAX_CONTEXT_BYTES: u64 = 1 << 30;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ImagesService {
    pub cluster: Cluster,
    pub docker: Docker,
}

fn event(node: NodeId, e: image_progress::Event) -> Result<ImageProgress, Status> {
    Ok(ImageProgress { node, event: Some(e) })
}

/// Runs `work` (which reports lines through the sender it is given) in a task of its own and
/// streams its lines, then its `done` or `error`, as this node's progress.
fn local_stream<F, Fut>(node: NodeId, image: String, work: F) -> BoxStream<ImageProgress>
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<String>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<String, RuntimeError>> + Send + 'static,
{
    let (lines_tx, lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let result = tokio::spawn(work(lines_tx));
    let end = futures::stream::once(async move {
        let last = match result.await {
            Ok(Ok(id)) => image_progress::Event::Done(ImageDone { image, id }),
            Ok(Err(e)) => image_progress::Event::Error(e.to_string()),
            Err(e) => image_progress::Event::Error(format!("the task failed: {e}")),
        };
        event(node, last)
    });
    let lines = UnboundedReceiverStream::new(lines_rx).map(move |l| event(node, image_progress::Event::Line(l)));
    Box::pin(lines.chain(end))
}

/// `reference`/`tag` checks the engine would otherwise answer with a vaguer message.
fn check_name(field: &str, name: &str) -> Result<(), Status> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NodeError::invalid(
            field,
            format!("{name:?} is not an image reference such as host:5000/team/app:1"),
        )
        .into());
    }
    Ok(())
}

impl ImagesService {
    fn client(&self, addr: &str) -> Result<ImagesClient<Channel>, Status> {
        let channel = self.cluster.peers.channel(addr).map_err(|e| Status::internal(e.to_string()))?;
        Ok(ImagesClient::new(channel).max_decoding_message_size(64 << 20))
    }

    /// The members a call is for: `node` only (NOT_FOUND if it is not a member), or all.
    fn targets(&self, node: Option<NodeId>) -> Result<BTreeMap<NodeId, String>, Status> {
        let members = self.cluster.group().addrs;
        match node {
            None => Ok(members),
            Some(id) => members
                .get(&id)
                .map(|addr| BTreeMap::from([(id, addr.clone())]))
                .ok_or_else(|| Status::not_found(format!("node: {id} is not a member of the cluster"))),
        }
    }

    /// The progress of `call` on node `id` at `addr`; a failure to reach it is its `error`.
    async fn remote<Fut>(id: NodeId, call: Fut) -> BoxStream<ImageProgress>
    where
        Fut: std::future::Future<Output = Result<Response<Streaming<ImageProgress>>, Status>> + Send,
    {
        match call.await {
            Ok(resp) => Box::pin(resp.into_inner().map(move |r| {
                r.or_else(|s| event(id, image_progress::Event::Error(format!("node {id}: {}", s.message()))))
            })),
            Err(s) => Box::pin(futures::stream::once(async move {
                event(id, image_progress::Event::Error(format!("node {id} did not answer: {}", s.message())))
            })),
        }
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    type PullStream = BoxStream<ImageProgress>;

    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let token = token_of(&req);
        let req = req.into_inner();
        check_name("reference", &req.reference)?;
        let mut parts = Vec::new();
        for (id, addr) in self.targets(req.node)? {
            if id == self.cluster.id {
                let (docker, reference) = (self.docker.clone(), req.reference.clone());
                parts.push(local_stream(id, req.reference.clone(), move |tx| async move {
                    docker.pull(&reference, |line| drop(tx.send(line.to_string()))).await
                }));
            } else {
                let mut client = self.client(&addr)?;
                let onward_req = onward(PullRequest { reference: req.reference.clone(), node: Some(id) }, &token);
                parts.push(Self::remote(id, async move { client.pull(onward_req).await }).await);
            }
        }
        Ok(Response::new(Box::pin(futures::stream::select_all(parts))))
    }

    type BuildStream = BoxStream<ImageProgress>;

    async fn build(&self, req: Request<Streaming<BuildInput>>) -> Result<Response<Self::BuildStream>, Status> {
        let token = token_of(&req);
        let mut input = req.into_inner();
        let first = input.message().await?.ok_or_else(|| Status::invalid_argument("start: the stream was empty"))?;
        let Some(build_input::Input::Start(start)) = &first.input else {
            return Err(NodeError::invalid("start", "the first message must be `start`").into());
        };
        check_name("tag", &start.tag)?;
        let dockerfile = if start.dockerfile.is_empty() { "Dockerfile".to_string() } else { start.dockerfile.clone() };
        if dockerfile.starts_with('/') || dockerfile.split('/').any(|p| p == "..") {
            return Err(
                NodeError::invalid("dockerfile", format!("{dockerfile:?} must be a path inside the context")).into()
            );
        }
        if let Some(node) = start.node.filter(|n| *n != self.cluster.id) {
            let addr = self.targets(Some(node))?.remove(&node).unwrap_or_default();
            let mut client = self.client(&addr)?;
            return Ok(Response::new(Box::pin(
                client.build(onward(forward(first, input), &token)).await?.into_inner(),
            )));
        }
        let mut sent = 0u64;
        let context = input.map(move |m| match m {
            Ok(BuildInput { input: Some(build_input::Input::Context(data)) }) => {
                sent += data.len() as u64;
                if sent > MAX_CONTEXT_BYTES {
                    return Err(std::io::Error::other(format!("context: larger than {} MiB", MAX_CONTEXT_BYTES >> 20)));
                }
                Ok(Bytes::from(data))
            }
            Ok(_) => Err(std::io::Error::other("only `context` may follow `start`")),
            Err(s) => Err(std::io::Error::other(format!("the context stream broke: {}", s.message()))),
        });
        let (docker, tag) = (self.docker.clone(), start.tag.clone());
        Ok(Response::new(local_stream(self.cluster.id, start.tag.clone(), move |tx| async move {
            docker.build(&tag, &dockerfile, context, |line| drop(tx.send(line.to_string()))).await
        })))
    }

    async fn list(&self, req: Request<ListImagesRequest>) -> Result<Response<ListImagesReply>, Status> {
        let token = token_of(&req);
        let mut merged: BTreeMap<String, ClusterImage> = BTreeMap::new();
        let mut unreachable = Vec::new();
        for (id, addr) in self.targets(req.into_inner().node)? {
            let images = if id == self.cluster.id {
                match self.docker.list_images().await {
                    Ok(local) => local
                        .into_iter()
                        .map(|i| ClusterImage { name: i.name, id: i.id, size_bytes: i.size_bytes, nodes: vec![id] })
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "image list: this node's engine did not answer");
                        unreachable.push(id);
                        continue;
                    }
                }
            } else {
                match self.client(&addr)?.list(onward(ListImagesRequest { node: Some(id) }, &token)).await {
                    Ok(reply) => reply.into_inner().images,
                    Err(e) => {
                        tracing::debug!(node = id, error = %e, "image list: node did not answer");
                        unreachable.push(id);
                        continue;
                    }
                }
            };
            for image in images {
                merged.entry(image.name.clone()).or_insert(ClusterImage { nodes: vec![], ..image }).nodes.push(id);
            }
        }
        Ok(Response::new(ListImagesReply { images: merged.into_values().collect(), unreachable }))
    }

    async fn remove(&self, req: Request<RemoveImageRequest>) -> Result<Response<RemoveImageReply>, Status> {
        let token = token_of(&req);
        let req = req.into_inner();
        check_name("name", &req.name)?;
        let mut reply = RemoveImageReply::default();
        for (id, addr) in self.targets(req.node)? {
            if id == self.cluster.id {
                match self.docker.remove_image(&req.name).await {
                    Ok(true) => reply.removed.push(id),
                    Ok(false) => reply.absent.push(id),
                    Err(RuntimeError::Conflict(m)) => {
                        return Err(Status::failed_precondition(format!("image {} on node {id}: {m}", req.name)))
                    }
                    Err(e) if req.node.is_some() => return Err(Status::unavailable(format!("node {id}: {e}"))),
                    Err(e) => {
                        tracing::warn!(error = %e, "image rm: this node's engine failed");
                        reply.unreachable.push(id);
                    }
                }
            } else {
                let one = RemoveImageRequest { name: req.name.clone(), node: Some(id) };
                match self.client(&addr)?.remove(onward(one, &token)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        reply.removed.extend(r.removed);
                        reply.absent.extend(r.absent);
                    }
                    // The image is in use there: nothing to retry, say so.
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => return Err(s),
                    Err(s) => {
                        tracing::debug!(node = id, error = %s, "image rm: node did not answer");
                        reply.unreachable.push(id);
                    }
                }
            }
        }
        if req.node.is_none() && reply.removed.is_empty() && reply.unreachable.is_empty() {
            return Err(Status::not_found(format!("image {:?} is on no node", req.name)));
        }
        Ok(Response::new(reply))
    }

    async fn login(&self, req: Request<LoginRequest>) -> Result<Response<LoginReply>, Status> {
        let LoginRequest { registry, username, password } = req.into_inner();
        if registry.is_empty() || registry.contains('/') || registry.chars().any(char::is_whitespace) {
            return Err(NodeError::invalid(
                "registry",
                format!("{registry:?} must be host[:port], e.g. 127.0.0.1:5000"),
            )
            .into());
        }
        if username.is_empty() {
            return Err(NodeError::invalid("username", "is required").into());
        }
        if password.is_empty() {
            return Err(NodeError::invalid("password", "is required").into());
        }
        let cmd = Command::RegistryLogin {
            registry: registry.clone(),
            username: username.clone(),
            password: Password(password),
            at_ms: 0,
        };
        self.cluster.write(cmd).await?;
        tracing::info!(%registry, %username, "registry login stored");
        Ok(Response::new(LoginReply { registry, username }))
    }
}
