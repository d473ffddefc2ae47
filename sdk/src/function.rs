//! Functions of deployed apps: synchronous calls, durable (spawned) calls, and `map`.
//!
//! ```no_run
//! # async fn f(client: flotilla::Client) -> flotilla::Result<()> {
//! let tick = client.function("etl", "tick");
//! let out = tick.call(b"input".to_vec()).await?;             // runs now, on a warm replica
//! let fc = tick.spawn(b"input".to_vec()).await?;             // recorded; survives node loss
//! let res = fc.get().await?;                                 // waits for the result
//! let all = tick.map(vec![b"a".to_vec(), b"b".to_vec()], 8).await; // ordered results
//! # Ok(()) }
//! ```

use std::time::Duration;

use flotilla_proto::control as pb;
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::schedule::CallRecord;

/// Longest time one `GetCall` request waits on the server before the SDK asks again.
const GET_POLL: Duration = Duration::from_secs(300);

/// A function of a deployed app, by name.
#[derive(Clone)]
pub struct Function {
    client: Client,
    app: String,
    name: String,
}

/// A durable call, by id.
#[derive(Clone)]
pub struct FunctionCall {
    client: Client,
    pub id: String,
}

impl CallRecord {
    /// Whether the call has ended.
    pub fn is_final(&self) -> bool {
        !matches!(self.state.as_str(), "queued" | "running")
    }

    /// The output of a call that succeeded; the reason as an error otherwise.
    pub fn result(&self) -> Result<Vec<u8>> {
        match self.state.as_str() {
            "succeeded" => Ok(self.output.clone().unwrap_or_default()),
            "queued" | "running" => Err(Error::Timeout(format!("call {} is still {}", self.id, self.state))),
            other => Err(Error::FunctionFailed(format!(
                "call {} {other} after {} attempt(s): {}",
                self.id,
                self.attempt,
                self.error.as_deref().unwrap_or("no reason recorded")
            ))),
        }
    }
}

/// Replicas and load of one function, as a node sees them.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionLoad {
    pub function: String,
    pub replicas_ready: u32,
    pub replicas_starting: u32,
    pub running: u32,
    pub waiting: u32,
    pub queued_calls: u32,
    pub replicas: Vec<ReplicaInfo>,
    /// Why a wanted replica cannot be placed now, when one waits for a node.
    pub pending: Option<PendingReplica>,
}

/// A replica the autoscaler wants but no node can take, as the leader last recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingReplica {
    /// What placement said, e.g. `no node has 1 free CPU: node 1 has 0.0 of 8.0 left`.
    pub reason: String,
    /// When this reason was first recorded, Unix milliseconds.
    pub since_ms: i64,
}

/// One warm replica.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaInfo {
    pub id: String,
    pub node: u64,
    pub version: u64,
    pub state: String,
    pub gpus: Vec<u32>,
}

impl Client {
    /// A handle on `function` of `app`; nothing is checked until it is called.
    pub fn function(&self, app: &str, function: &str) -> Function {
        Function { client: self.clone(), app: app.to_string(), name: function.to_string() }
    }

    /// A handle on the durable call with this id.
    pub fn call_from_id(&self, id: &str) -> FunctionCall {
        FunctionCall { client: self.clone(), id: id.to_string() }
    }

    /// Replicas and load of each function of `app`.
    pub async fn function_status(&self, app: &str) -> Result<Vec<FunctionLoad>> {
        let req = pb::FunctionStatusRequest { app: app.to_string() };
        let reply = self
            .control(|mut c| {
                let req = req.clone();
                async move { c.function_status(req).await }
            })
            .await?;
        Ok(reply
            .functions
            .into_iter()
            .map(|f| FunctionLoad {
                function: f.function,
                replicas_ready: f.replicas_ready,
                replicas_starting: f.replicas_starting,
                running: f.running,
                waiting: f.waiting,
                queued_calls: f.queued_calls,
                pending: (!f.pending_reason.is_empty())
                    .then_some(PendingReplica { reason: f.pending_reason, since_ms: f.pending_since_ms }),
                replicas: f
                    .replicas
                    .into_iter()
                    .map(|r| ReplicaInfo { id: r.id, node: r.node, version: r.version, state: r.state, gpus: r.gpus })
                    .collect(),
            })
            .collect())
    }
}

impl Function {
    /// Runs `input` now on a warm replica (starting one if there is none) and returns the
    /// output. Waits up to the function's timeout plus a minute for a replica to start.
    pub async fn call(&self, input: impl Into<Vec<u8>>) -> Result<Vec<u8>> {
        self.call_within(input, None).await
    }

    /// [`Self::call`] waiting at most `timeout` in all (queueing and cold start included).
    pub async fn call_within(&self, input: impl Into<Vec<u8>>, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let req = pb::CallFunctionRequest {
            app: self.app.clone(),
            function: self.name.clone(),
            input: input.into(),
            timeout_s: timeout.map_or(0, |t| t.as_secs().max(1)),
        };
        // The server holds the call while it runs: no client-side cut before its own deadline.
        let wait = timeout.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(5);
        let reply = self
            .client
            .control_for(wait, |mut c| {
                let req = req.clone();
                async move { c.call_function(req).await }
            })
            .await?;
        if reply.ok {
            Ok(reply.output)
        } else {
            Err(Error::FunctionFailed(reply.error))
        }
    }

    /// Records a durable call of `input` and returns its handle at once.
    pub async fn spawn(&self, input: impl Into<Vec<u8>>) -> Result<FunctionCall> {
        let req = pb::SpawnCallRequest {
            app: self.app.clone(),
            function: self.name.clone(),
            input: input.into(),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let call = self
            .client
            .control(|mut c| {
                let req = Client::tagged(req.clone(), &req.request_id);
                async move { c.spawn_call(req).await }
            })
            .await?;
        Ok(FunctionCall { client: self.client.clone(), id: call.id })
    }

    /// Calls the function on every input, at most `parallelism` at once, and returns the
    /// results in the order of the inputs.
    pub async fn map<I>(&self, inputs: I, parallelism: usize) -> Vec<Result<Vec<u8>>>
    where
        I: IntoIterator,
        I::Item: Into<Vec<u8>>,
    {
        use futures::StreamExt;
        futures::stream::iter(inputs.into_iter().map(|i| self.call(i.into())))
            .buffered(parallelism.max(1))
            .collect()
            .await
    }
}

impl FunctionCall {
    /// The call's record now.
    pub async fn info(&self) -> Result<CallRecord> {
        self.wait(Duration::ZERO).await
    }

    /// Waits until the call has ended and returns its output (or why it failed).
    pub async fn get(&self) -> Result<Vec<u8>> {
        loop {
            let info = self.wait(GET_POLL).await?;
            if info.is_final() {
                return info.result();
            }
        }
    }

    /// Waits up to `timeout` for the call to end and returns its record either way.
    pub async fn wait(&self, timeout: Duration) -> Result<CallRecord> {
        let req = pb::GetCallRequest { id: self.id.clone(), timeout_s: timeout.as_secs() };
        let call = self
            .client
            .control_for(timeout + Duration::from_secs(10), |mut c| {
                let req = req.clone();
                async move { c.get_call(req).await }
            })
            .await?;
        Ok(call.into())
    }

    /// Cancels the call if it has not ended; returns its record.
    pub async fn cancel(&self) -> Result<CallRecord> {
        let req = pb::CancelCallRequest { id: self.id.clone() };
        let call = self
            .client
            .control(|mut c| {
                let req = req.clone();
                async move { c.cancel_call(req).await }
            })
            .await?;
        Ok(call.into())
    }
}
