//! Seeing what the cluster does: its event record (`client.events(..)`, followed with
//! `client.follow_events(..)`), the output of sandboxes (`client.sandbox_logs(..)`) and of
//! function processes (`client.function_logs(..)`).
//!
//! Streams come from the node the client reaches; log streams are proxied by that node to the
//! node that runs the container. Dropping a stream ends it on the node at once.

use flotilla_proto::observe::observe_client::ObserveClient;
use flotilla_proto::observe::{self as pb, FunctionLogsRequest, ListEventsRequest, SandboxLogsRequest};
use futures::{Stream, StreamExt};
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};

/// One recorded cluster event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Position in the cluster's event history; grows by one per event.
    pub seq: u64,
    /// When it happened, as the leader stamped it (Unix ms).
    pub at_ms: i64,
    /// `placement`, `replica`, `failover`, `fence`, `leader`, `snapshot` or `schedule`.
    pub kind: String,
    /// What it is about: `app/function`, a sandbox id or name, `node N`, …
    pub subject: String,
    /// What happened and why.
    pub message: String,
    /// The node it happened on or was decided for, if any.
    pub node: Option<u64>,
    /// Identical later reports folded into this one.
    pub repeats: u32,
}

impl From<pb::Event> for Event {
    fn from(e: pb::Event) -> Self {
        Event {
            seq: e.seq,
            at_ms: e.at_ms,
            kind: e.kind,
            subject: e.subject,
            message: e.message,
            node: e.node,
            repeats: e.repeats,
        }
    }
}

/// Which events to list or follow. The default is every kept event.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only these kinds (see [`Event::kind`]); empty = all.
    pub kinds: Vec<String>,
    /// Only events about this subject (exactly, or `subject/…`).
    pub subject: Option<String>,
    /// At most this many, the newest; 0 = all.
    pub limit: u32,
}

impl EventFilter {
    fn request(&self) -> ListEventsRequest {
        ListEventsRequest {
            since_ms: self.since_ms,
            kinds: self.kinds.clone(),
            subject: self.subject.clone(),
            limit: self.limit,
            after_seq: None,
        }
    }
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// The engine's RFC 3339 timestamp of the line.
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line, without its newline.
    pub text: String,
    /// What wrote it (e.g. the sandbox generation's container name).
    pub source: String,
    /// The node it was read on.
    pub node: u64,
    /// Function logs: the calls it is attributed to (the call an exec-mode process ran; the
    /// calls a worker process was running when the line was written). Empty otherwise.
    pub call_ids: Vec<String>,
    /// Sandbox logs: the generation whose container wrote it (earlier generations' lines come
    /// first).
    pub generation: u64,
}

impl From<pb::LogLine> for LogLine {
    fn from(l: pb::LogLine) -> Self {
        LogLine {
            time: l.time,
            stream: l.stream,
            text: l.text,
            source: l.source,
            node: l.node,
            call_ids: l.call_ids,
            generation: l.generation,
        }
    }
}

impl Client {
    /// The recorded events matching `filter`, oldest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let req = filter.request();
        self.on_endpoints(|channel| {
            let req = req.clone();
            async move {
                let reply = ObserveClient::new(channel).list_events(req).await?.into_inner();
                Ok(reply.events.into_iter().map(Event::from).collect())
            }
        })
        .await
    }

    /// The events matching `filter`, then each new one as the cluster records it. The stream
    /// ends when the node goes away (an error) or the stream is dropped.
    pub async fn follow_events(&self, filter: &EventFilter) -> Result<impl Stream<Item = Result<Event>>> {
        let req = filter.request();
        let stream = self
            .on_endpoints(|channel| {
                let req = req.clone();
                async move { Ok(ObserveClient::new(channel).follow_events(req).await?.into_inner()) }
            })
            .await?;
        Ok(stream.map(|item| item.map(Event::from).map_err(Error::from)))
    }

    /// The stdout and stderr of sandbox `id`'s entrypoint: what its nodes kept of its earlier
    /// generations' containers (a failed-over or moved sandbox; an ended sandbox's last one),
    /// then the current container's lines; `tail` keeps the last lines of the current
    /// container (else of the kept ones). With `follow`, new lines until the sandbox ends or
    /// the stream is dropped. [`Error::NotFound`] for an unknown sandbox.
    pub async fn sandbox_logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<impl Stream<Item = Result<LogLine>>> {
        let req = SandboxLogsRequest { id: id.to_string(), follow, tail, ..Default::default() };
        let stream = self
            .on_endpoints(|channel| {
                let req = req.clone();
                async move { Ok(ObserveClient::new(channel).sandbox_logs(req).await?.into_inner()) }
            })
            .await?;
        Ok(stream.map(|item| item.map(LogLine::from).map_err(Error::from)))
    }

    /// What the processes of `app`/`function` wrote to stderr (worker processes, exec-mode
    /// calls) on every node, only the lines of durable call `call` when given (a spawned
    /// call's or a scheduled run's id): the last `tail` lines per node (all kept when `None`),
    /// then, with `follow`, new lines until the stream is dropped. [`Error::NotFound`] for an
    /// unknown app, function or call.
    pub async fn function_logs(
        &self,
        app: &str,
        function: &str,
        call: Option<&str>,
        follow: bool,
        tail: Option<u64>,
    ) -> Result<impl Stream<Item = Result<LogLine>>> {
        let req = FunctionLogsRequest {
            app: app.to_string(),
            function: function.to_string(),
            follow,
            tail,
            local_only: false,
            call_id: call.map(str::to_string),
        };
        let stream = self
            .on_endpoints(|channel| {
                let req = req.clone();
                async move { Ok(ObserveClient::new(channel).function_logs(req).await?.into_inner()) }
            })
            .await?;
        Ok(stream.map(|item| item.map(LogLine::from).map_err(Error::from)))
    }
}
