//! The Observe service: cluster events and container logs.
//!
//! **Events** are read from this node's applied catalog (a follower may trail the leader by
//! the entries in flight). `FollowEvents` sends what matches, then looks for newer events
//! every [`FOLLOW_POLL`]; it ends as soon as the client goes away (the send side sees the
//! stream closed), so an abandoned follow costs the node nothing.
//!
//! **Sandbox logs** are the engine's logs of the sandbox's current container on the node that
//! runs it, after the lines kept of its removed containers (earlier generations, and an ended
//! sandbox's last; see [`crate::sandbox::kept_logs`]), which the node asked gathers from every
//! member (`kept_only`). The current container's lines come from the node that runs it: any
//! other node proxies the stream there once (`proxied` marks the onward request), with the
//! caller's token, like exec (see [`super::worker`]). A follow stops on the node at once when
//! the client goes away: the task pumping the engine's stream selects on the client's channel
//! closing and drops the engine request.
//!
//! **Function logs** are what function processes wrote to stderr, kept in memory per node
//! ([`crate::function::output`]), each line with the calls it belongs to (`call_id` selects
//! one call's). The node asked answers with its own lines and those of every other member
//! (asked with `local_only`); a node that does not answer is left out. A listing
//! is sorted by time; a follow interleaves the nodes' streams as lines come.

use std::pin::Pin;
use std::time::Duration;

use flotilla_proto::observe::observe_client::ObserveClient;
use flotilla_proto::observe::observe_server::Observe;
use flotilla_proto::observe::{
    Event as PbEvent, FunctionLogsRequest, ListEventsReply, ListEventsRequest, LogLine as PbLogLine, SandboxLogsRequest,
};
use flotilla_raft::{Event, EventKind, Rejection, Sandbox, SandboxState};
use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::worker::{member_addr, onward, token_of};
use crate::error::NodeError;
use crate::function::output::Line;
use crate::function::FunctionHost;
use crate::runtime::{LogLine, RuntimeError};
use crate::sandbox::{container_name, SandboxHost};

/// How often a follow looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Lines buffered per log stream; a slow client slows the reading down.
const STREAM_BUFFER: usize = 256;
/// How long a log request waits for a just-created sandbox's container.
const WAIT_CONTAINER: Duration = Duration::from_secs(30);
/// How long the node gathering logs waits for each other member (to open its stream; kept
/// sandbox logs: to send them all). A member that takes longer is left out.
const PEER_WAIT: Duration = Duration::from_secs(3);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ObserveService {
    pub host: SandboxHost,
    pub functions: FunctionHost,
}

/// A validated event filter.
struct Filter {
    since_ms: Option<i64>,
    kinds: Vec<EventKind>,
    subject: Option<String>,
}

impl Filter {
    fn parse(req: &ListEventsRequest) -> Result<Self, Status> {
        let kinds = req
            .kinds
            .iter()
            .map(|k| {
                EventKind::parse(k).ok_or_else(|| {
                    let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    Status::invalid_argument(format!("kinds: unknown kind {k:?} (one of {})", all.join(", ")))
                })
            })
            .collect::<Result<_, _>>()?;
        let subject = req.subject.clone().filter(|s| !s.is_empty());
        Ok(Self { since_ms: req.since_ms, kinds, subject })
    }

    fn matches(&self, e: &Event) -> bool {
        self.since_ms.is_none_or(|s| e.at_ms >= s)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.subject.as_ref().is_none_or(|s| e.subject == *s || e.subject.starts_with(&format!("{s}/")))
    }
}

fn to_pb(e: &Event) -> PbEvent {
    PbEvent {
        seq: e.seq,
        at_ms: e.at_ms,
        kind: e.kind.as_str().to_string(),
        subject: e.subject.clone(),
        message: e.message.clone(),
        node: e.node,
        repeats: e.repeats,
    }
}

impl ObserveService {
    /// Matching events after `after` (all kept when `None`), the newest `limit` (0 = all).
    fn events(&self, filter: &Filter, after: Option<u64>, limit: u32) -> Vec<PbEvent> {
        let mut found: Vec<PbEvent> =
            self.host.cluster.view.read(|c| c.events.after(after).filter(|e| filter.matches(e)).map(to_pb).collect());
        if limit > 0 && found.len() > limit as usize {
            found.drain(..found.len() - limit as usize);
        }
        found
    }

    fn record(&self, id: &str) -> Option<Sandbox> {
        self.host.cluster.view.read(|c| c.sandboxes.get(id).cloned())
    }

    /// The sandbox's record once it has a container (or is final), NotFound if unknown.
    async fn settled(&self, id: &str) -> Result<Sandbox, Status> {
        if self.record(id).is_none() {
            self.host.cluster.linearizable().await?;
        }
        let deadline = tokio::time::Instant::now() + WAIT_CONTAINER;
        loop {
            let sb = self.record(id).ok_or_else(|| Status::not_found(format!("sandbox {id:?} not found")))?;
            let waiting = matches!(sb.state, SandboxState::Pending | SandboxState::Restoring);
            if !waiting || tokio::time::Instant::now() >= deadline {
                return Ok(sb);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends the engine's lines for `container` to `tx` until they end, an error, or the client
/// goes away.
async fn pump(
    mut lines: impl Stream<Item = Result<LogLine, RuntimeError>> + Unpin,
    tx: mpsc::Sender<Result<PbLogLine, Status>>,
    source: String,
    node: u64,
    sandbox: String,
    generation: u64,
) {
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return,
            next = lines.next() => next,
        };
        let msg = match next {
            None => return,
            Some(Ok(l)) => Ok(PbLogLine {
                time: l.time,
                stream: l.stream.as_str().to_string(),
                text: l.text,
                source: source.clone(),
                node,
                call_ids: vec![],
                generation,
            }),
            Some(Err(RuntimeError::NotFound(_))) => Err(Status::not_found(format!(
                "the logs of sandbox {sandbox} are no longer kept: its container was removed"
            ))),
            Some(Err(e)) => Err(Status::internal(format!("reading the logs of sandbox {sandbox}: {e}"))),
        };
        let end = msg.is_err();
        if tx.send(msg).await.is_err() || end {
            return;
        }
    }
}

/// This node's kept lines of sandbox `id`'s removed containers, oldest generation first.
fn kept_lines(host: &SandboxHost, id: &str) -> Vec<PbLogLine> {
    let node = host.cluster.id;
    let mut out = Vec::new();
    for g in host.kept_logs.read(id) {
        let source = container_name(id, g.generation);
        out.extend(g.lines.into_iter().map(|l| PbLogLine {
            time: l.time,
            stream: l.stream.as_str().to_string(),
            text: l.text,
            source: source.clone(),
            node,
            call_ids: vec![],
            generation: g.generation,
        }));
    }
    out
}

/// Sends `req` (with the caller's token and request id) to every other member at once with
/// `open`, and returns the streams of those that opened one within [`PEER_WAIT`]. A member
/// that does not answer has nothing to show now; the others do.
async fn ask_peers<Req, F, Fut>(
    cluster: &crate::cluster::Cluster,
    token: &Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    req: Req,
    open: F,
) -> Vec<tonic::Streaming<PbLogLine>>
where
    Req: Clone,
    F: Fn(ObserveClient<tonic::transport::Channel>, Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<tonic::Streaming<PbLogLine>>, Status>>,
{
    let me = cluster.id;
    let asks = cluster.group().addrs.into_iter().filter(|(n, _)| *n != me).filter_map(|(node, addr)| {
        let channel = cluster.peers.channel(&addr).ok()?;
        let ask = open(ObserveClient::new(channel), onward(req.clone(), token));
        Some(async move {
            match tokio::time::timeout(PEER_WAIT, ask).await {
                Ok(Ok(s)) => Some(s.into_inner()),
                Ok(Err(e)) => {
                    tracing::debug!(node, error = %e, "logs: node skipped");
                    None
                }
                Err(_) => {
                    tracing::debug!(node, "logs: node skipped, no answer in time");
                    None
                }
            }
        })
    });
    futures::future::join_all(asks).await.into_iter().flatten().collect()
}

#[tonic::async_trait]
impl Observe for ObserveService {
    async fn list_events(&self, req: Request<ListEventsRequest>) -> Result<Response<ListEventsReply>, Status> {
        let req = req.into_inner();
        let filter = Filter::parse(&req)?;
        Ok(Response::new(ListEventsReply { events: self.events(&filter, req.after_seq, req.limit) }))
    }

    type FollowEventsStream = BoxStream<PbEvent>;

    async fn follow_events(
        &self,
        req: Request<ListEventsRequest>,
    ) -> Result<Response<Self::FollowEventsStream>, Status> {
        let req = req.into_inner();
        let filter = Filter::parse(&req)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let first = self.events(&filter, req.after_seq, req.limit);
        let view = self.host.cluster.view.clone();
        tokio::spawn(async move {
            let mut last = req.after_seq;
            let mut batch = first;
            loop {
                for e in batch {
                    last = Some(e.seq);
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                }
                batch = view.read(|c| c.events.after(last).filter(|e| filter.matches(e)).map(to_pb).collect());
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type SandboxLogsStream = BoxStream<PbLogLine>;

    async fn sandbox_logs(
        &self,
        req: Request<SandboxLogsRequest>,
    ) -> Result<Response<Self::SandboxLogsStream>, Status> {
        let token = token_of(&req);
        let req = req.into_inner();
        if req.id.is_empty() {
            return Err(Status::invalid_argument("id: a sandbox id is required"));
        }
        if req.kept_only {
            let kept = kept_lines(&self.host, &req.id).into_iter().map(Ok);
            return Ok(Response::new(Box::pin(futures::stream::iter(kept))));
        }
        let sb = self.settled(&req.id).await?;
        if req.proxied {
            return Ok(Response::new(self.current_here(&sb, &req)?));
        }
        let mut kept = self.kept_everywhere(&sb.id, &token).await;
        // An ended sandbox's last container may have been removed (its lines are then kept).
        let last_kept = sb.state.is_final() && kept.iter().any(|l| l.generation == sb.generation);
        let current = if last_kept {
            None
        } else {
            match self.current(&sb, &req, &token).await {
                Ok(s) => Some(s),
                Err(e) if e.code() == tonic::Code::NotFound && !kept.is_empty() => None,
                Err(e) => return Err(e),
            }
        };
        // `tail` counts the current container's lines when it has one, else the kept ones.
        if let Some(n) = req.tail {
            let keep = if current.is_some() { 0 } else { n as usize };
            kept.drain(..kept.len().saturating_sub(keep));
        }
        let had_kept = !kept.is_empty();
        let earlier = futures::stream::iter(kept.into_iter().map(Ok));
        let Some(current) = current else { return Ok(Response::new(Box::pin(earlier))) };
        // A container removed meanwhile: what was kept of it is the end of the story.
        let current = current.take_while(move |item| {
            let gone = matches!(item, Err(s) if s.code() == tonic::Code::NotFound) && had_kept;
            futures::future::ready(!gone)
        });
        Ok(Response::new(Box::pin(earlier.chain(current))))
    }

    type FunctionLogsStream = BoxStream<PbLogLine>;

    async fn function_logs(
        &self,
        req: Request<FunctionLogsRequest>,
    ) -> Result<Response<Self::FunctionLogsStream>, Status> {
        let token = token_of(&req);
        let req = req.into_inner();
        let cluster = &self.host.cluster;
        if cluster.view.read(|c| c.check_function(&req.app, &req.function)).is_err() {
            cluster.linearizable().await?;
        }
        cluster.view.read(|c| c.check_function(&req.app, &req.function)).map_err(NodeError::from)?;
        if let Some(call) = req.call_id.as_deref().filter(|_| !req.local_only) {
            self.check_call(call, &req.app, &req.function).await?;
        }
        let mut streams = vec![self.local_function_logs(&req)];
        if !req.local_only {
            let onward_req = FunctionLogsRequest { local_only: true, ..req.clone() };
            let peers = ask_peers(cluster, &token, onward_req, |mut c, r| async move { c.function_logs(r).await });
            streams.extend(peers.await.into_iter().map(|s| Box::pin(s) as BoxStream<PbLogLine>));
        }
        let merged = futures::stream::select_all(streams);
        if req.follow {
            return Ok(Response::new(Box::pin(merged)));
        }
        // A listing: every node's lines, in time order.
        // (Errors, a node's stream that broke, go after the lines: a total order, which
        // `sort_by` needs.)
        let mut all: Vec<Result<PbLogLine, Status>> = merged.collect().await;
        all.sort_by_key(|l| l.as_ref().map(|l| l.time.clone()).map_err(|_| ()));
        Ok(Response::new(Box::pin(futures::stream::iter(all))))
    }
}

impl ObserveService {
    /// The current container's lines of sandbox `sb`, from the node that runs it (this one, or
    /// proxied there once).
    async fn current(
        &self,
        sb: &Sandbox,
        req: &SandboxLogsRequest,
        token: &Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<BoxStream<PbLogLine>, Status> {
        if sb.node == self.host.cluster.id {
            return self.current_here(sb, req);
        }
        let addr = member_addr(&self.host.cluster, &sb.id, sb.node)?;
        let channel = self.host.cluster.peers.channel(&addr).map_err(|e| Status::internal(e.to_string()))?;
        let onward_req = onward(SandboxLogsRequest { proxied: true, ..req.clone() }, token);
        Ok(Box::pin(ObserveClient::new(channel).sandbox_logs(onward_req).await?.into_inner()))
    }

    /// The engine's log of `sb`'s current container on this node.
    fn current_here(&self, sb: &Sandbox, req: &SandboxLogsRequest) -> Result<BoxStream<PbLogLine>, Status> {
        let me = self.host.cluster.id;
        if sb.node != me {
            return Err(Status::unavailable(format!("sandbox {} moved to node {} meanwhile; retry", sb.id, sb.node)));
        }
        let container = sb.container_id.clone().unwrap_or_else(|| container_name(&sb.id, sb.generation));
        let lines = Box::pin(self.host.docker.logs(&container, req.follow, req.tail));
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let source = container_name(&sb.id, sb.generation);
        tokio::spawn(pump(lines, tx, source, me, sb.id.clone(), sb.generation));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// The kept lines of sandbox `id`'s removed containers on every member that answers
    /// within [`PEER_WAIT`] (the members asked and read at once), by generation, then time.
    async fn kept_everywhere(
        &self,
        id: &str,
        token: &Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Vec<PbLogLine> {
        let req = SandboxLogsRequest { id: id.to_string(), kept_only: true, ..Default::default() };
        let peers = ask_peers(&self.host.cluster, token, req, |mut c, r| async move { c.sandbox_logs(r).await });
        let mut all = kept_lines(&self.host, id);
        let reads = peers
            .await
            .into_iter()
            .map(|stream| tokio::time::timeout(PEER_WAIT, stream.filter_map(|l| async { l.ok() }).collect::<Vec<_>>()));
        for lines in futures::future::join_all(reads).await {
            all.extend(lines.unwrap_or_default());
        }
        all.sort_by(|a, b| (a.generation, &a.time).cmp(&(b.generation, &b.time)));
        all
    }

    /// `call_id`: a call of `app`/`function` (InvalidArgument if of another function), or one
    /// compacted away (its lines may still be kept); NotFound if it never existed.
    async fn check_call(&self, call: &str, app: &str, function: &str) -> Result<(), Status> {
        let cluster = &self.host.cluster;
        let known = |c: &flotilla_raft::Catalog| c.calls.get(call).map(|k| (k.app.clone(), k.function.clone()));
        if cluster.view.read(known).is_none() {
            cluster.linearizable().await?;
        }
        match cluster.view.read(known) {
            Some((a, f)) if a == app && f == function => Ok(()),
            Some((a, f)) => Err(Status::invalid_argument(format!(
                "call_id: call {call} is a call of {a}/{f}, not of {app}/{function}"
            ))),
            None if cluster.view.read(|c| c.call_expired(call)) => Ok(()),
            None => Err(NodeError::from(Rejection::CallNotFound(call.to_string())).into()),
        }
    }

    /// This node's kept lines of the function, then, with `follow`, new ones until the client
    /// goes away.
    fn local_function_logs(&self, req: &FunctionLogsRequest) -> BoxStream<PbLogLine> {
        let node = self.host.cluster.id;
        let to_pb = move |l: Line| PbLogLine {
            time: l.time,
            stream: "stderr".into(),
            text: l.text,
            source: l.source,
            node,
            call_ids: l.calls,
            generation: 0,
        };
        let output = &self.functions.output;
        let call = req.call_id.clone();
        // Subscribed before reading the ring, so no line falls between the two.
        let mut new = output.subscribe();
        let kept: Vec<Result<PbLogLine, Status>> = output
            .lines(&req.app, &req.function, call.as_deref(), req.tail)
            .into_iter()
            .map(|l| Ok(to_pb(l)))
            .collect();
        if !req.follow {
            return Box::pin(futures::stream::iter(kept));
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (app, function) = (req.app.clone(), req.function.clone());
        tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            for l in kept {
                if let Ok(l) = &l {
                    seen.insert((l.time.clone(), l.text.clone()));
                }
                if tx.send(l).await.is_err() {
                    return;
                }
            }
            loop {
                let line = tokio::select! {
                    _ = tx.closed() => return,
                    line = new.recv() => line,
                };
                match line {
                    Ok(l) if l.app == app && l.function == function && l.is_of(call.as_deref()) => {
                        // Lines read between subscribing and listing the ring came both ways.
                        if seen.remove(&(l.time.clone(), l.text.clone())) {
                            continue;
                        }
                        if tx.send(Ok(to_pb(l))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "function logs follower fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}
