//! Schedules and runs in the Control service: list, pause, resume, trigger, and the durable
//! call records (`runs ls`, and later `call ls|get`).

use flotilla_proto::control as pb;
use flotilla_raft::{Call, Command, Response as CatalogResponse, ScheduleRecord};
use tonic::Status;

use super::control::ControlService;
use crate::error::NodeError;
use crate::schedule;

/// `runs ls` answers this many calls unless asked otherwise, and never more than the maximum.
const DEFAULT_RUNS: usize = 100;
const MAX_RUNS: usize = 100_000;

fn schedule_pb(s: ScheduleRecord) -> pb::Schedule {
    pb::Schedule {
        overlap: s.overlap.as_str().to_string(),
        catch_up: s.catch_up.as_str().to_string(),
        app: s.app,
        function: s.function,
        spec_json: s.spec_json,
        anchor_ms: s.anchor_ms,
        next_fire_at_ms: s.next_fire_at_ms,
        last_fired_at_ms: s.last_fired_at_ms,
        paused: s.paused,
        catch_up_window_s: s.catch_up_window_s,
        revision: s.revision,
        active_call: s.active_call,
        buffered_call: s.buffered_call,
        last_fired_by: s.last_fired_by,
    }
}

pub(super) fn call_pb(c: Call) -> pb::CallRecord {
    pb::CallRecord {
        state: c.state.as_str().to_string(),
        id: c.id,
        app: c.app,
        function: c.function,
        attempt: c.attempt,
        node: c.node,
        scheduled_at_ms: c.scheduled_at_ms,
        created_at_ms: c.created_at_ms,
        started_at_ms: c.started_at_ms,
        finished_at_ms: c.finished_at_ms,
        output: c.output,
        error: c.error,
    }
}

/// The schedule key of a request naming an app and a function; both are required.
fn key_of(app: &str, function: &str) -> Result<String, NodeError> {
    if app.is_empty() {
        return Err(NodeError::invalid("app", "is required"));
    }
    if function.is_empty() {
        return Err(NodeError::invalid("function", "is required"));
    }
    Ok(flotilla_raft::catalog::schedule::key(app, function))
}

fn schedule_reply(resp: CatalogResponse) -> Result<pb::Schedule, Status> {
    match resp {
        CatalogResponse::Schedule(s) => Ok(schedule_pb(s)),
        other => Err(Status::internal(format!("unexpected catalog response: {other:?}"))),
    }
}

impl ControlService {
    pub(super) async fn list_schedules_(
        &self,
        req: pb::ListSchedulesRequest,
    ) -> Result<pb::ListSchedulesReply, Status> {
        self.cluster.linearizable().await?;
        let schedules = self.cluster.view.read(|c| {
            c.schedules
                .iter()
                .filter(|s| req.app.as_ref().is_none_or(|a| *a == s.app))
                .cloned()
                .map(schedule_pb)
                .collect()
        });
        Ok(pb::ListSchedulesReply { schedules })
    }

    pub(super) async fn pause_schedule_(&self, req: pb::ScheduleRef) -> Result<pb::Schedule, Status> {
        let schedule = key_of(&req.app, &req.function)?;
        schedule_reply(self.cluster.write(Command::PauseSchedule { schedule, at_ms: 0 }).await?)
    }

    pub(super) async fn resume_schedule_(&self, req: pb::ScheduleRef) -> Result<pb::Schedule, Status> {
        let key = key_of(&req.app, &req.function)?;
        self.cluster.linearizable().await?;
        let record = self.cluster.view.read(|c| c.schedules.get(&key).cloned());
        let record = record.ok_or_else(|| NodeError::from(flotilla_raft::Rejection::ScheduleNotFound(key.clone())))?;
        let next_fire_at_ms = schedule::next_tick(&record, chrono::Utc::now().timestamp_millis())?;
        schedule_reply(self.cluster.write(Command::ResumeSchedule { schedule: key, next_fire_at_ms, at_ms: 0 }).await?)
    }

    pub(super) async fn trigger_schedule_(&self, req: pb::TriggerScheduleRequest) -> Result<pb::CallRecord, Status> {
        let key = key_of(&req.app, &req.function)?;
        if req.request_id.is_empty() || req.request_id.len() > 128 {
            return Err(NodeError::invalid("request_id", "must be 1 to 128 characters").into());
        }
        self.cluster.linearizable().await?;
        if self.cluster.view.read(|c| c.schedules.get(&key).is_none()) {
            return Err(NodeError::from(flotilla_raft::Rejection::ScheduleNotFound(key)).into());
        }
        let cmd = Command::SpawnCall {
            id: schedule::new_call_id(),
            app: req.app,
            function: req.function,
            input: Vec::new(),
            request_id: Some(req.request_id),
            at_ms: 0,
        };
        match self.cluster.write(cmd).await? {
            CatalogResponse::Call(c) => Ok(call_pb(c)),
            other => Err(Status::internal(format!("unexpected catalog response: {other:?}"))),
        }
    }

    pub(super) async fn list_runs_(&self, req: pb::ListRunsRequest) -> Result<pb::ListRunsReply, Status> {
        let limit = match req.limit as usize {
            0 => DEFAULT_RUNS,
            n if n > MAX_RUNS => return Err(NodeError::invalid("limit", format!("must be at most {MAX_RUNS}")).into()),
            n => n,
        };
        self.cluster.linearizable().await?;
        let calls = self.cluster.view.read(|c| {
            let mut matching: Vec<&Call> = c
                .calls
                .values()
                .filter(|call| req.app.as_ref().is_none_or(|a| *a == call.app))
                .filter(|call| req.function.as_ref().is_none_or(|f| *f == call.function))
                .filter(|call| !req.scheduled || call.scheduled_at_ms.is_some())
                .collect();
            // Newest first: by creation, then by tick (one entry can create several runs).
            matching.sort_by_key(|c| std::cmp::Reverse((c.created_at_ms, c.scheduled_at_ms)));
            matching.into_iter().take(limit).cloned().map(call_pb).collect()
        });
        Ok(pb::ListRunsReply { calls })
    }
}
