//! Schedules (list, pause, resume, trigger) and the durable call records they leave
//! (`runs`), which also hold `spawn`ed calls.

use chrono::{DateTime, Utc};
use flotilla_proto::control as pb;
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::spec::Schedule;

/// A function's schedule as the cluster records it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleInfo {
    pub app: String,
    pub function: String,
    /// Cron with its zone, or period with its anchor, as deployed.
    pub spec: Schedule,
    /// The anchor of a period schedule: its own, or the deploy that set it (kept by redeploys
    /// that do not change the period). Unix ms.
    pub anchor_ms: i64,
    /// The next tick, Unix ms; `None` once the schedule never fires again.
    pub next_fire_at_ms: Option<i64>,
    /// The last tick committed (fired or skipped), Unix ms.
    pub last_fired_at_ms: Option<i64>,
    pub paused: bool,
    /// `allow`, `skip` or `buffer_one`.
    pub overlap: String,
    /// `none`, `latest` or `all`.
    pub catch_up: String,
    pub catch_up_window_s: u64,
    /// The last run that was not skipped, and the run buffered behind it (`buffer_one`).
    pub active_call: Option<String>,
    pub buffered_call: Option<String>,
}

impl ScheduleInfo {
    /// The next `n` ticks from `next_fire_at_ms`, in order (fewer if the schedule ends).
    pub fn next_fires(&self, n: usize) -> Vec<DateTime<Utc>> {
        let (Some(next), Some(anchor)) = (
            self.next_fire_at_ms.and_then(DateTime::from_timestamp_millis),
            DateTime::from_timestamp_millis(self.anchor_ms),
        ) else {
            return Vec::new();
        };
        if n == 0 {
            return Vec::new();
        }
        let mut fires = vec![next];
        fires.extend(self.spec.next_fires(next, n - 1, anchor));
        fires
    }
}

impl TryFrom<pb::Schedule> for ScheduleInfo {
    type Error = Error;

    fn try_from(s: pb::Schedule) -> Result<Self> {
        let spec = serde_json::from_str(&s.spec_json)
            .map_err(|e| Error::Internal(format!("schedule {}/{}: spec does not parse: {e}", s.app, s.function)))?;
        Ok(ScheduleInfo {
            app: s.app,
            function: s.function,
            spec,
            anchor_ms: s.anchor_ms,
            next_fire_at_ms: s.next_fire_at_ms,
            last_fired_at_ms: s.last_fired_at_ms,
            paused: s.paused,
            overlap: s.overlap,
            catch_up: s.catch_up,
            catch_up_window_s: s.catch_up_window_s,
            active_call: s.active_call,
            buffered_call: s.buffered_call,
        })
    }
}

/// A durable call: a scheduled run (with `scheduled_at_ms`), or a spawned or triggered one.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// `fc-…`
    pub id: String,
    pub app: String,
    pub function: String,
    /// `queued`, `running`, `succeeded`, `failed`, `skipped` or `cancelled`.
    pub state: String,
    /// 1 for the first attempt; each retry adds 1.
    pub attempt: u32,
    /// The node running (or that last ran) the current attempt.
    pub node: Option<u64>,
    /// The tick a scheduled run stands for, Unix ms.
    pub scheduled_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub output: Option<Vec<u8>>,
    /// Why the last attempt failed, or why the run was skipped or is waiting.
    pub error: Option<String>,
}

impl From<pb::CallRecord> for CallRecord {
    fn from(c: pb::CallRecord) -> Self {
        CallRecord {
            id: c.id,
            app: c.app,
            function: c.function,
            state: c.state,
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
}

/// Which calls [`Client::runs`] returns; the default is the newest 100 of all.
#[derive(Debug, Clone, Default)]
pub struct RunsFilter {
    pub app: Option<String>,
    pub function: Option<String>,
    /// Only scheduled runs.
    pub scheduled: bool,
    /// Newest first; 0 means 100, at most 100,000.
    pub limit: u32,
}

impl Client {
    /// The schedules of `app`, or of every app.
    pub async fn schedules(&self, app: Option<&str>) -> Result<Vec<ScheduleInfo>> {
        let req = pb::ListSchedulesRequest { app: app.map(str::to_string) };
        let reply = self
            .control(|mut c| {
                let req = req.clone();
                async move { c.list_schedules(req).await }
            })
            .await?;
        reply.schedules.into_iter().map(TryInto::try_into).collect()
    }

    /// Pauses `app`/`function`'s schedule: no tick fires until it is resumed. Idempotent.
    pub async fn pause_schedule(&self, app: &str, function: &str) -> Result<ScheduleInfo> {
        let req = pb::ScheduleRef { app: app.to_string(), function: function.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.pause_schedule(req).await }
        })
        .await?
        .try_into()
    }

    /// Resumes a paused schedule from its first tick after now. Idempotent.
    pub async fn resume_schedule(&self, app: &str, function: &str) -> Result<ScheduleInfo> {
        let req = pb::ScheduleRef { app: app.to_string(), function: function.to_string() };
        self.control(|mut c| {
            let req = req.clone();
            async move { c.resume_schedule(req).await }
        })
        .await?
        .try_into()
    }

    /// Runs a scheduled function now, outside its ticks; returns the queued call. A retry
    /// after a lost reply runs it once (the request carries a fresh id).
    pub async fn trigger_schedule(&self, app: &str, function: &str) -> Result<CallRecord> {
        let req = pb::TriggerScheduleRequest {
            app: app.to_string(),
            function: function.to_string(),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let call = self
            .control(|mut c| {
                let req = req.clone();
                async move { c.trigger_schedule(req).await }
            })
            .await?;
        Ok(call.into())
    }

    /// Durable calls (scheduled runs and spawned calls), newest first.
    pub async fn runs(&self, filter: &RunsFilter) -> Result<Vec<CallRecord>> {
        let req = pb::ListRunsRequest {
            app: filter.app.clone(),
            function: filter.function.clone(),
            scheduled: filter.scheduled,
            limit: filter.limit,
        };
        let reply = self
            .control(|mut c| {
                let req = req.clone();
                async move { c.list_runs(req).await }
            })
            .await?;
        Ok(reply.calls.into_iter().map(Into::into).collect())
    }
}
