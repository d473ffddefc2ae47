//! Durable calls: `fn spawn` inputs and scheduled fires, recorded in the catalog so that they
//! survive the node that runs them.
//!
//! ```text
//!            spawn / fire                 start (node claims it)
//!   ───────────────────────▶ Queued ──────────────────────────▶ Running ──finish──▶ Succeeded
//!                              ▲  ▲                               │   │            Failed
//!                              │  └──finish with a retry time─────┘   │
//!                              └──requeue (its node died, attempt+1)──┘
//!   any non-final state ──cancel──▶ Cancelled          a fire the policy drops ──▶ Skipped
//! ```
//!
//! A call is claimed by whichever node with a warm replica of its function asks first: the
//! claim names the attempt it starts, and `apply` accepts only a claim of a queued call whose
//! attempt matches and whose retry time has come, so two nodes never run the same attempt.
//! Reports for another attempt are stale. Synchronous `fn call` traffic never comes here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Rejection, Response};
use crate::NodeId;

/// Largest input or output a durable call carries in the catalog, bytes. Synchronous calls
/// allow the same, so a function behaves alike whichever way it is called.
pub const MAX_CALL_PAYLOAD: usize = 4 << 20;

/// Lifecycle of a durable call. `Succeeded`, `Failed`, `Skipped` and `Cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// A scheduled fire that its overlap or catch-up policy dropped; the reason is recorded.
    Skipped,
    Cancelled,
}

impl CallState {
    /// The lowercase name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Queued => "queued",
            CallState::Running => "running",
            CallState::Succeeded => "succeeded",
            CallState::Failed => "failed",
            CallState::Skipped => "skipped",
            CallState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, CallState::Queued | CallState::Running)
    }
}

/// How an attempt ended, as its node reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallOutcome {
    /// The function's output.
    Succeeded(Vec<u8>),
    /// Why it failed (exit code and stderr, a timeout, malformed worker output).
    Failed(String),
}

/// A durable call as the catalog records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// `fc-` followed by leader-chosen random hex.
    pub id: String,
    pub app: String,
    pub function: String,
    pub input: Vec<u8>,
    pub state: CallState,
    /// 1 for the first attempt; a retry or a requeue after its node died adds 1.
    pub attempt: u32,
    /// The node running (or that last ran) the current attempt.
    pub node: Option<NodeId>,
    /// Set once the call succeeded.
    pub output: Option<Vec<u8>>,
    /// Why the last attempt failed, or why the call was skipped or requeued.
    pub error: Option<String>,
    /// For a scheduled fire: the tick it stands for (Unix ms).
    pub scheduled_at_ms: Option<i64>,
    /// A queued retry is not started before this time (Unix ms, leader clock).
    pub not_before_ms: i64,
    /// The client's id for the spawn request, to recognise a retry.
    pub request_id: Option<String>,
    pub created_at_ms: i64,
    /// When the current attempt started.
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

impl Call {
    /// A queued first attempt (or a final `Skipped` record when `skipped` gives the reason).
    pub fn new(
        id: String,
        app: String,
        function: String,
        input: Vec<u8>,
        scheduled_at_ms: Option<i64>,
        request_id: Option<String>,
        at_ms: i64,
    ) -> Call {
        Call {
            id,
            app,
            function,
            input,
            state: CallState::Queued,
            attempt: 1,
            node: None,
            output: None,
            error: None,
            scheduled_at_ms,
            not_before_ms: at_ms,
            request_id,
            created_at_ms: at_ms,
            started_at_ms: None,
            finished_at_ms: None,
        }
    }

    /// Whether a node may claim this call's `attempt` at `now_ms`.
    pub fn claimable(&self, now_ms: i64) -> bool {
        self.state == CallState::Queued && self.not_before_ms <= now_ms
    }
}

/// Records a new call after checking its payload and id. (A retried request was answered
/// by the caller.)
pub(super) fn insert(calls: &mut BTreeMap<String, Call>, call: Call) -> Response {
    if call.input.len() > MAX_CALL_PAYLOAD {
        return invalid("input", &format!("{} bytes is over the limit of {MAX_CALL_PAYLOAD}", call.input.len()));
    }
    if calls.contains_key(&call.id) {
        return Response::Rejected(Rejection::Conflict(format!("call {} exists", call.id)));
    }
    calls.insert(call.id.clone(), call.clone());
    Response::Call(call)
}

pub(super) fn start(calls: &mut BTreeMap<String, Call>, id: &str, node: NodeId, attempt: u32, at_ms: i64) -> Response {
    let call = match found(calls, id) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if call.attempt != attempt || !call.claimable(at_ms) {
        return stale(call, attempt);
    }
    call.state = CallState::Running;
    call.node = Some(node);
    call.started_at_ms = Some(at_ms);
    Response::Call(call.clone())
}

pub(super) fn finish(
    calls: &mut BTreeMap<String, Call>,
    id: &str,
    attempt: u32,
    outcome: CallOutcome,
    retry_at_ms: Option<i64>,
    at_ms: i64,
) -> Response {
    let call = match found(calls, id) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if call.attempt != attempt || call.state != CallState::Running {
        return stale(call, attempt);
    }
    match (outcome, retry_at_ms) {
        (CallOutcome::Succeeded(output), _) => {
            if output.len() > MAX_CALL_PAYLOAD {
                let message = format!("output of {} bytes is over the limit of {MAX_CALL_PAYLOAD}", output.len());
                end(call, CallState::Failed, None, Some(message), at_ms);
            } else {
                end(call, CallState::Succeeded, Some(output), None, at_ms);
            }
        }
        (CallOutcome::Failed(error), Some(retry_at)) => {
            call.state = CallState::Queued;
            call.attempt += 1;
            call.error = Some(error);
            call.not_before_ms = retry_at;
            call.started_at_ms = None;
        }
        (CallOutcome::Failed(error), None) => end(call, CallState::Failed, None, Some(error), at_ms),
    }
    Response::Call(call.clone())
}

/// The running attempt is lost with its node: queue the next attempt at once.
pub(super) fn requeue(
    calls: &mut BTreeMap<String, Call>,
    id: &str,
    attempt: u32,
    reason: String,
    at_ms: i64,
) -> Response {
    let call = match found(calls, id) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if call.attempt != attempt || call.state != CallState::Running {
        return stale(call, attempt);
    }
    call.state = CallState::Queued;
    call.attempt += 1;
    call.error = Some(reason);
    call.not_before_ms = at_ms;
    call.started_at_ms = None;
    Response::Call(call.clone())
}

/// Cancels a call that has not ended; a final call is answered as it is.
pub(super) fn cancel(calls: &mut BTreeMap<String, Call>, id: &str, at_ms: i64) -> Response {
    let call = match found(calls, id) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !call.state.is_final() {
        end(call, CallState::Cancelled, None, Some("cancelled by a user".into()), at_ms);
    }
    Response::Call(call.clone())
}

/// Ends every queued call of `app` as cancelled, with `why` as its error (the app was removed,
/// so no replica will ever take them). Running calls finish on their draining replicas.
pub(super) fn cancel_queued(calls: &mut BTreeMap<String, Call>, app: &str, why: &str, at_ms: i64) {
    for call in calls.values_mut().filter(|c| c.app == app && c.state == CallState::Queued) {
        end(call, CallState::Cancelled, None, Some(why.to_string()), at_ms);
    }
}

fn end(call: &mut Call, state: CallState, output: Option<Vec<u8>>, error: Option<String>, at_ms: i64) {
    call.state = state;
    call.output = output;
    call.error = error;
    call.finished_at_ms = Some(at_ms);
}

#[allow(clippy::result_large_err)] // the Err is the Response `apply` returns anyway
fn found<'a>(calls: &'a mut BTreeMap<String, Call>, id: &str) -> Result<&'a mut Call, Response> {
    calls.get_mut(id).ok_or_else(|| Response::Rejected(Rejection::CallNotFound(id.to_string())))
}

fn stale(call: &Call, attempt: u32) -> Response {
    Response::Rejected(Rejection::Stale(format!(
        "call {} is {} at attempt {}, not attempt {attempt} in a state that allows this",
        call.id,
        call.state.as_str(),
        call.attempt
    )))
}

fn invalid(field: &str, message: &str) -> Response {
    Response::Rejected(Rejection::Invalid { field: field.into(), message: message.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, Command};

    /// A catalog with app `etl` and its function `tick`.
    fn deployed() -> Catalog {
        let mut c = Catalog::default();
        c.apply(Command::DeployApp {
            name: "etl".into(),
            functions: vec!["tick".into()],
            spec_json: "{}".into(),
            request_id: "d1".into(),
            at_ms: 1,
            schedules: vec![],
        });
        c
    }

    fn spawn(id: &str, rid: Option<&str>) -> Command {
        Command::SpawnCall {
            id: id.into(),
            app: "etl".into(),
            function: "tick".into(),
            input: b"in".to_vec(),
            request_id: rid.map(Into::into),
            at_ms: 100,
        }
    }

    fn call(r: Response) -> Call {
        match r {
            Response::Call(c) => c,
            other => panic!("expected a call, got {other:?}"),
        }
    }

    fn start(id: &str, node: NodeId, attempt: u32, at_ms: i64) -> Command {
        Command::StartCall { id: id.into(), node, attempt, at_ms }
    }

    fn finish(id: &str, attempt: u32, outcome: CallOutcome, retry_at_ms: Option<i64>) -> Command {
        Command::FinishCall { id: id.into(), attempt, outcome, retry_at_ms, at_ms: 300 }
    }

    #[test]
    fn spawn_start_finish() {
        let mut c = deployed();
        let q = call(c.apply(spawn("fc-1", None)));
        assert_eq!((q.state, q.attempt, q.node), (CallState::Queued, 1, None));
        let r = call(c.apply(start("fc-1", 2, 1, 200)));
        assert_eq!((r.state, r.node, r.started_at_ms), (CallState::Running, Some(2), Some(200)));
        let s = call(c.apply(finish("fc-1", 1, CallOutcome::Succeeded(b"out".to_vec()), None)));
        assert_eq!(
            (s.state, s.output.as_deref(), s.finished_at_ms),
            (CallState::Succeeded, Some(&b"out"[..]), Some(300))
        );
    }

    #[test]
    fn only_one_node_claims_an_attempt() {
        let mut c = deployed();
        c.apply(spawn("fc-1", None));
        call(c.apply(start("fc-1", 1, 1, 200)));
        assert!(matches!(c.apply(start("fc-1", 2, 1, 201)), Response::Rejected(Rejection::Stale(_))));
        assert_eq!(c.calls["fc-1"].node, Some(1));
    }

    #[test]
    fn a_retry_waits_for_its_time_and_counts_the_attempt() {
        let mut c = deployed();
        c.apply(spawn("fc-1", None));
        c.apply(start("fc-1", 1, 1, 200));
        let q = call(c.apply(finish("fc-1", 1, CallOutcome::Failed("exit 1".into()), Some(1300))));
        assert_eq!((q.state, q.attempt, q.error.as_deref()), (CallState::Queued, 2, Some("exit 1")));
        assert!(matches!(c.apply(start("fc-1", 1, 2, 1299)), Response::Rejected(Rejection::Stale(_))));
        assert_eq!(call(c.apply(start("fc-1", 1, 2, 1300))).state, CallState::Running);
        // A late report about attempt 1 changes nothing.
        let before = c.clone();
        assert!(matches!(
            c.apply(finish("fc-1", 1, CallOutcome::Succeeded(vec![]), None)),
            Response::Rejected(Rejection::Stale(_))
        ));
        assert_eq!(c, before);
        let f = call(c.apply(finish("fc-1", 2, CallOutcome::Failed("exit 2".into()), None)));
        assert_eq!((f.state, f.attempt), (CallState::Failed, 2));
    }

    #[test]
    fn requeue_after_node_death_counts_the_attempt() {
        let mut c = deployed();
        c.apply(spawn("fc-1", None));
        c.apply(start("fc-1", 3, 1, 200));
        let q = call(c.apply(Command::RequeueCall {
            id: "fc-1".into(),
            attempt: 1,
            reason: "node 3 is down".into(),
            at_ms: 400,
        }));
        assert_eq!((q.state, q.attempt, q.not_before_ms), (CallState::Queued, 2, 400));
        assert_eq!(call(c.apply(start("fc-1", 1, 2, 400))).node, Some(1));
    }

    #[test]
    fn a_retried_spawn_is_recorded_once() {
        let mut c = deployed();
        c.apply(spawn("fc-1", Some("r1")));
        let again = call(c.apply(spawn("fc-2", Some("r1"))));
        assert_eq!(again.id, "fc-1");
        assert_eq!(c.calls.len(), 1);
    }

    #[test]
    fn cancel_ends_a_live_call_and_leaves_a_final_one() {
        let mut c = deployed();
        c.apply(spawn("fc-1", None));
        let x = call(c.apply(Command::CancelCall { id: "fc-1".into(), at_ms: 150 }));
        assert_eq!(x.state, CallState::Cancelled);
        assert!(matches!(c.apply(start("fc-1", 1, 1, 200)), Response::Rejected(Rejection::Stale(_))));
        assert_eq!(call(c.apply(Command::CancelCall { id: "fc-1".into(), at_ms: 160 })).finished_at_ms, Some(150));
    }

    #[test]
    fn oversized_input_and_unknown_ids_are_rejected() {
        let mut c = deployed();
        let mut big = spawn("fc-1", None);
        if let Command::SpawnCall { input, .. } = &mut big {
            *input = vec![0; MAX_CALL_PAYLOAD + 1];
        }
        assert!(matches!(c.apply(big), Response::Rejected(Rejection::Invalid { field, .. }) if field == "input"));
        assert_eq!(c.apply(start("fc-9", 1, 1, 1)), Response::Rejected(Rejection::CallNotFound("fc-9".into())));
        assert!(c.calls.is_empty());
    }

    #[test]
    fn spawns_to_unknown_or_stopped_functions_are_rejected() {
        let mut c = deployed();
        let mut other = spawn("fc-1", None);
        if let Command::SpawnCall { function, .. } = &mut other {
            *function = "nope".into();
        }
        assert_eq!(c.apply(other), Response::Rejected(Rejection::FunctionNotFound("etl/nope".into())));
        c.apply(Command::StopApp { name: "etl".into(), at_ms: 2 });
        assert!(matches!(c.apply(spawn("fc-1", None)), Response::Rejected(Rejection::AppStopped(_))));
        assert!(c.calls.is_empty());
    }
}
