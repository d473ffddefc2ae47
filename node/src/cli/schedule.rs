//! `flotilla schedule …` and `flotilla runs …`

use clap::{Args, Subcommand};
use flotilla::spec::{format_duration_ms, Schedule};
use flotilla::{CallRecord, Client, RunsFilter, ScheduleInfo};
use serde::Serialize;

use super::output::{print, rfc3339, Format};

/// `APP/FN`, as the schedule commands name a scheduled function.
#[derive(Debug, Clone)]
pub struct FnRef {
    pub(super) app: String,
    pub(super) function: String,
}

pub(super) fn fn_ref(s: &str) -> Result<FnRef, String> {
    match s.split_once('/') {
        Some((app, function)) if !app.is_empty() && !function.is_empty() && !function.contains('/') => {
            Ok(FnRef { app: app.to_string(), function: function.to_string() })
        }
        _ => Err(format!("expected APP/FUNCTION, e.g. etl/tick (got {s:?})")),
    }
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// List schedules: next and last fire, policies, paused.
    Ls {
        /// Only this app's schedules.
        #[arg(long)]
        app: Option<String>,
    },
    /// Stop firing a schedule until it is resumed.
    Pause {
        /// The scheduled function, as APP/FN.
        #[arg(value_parser = fn_ref, value_name = "APP/FN")]
        target: FnRef,
    },
    /// Fire a paused schedule again, from its first tick after now.
    Resume {
        /// The scheduled function, as APP/FN.
        #[arg(value_parser = fn_ref, value_name = "APP/FN")]
        target: FnRef,
    },
    /// Run a scheduled function now (a run outside its ticks); prints the call id.
    Trigger {
        /// The scheduled function, as APP/FN.
        #[arg(value_parser = fn_ref, value_name = "APP/FN")]
        target: FnRef,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// List durable calls, newest first: scheduled runs and spawned calls.
    Ls(RunsArgs),
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this app's calls.
    #[arg(long)]
    app: Option<String>,
    /// Only calls of functions with this name.
    #[arg(long)]
    function: Option<String>,
    /// Only scheduled runs.
    #[arg(long)]
    scheduled: bool,
    /// How many (newest first), 1 to 100000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,
}

/// A schedule as `schedule ls` prints it.
#[derive(Serialize)]
struct ScheduleRow {
    app: String,
    function: String,
    /// `cron EXPR (ZONE)` or `every PERIOD`.
    schedule: String,
    next_fire_at: Option<String>,
    /// The next three ticks.
    next_fires: Vec<String>,
    last_fired_at: Option<String>,
    paused: bool,
    overlap: String,
    catch_up: String,
    catch_up_window_s: u64,
    active_call: Option<String>,
    buffered_call: Option<String>,
}

/// How a schedule reads in one line.
fn describe(s: &Schedule) -> String {
    match s {
        Schedule::Cron { expr, timezone } => format!("cron {expr} ({timezone})"),
        Schedule::Period { every_ms, .. } => format!("every {}", format_duration_ms(*every_ms)),
    }
}

fn schedule_row(s: &ScheduleInfo) -> ScheduleRow {
    ScheduleRow {
        app: s.app.clone(),
        function: s.function.clone(),
        schedule: describe(&s.spec),
        next_fire_at: s.next_fire_at_ms.map(rfc3339),
        next_fires: s.next_fires(3).iter().map(|t| t.to_rfc3339()).collect(),
        last_fired_at: s.last_fired_at_ms.map(rfc3339),
        paused: s.paused,
        overlap: s.overlap.clone(),
        catch_up: s.catch_up.clone(),
        catch_up_window_s: s.catch_up_window_s,
        active_call: s.active_call.clone(),
        buffered_call: s.buffered_call.clone(),
    }
}

/// A call as `runs ls` prints it (docs/reference/json.md: fields may be added, never removed).
#[derive(Serialize)]
pub(super) struct RunRow {
    id: String,
    app: String,
    function: String,
    scheduled_at: Option<String>,
    state: String,
    node: Option<u64>,
    attempt: u32,
    /// The output as text (lossy UTF-8), once the call succeeded.
    output: Option<String>,
    error: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

pub(super) fn run_row(c: &CallRecord) -> RunRow {
    RunRow {
        id: c.id.clone(),
        app: c.app.clone(),
        function: c.function.clone(),
        scheduled_at: c.scheduled_at_ms.map(rfc3339),
        state: c.state.clone(),
        node: c.node,
        attempt: c.attempt,
        output: c.output.as_deref().map(|o| String::from_utf8_lossy(o).into_owned()),
        error: c.error.clone(),
        created_at: rfc3339(c.created_at_ms),
        started_at: c.started_at_ms.map(rfc3339),
        finished_at: c.finished_at_ms.map(rfc3339),
    }
}

fn or_dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn print_schedule(format: Format, s: &ScheduleInfo) -> anyhow::Result<()> {
    let row = schedule_row(s);
    print(format, &row, |r| {
        let state = if r.paused { "paused" } else { "active" };
        println!("{}/{}  {}  {state}  next {}", r.app, r.function, r.schedule, or_dash(&r.next_fire_at));
    })
}

impl ScheduleCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            ScheduleCmd::Ls { app } => {
                let rows: Vec<ScheduleRow> = client.schedules(app.as_deref()).await?.iter().map(schedule_row).collect();
                print(format, &rows, |rows| {
                    println!(
                        "{:<28} {:<26} {:<26} {:<26} {:<7} {:<11} {:<7}",
                        "SCHEDULE", "SPEC", "NEXT", "LAST", "PAUSED", "OVERLAP", "CATCH_UP"
                    );
                    for r in rows {
                        println!(
                            "{:<28} {:<26} {:<26} {:<26} {:<7} {:<11} {} ({} s)",
                            format!("{}/{}", r.app, r.function),
                            r.schedule,
                            or_dash(&r.next_fire_at),
                            or_dash(&r.last_fired_at),
                            r.paused,
                            r.overlap,
                            r.catch_up,
                            r.catch_up_window_s
                        );
                    }
                })
            }
            ScheduleCmd::Pause { target } => {
                print_schedule(format, &client.pause_schedule(&target.app, &target.function).await?)
            }
            ScheduleCmd::Resume { target } => {
                print_schedule(format, &client.resume_schedule(&target.app, &target.function).await?)
            }
            ScheduleCmd::Trigger { target } => {
                let call = client.trigger_schedule(&target.app, &target.function).await?;
                print(format, &run_row(&call), |r| println!("{}", r.id))
            }
        }
    }
}

impl RunsCmd {
    pub async fn run(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        let RunsCmd::Ls(a) = self;
        a.list(client, format).await
    }
}

impl RunsArgs {
    /// Lists the calls this filter selects (`runs ls`, `call ls`).
    pub(super) async fn list(&self, client: &Client, format: Format) -> anyhow::Result<()> {
        let a = self;
        let filter =
            RunsFilter { app: a.app.clone(), function: a.function.clone(), scheduled: a.scheduled, limit: a.limit };
        let rows: Vec<RunRow> = client.runs(&filter).await?.iter().map(run_row).collect();
        print(format, &rows, |rows| {
            println!(
                "{:<20} {:<24} {:<26} {:<10} {:<5} {:<7} {:<26} ERROR",
                "ID", "FUNCTION", "SCHEDULED", "STATE", "NODE", "ATTEMPT", "FINISHED"
            );
            for r in rows {
                println!(
                    "{:<20} {:<24} {:<26} {:<10} {:<5} {:<7} {:<26} {}",
                    r.id,
                    format!("{}/{}", r.app, r.function),
                    or_dash(&r.scheduled_at),
                    r.state,
                    r.node.map_or("-".to_string(), |n| n.to_string()),
                    r.attempt,
                    or_dash(&r.finished_at),
                    or_dash(&r.error)
                );
            }
        })
    }
}
