//! Durable calls on this node: claim queued calls of functions that have a free replica slot
//! here, run them, and record how they ended.
//!
//! A claim is a `StartCall` naming the attempt; `apply` accepts one claim per attempt, so
//! when several nodes race for a call only one runs it. A failed attempt is recorded with
//! the time of the next one when the function's retry policy allows it (delay
//! `initial_delay_ms · backoff^(attempt-1)`), otherwise the call fails. A call cancelled
//! while it runs is aborted here (in exec mode its process is killed). Calls this node was
//! running when its daemon died are requeued, attempt counted, when it starts again; calls
//! of a node that died for good are requeued by the leader (see `autoscaler`).
//! Delivery is therefore at least once: a node cut off while it runs a call may finish it
//! after the leader gave the call to another node; the record keeps only the attempt that
//! was current. Each attempt runs in a `call` tracing span with the call's `id`, `attempt`
//! and the `request_id` of the request that spawned it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla::spec::RetryPolicy;
use flotilla_raft::{Call, CallOutcome, CallState, Command};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::{FnKey, FunctionHost};
use crate::error::NodeError;

/// A pass also runs this often with no catalog change (retries come due with time).
const TICK: Duration = Duration::from_millis(100);
/// How long an outcome report is retried while there is no leader.
const REPORT_FOR: Duration = Duration::from_secs(120);

/// Calls running here: (id, attempt) -> the task running it.
type Running = Arc<Mutex<HashMap<(String, u32), AbortHandle>>>;

/// Runs until `shutdown` turns true.
pub async fn run(host: FunctionHost, mut shutdown: watch::Receiver<bool>) {
    while let Err(e) = host.cluster.linearizable().await {
        tracing::debug!(error = %e, "call executor waiting to catch up with the leader");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
    let running: Running = Default::default();
    requeue_lost(&host).await;
    let mut metrics = host.cluster.raft.metrics();
    loop {
        pass(&host, &running).await;
        tokio::select! {
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Requeues the calls the catalog says run here: this process has just started, so their
/// attempts died with the previous one.
async fn requeue_lost(host: &FunctionHost) {
    let me = host.cluster.id;
    let lost: Vec<Call> = host.cluster.view.read(|c| {
        c.calls.values().filter(|call| call.state == CallState::Running && call.node == Some(me)).cloned().collect()
    });
    for call in lost {
        let cmd = Command::RequeueCall {
            id: call.id.clone(),
            attempt: call.attempt,
            reason: format!("node {me} restarted while running attempt {}", call.attempt),
            at_ms: 0,
        };
        if let Err(e) = host.cluster.write(cmd).await {
            tracing::warn!(call = %call.id, error = %e, "could not requeue a call lost in a restart");
        }
    }
}

async fn pass(host: &FunctionHost, running: &Running) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    // Only calls this node could run are copied out (inputs may be MiBs): those of functions
    // with an accepting replica here.
    let local: Vec<(String, String)> = host
        .replicas
        .lock()
        .expect("replicas lock")
        .values()
        .filter(|r| r.accepting())
        .map(|r| (r.app.clone(), r.function.clone()))
        .collect();
    if local.is_empty() && running.lock().expect("running lock").is_empty() {
        return;
    }
    let runnable = |call: &Call| local.iter().any(|(a, f)| *a == call.app && *f == call.function);
    let (claimable, cancelled) = host.cluster.view.read(|c| {
        let claimable: Vec<Call> =
            c.calls.values().filter(|call| call.claimable(now_ms) && runnable(call)).cloned().collect();
        let running = running.lock().expect("running lock");
        let cancelled: Vec<(String, u32)> = running
            .keys()
            .filter(|(id, attempt)| {
                c.calls.get(id).is_none_or(|call| call.attempt != *attempt || call.state.is_final())
            })
            .cloned()
            .collect();
        (claimable, cancelled)
    });
    for key in cancelled {
        if let Some(task) = running.lock().expect("running lock").remove(&key) {
            tracing::info!(call = %key.0, "call ended elsewhere or was cancelled; stopping it here");
            task.abort();
        }
    }
    for call in claimable {
        let Some(slot) = host.local_ready(&call.app, &call.function).iter().find_map(|r| r.try_slot()) else {
            continue;
        };
        let key = (call.id.clone(), call.attempt);
        let claim = Command::StartCall { id: call.id.clone(), node: host.cluster.id, attempt: call.attempt, at_ms: 0 };
        match host.cluster.write(claim).await {
            Ok(_) => {}
            Err(NodeError::Rejected(_)) => continue, // another node claimed it, or it was cancelled
            Err(e) => {
                tracing::debug!(call = %call.id, error = %e, "could not claim call");
                return;
            }
        }
        let retries = slot.replica.spec.retries.clone();
        let (host2, running2, key2) = (host.clone(), running.clone(), key.clone());
        let span = tracing::info_span!(
            "call",
            id = %call.id,
            attempt = call.attempt,
            request_id = call.request_id.as_deref().unwrap_or_default()
        );
        let task = tokio::spawn(
            async move {
                let fn_key: FnKey = (call.app.clone(), call.function.clone());
                let result = {
                    let _running = host2.load.running(&fn_key);
                    slot.replica.run(call.input.clone(), Some(&call.id)).await
                };
                drop(slot);
                running2.lock().expect("running lock").remove(&key2);
                finish(&host2, &call, result, &retries).await;
            }
            .instrument(span),
        );
        running.lock().expect("running lock").insert(key, task.abort_handle());
    }
}

/// The time of the next attempt after attempt `attempt` failed, if the policy allows one.
pub fn retry_at(policy: &RetryPolicy, attempt: u32, now_ms: i64) -> Option<i64> {
    if attempt > policy.max {
        return None;
    }
    let delay = policy.initial_delay_ms as f64 * policy.backoff.powi(attempt.saturating_sub(1) as i32);
    Some(now_ms + delay.min(3_600_000.0) as i64)
}

async fn finish(host: &FunctionHost, call: &Call, result: Result<Vec<u8>, String>, retries: &RetryPolicy) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let (outcome, retry_at_ms) = match result {
        Ok(output) => (CallOutcome::Succeeded(output), None),
        Err(message) => (CallOutcome::Failed(message), retry_at(retries, call.attempt, now_ms)),
    };
    let cmd = Command::FinishCall { id: call.id.clone(), attempt: call.attempt, outcome, retry_at_ms, at_ms: 0 };
    match host.cluster.write_retrying(cmd, REPORT_FOR).await {
        Ok(_) | Err(NodeError::Rejected(_)) => {}
        Err(e) => tracing::error!(call = %call.id, error = %e, "could not record the call's outcome; giving up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_stop_at_the_policy_max() {
        let policy = RetryPolicy { max: 2, initial_delay_ms: 1000, backoff: 2.0 };
        assert_eq!(retry_at(&policy, 1, 10_000), Some(11_000));
        assert_eq!(retry_at(&policy, 2, 10_000), Some(12_000));
        assert_eq!(retry_at(&policy, 3, 10_000), None);
        let none = RetryPolicy { max: 0, ..policy };
        assert_eq!(retry_at(&none, 1, 0), None);
    }
}
