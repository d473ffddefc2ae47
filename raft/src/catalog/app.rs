//! Apps: deploy (create or replace with a new version), stop, remove, and why their
//! functions' replicas wait for a node.
//!
//! A stopped app keeps its record (and its version count), so deploying its name again
//! makes the next version and runs it. `app rm` deletes the record together with its
//! schedules and replica records (see `Command::RemoveApp`); the name is then free, and a
//! later deploy starts again at version 1.
//!
//! **Pending reasons.** When the leader's autoscaler cannot place a replica it records the
//! placement's reason on the app, per function (`SetPending`), and clears it once a replica
//! is placed. It writes only when the reason changes, so a full cluster costs one entry per
//! change, not one per autoscaler tick. Any node can then show the reason (`app show`) and
//! name it in a call's error. A new version starts with no reasons.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::{Rejection, Response};

/// A deployed app as the catalog records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    /// Starts at 1; every accepted deploy adds 1, so clients can tell which spec is live.
    pub version: u64,
    pub state: AppState,
    /// Function names, sorted.
    pub functions: Vec<String>,
    /// The validated spec in canonical JSON; the catalog does not interpret it.
    pub spec_json: String,
    /// When version 1 was committed (Unix ms, leader clock).
    pub deployed_at_ms: i64,
    /// When the last deploy or stop was committed (Unix ms, leader clock).
    pub updated_at_ms: i64,
    /// Request ids of the app's latest deploys, oldest first, at most [`RECENT_REQUESTS`], to
    /// recognise a client's retry of any of them, not only of the last one: a retry can
    /// arrive after another client's deploy (found by chaos-tests, docs/reliability.md R1).
    pub recent_requests: VecDeque<String>,
    /// Functions whose wanted replicas cannot be placed now, with the reason, by function
    /// name. Set and cleared by the leader's autoscaler; reset by every deploy and stop.
    pub pending: BTreeMap<String, Pending>,
}

/// Why a function's replica waits for a node: the placement's reason as the leader's
/// autoscaler last saw it, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// What placement said, e.g. `no node has 1 free CPU: node 1 has 0.0 of 8.0 left`.
    pub reason: String,
    /// When this reason was first recorded (Unix ms, leader clock).
    pub since_ms: i64,
}

/// Deploys per app whose request ids are remembered. A client retries for seconds (the SDK
/// for 10 s by default), so this covers 64 deploys of one app within a client's retries.
pub const RECENT_REQUESTS: usize = 64;

/// Lifecycle of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppState {
    Deployed,
    Stopped,
}

impl AppState {
    /// The lowercase name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Deployed => "deployed",
            AppState::Stopped => "stopped",
        }
    }
}

pub(super) fn deploy(
    apps: &mut BTreeMap<String, App>,
    name: String,
    functions: Vec<String>,
    spec_json: String,
    request_id: String,
    at_ms: i64,
) -> Response {
    if name.is_empty() {
        return invalid("name", "must not be empty");
    }
    if functions.is_empty() {
        return invalid("functions", "an app needs at least one function");
    }
    if request_id.is_empty() {
        return invalid("request_id", "must not be empty");
    }
    match apps.get_mut(&name) {
        // Already applied: a retry changes nothing and answers with the app as it is now
        // (a later deploy may have replaced this one since).
        Some(app) if app.recent_requests.contains(&request_id) => Response::App(app.clone()),
        Some(app) => {
            app.version += 1;
            app.state = AppState::Deployed;
            app.functions = functions;
            app.spec_json = spec_json;
            app.updated_at_ms = at_ms;
            app.pending.clear();
            if app.recent_requests.len() == RECENT_REQUESTS {
                app.recent_requests.pop_front();
            }
            app.recent_requests.push_back(request_id);
            Response::App(app.clone())
        }
        None => {
            let app = App {
                name: name.clone(),
                version: 1,
                state: AppState::Deployed,
                functions,
                spec_json,
                deployed_at_ms: at_ms,
                updated_at_ms: at_ms,
                recent_requests: VecDeque::from([request_id]),
                pending: BTreeMap::new(),
            };
            apps.insert(name, app.clone());
            Response::App(app)
        }
    }
}

pub(super) fn stop(apps: &mut BTreeMap<String, App>, name: &str, at_ms: i64) -> Response {
    let Some(app) = apps.get_mut(name) else {
        return Response::Rejected(Rejection::AppNotFound(name.to_string()));
    };
    if app.state != AppState::Stopped {
        app.state = AppState::Stopped;
        app.updated_at_ms = at_ms;
        app.pending.clear();
    }
    Response::App(app.clone())
}

/// Records (`Some`) or clears (`None`) why `function`'s replicas of `version` wait for a
/// node. Stale when the app is gone, stopped or at another version; the same reason again
/// keeps its first time.
pub(super) fn set_pending(
    apps: &mut BTreeMap<String, App>,
    name: &str,
    function: &str,
    version: u64,
    reason: Option<String>,
    at_ms: i64,
) -> Response {
    let Some(app) = apps.get_mut(name).filter(|a| a.state == AppState::Deployed && a.version == version) else {
        return Response::Rejected(Rejection::Stale(format!("app {name:?} is not deployed at version {version}")));
    };
    if !app.functions.iter().any(|f| f == function) {
        return Response::Rejected(Rejection::FunctionNotFound(format!("{name}/{function}")));
    }
    match reason {
        None => {
            app.pending.remove(function);
        }
        Some(reason) => {
            if app.pending.get(function).is_none_or(|p| p.reason != reason) {
                app.pending.insert(function.to_string(), Pending { reason, since_ms: at_ms });
            }
        }
    }
    Response::App(app.clone())
}

fn invalid(field: &str, message: &str) -> Response {
    Response::Rejected(Rejection::Invalid { field: field.into(), message: message.into() })
}

#[cfg(test)]
mod tests {
    use crate::{Catalog, Command, Rejection, Response};

    use super::*;

    fn deploy_cmd(name: &str, request_id: &str, at_ms: i64) -> Command {
        Command::DeployApp {
            name: name.into(),
            functions: vec!["tick".into()],
            spec_json: format!("{{\"name\":\"{name}\"}}"),
            request_id: request_id.into(),
            at_ms,
            schedules: vec![],
        }
    }

    fn app(resp: Response) -> App {
        match resp {
            Response::App(app) => app,
            other => panic!("expected an app, got {other:?}"),
        }
    }

    #[test]
    fn first_deploy_creates_version_one() {
        let mut c = Catalog::default();
        let a = app(c.apply(deploy_cmd("etl", "r1", 1000)));
        assert_eq!((a.version, a.state, a.deployed_at_ms, a.updated_at_ms), (1, AppState::Deployed, 1000, 1000));
        assert_eq!(c.apps["etl"], a);
    }

    #[test]
    fn redeploy_bumps_version_and_keeps_creation_time() {
        let mut c = Catalog::default();
        c.apply(deploy_cmd("etl", "r1", 1000));
        let a = app(c.apply(deploy_cmd("etl", "r2", 2000)));
        assert_eq!((a.version, a.deployed_at_ms, a.updated_at_ms), (2, 1000, 2000));
    }

    #[test]
    fn retried_deploy_is_applied_once() {
        let mut c = Catalog::default();
        c.apply(deploy_cmd("etl", "r1", 1000));
        let again = app(c.apply(deploy_cmd("etl", "r1", 5000)));
        assert_eq!((again.version, again.updated_at_ms), (1, 1000));
    }

    /// R1 (docs/reliability.md): a retry that arrives after another client's deploy was
    /// applied a second time, bringing back the older spec over the newer one.
    #[test]
    fn r1_a_retry_after_a_later_deploy_is_not_applied_again() {
        let mut c = Catalog::default();
        c.apply(deploy_cmd("etl", "r1", 1000));
        c.apply(deploy_cmd("etl", "r2", 2000));
        let retry = app(c.apply(deploy_cmd("etl", "r1", 3000)));
        assert_eq!((retry.version, retry.updated_at_ms), (2, 2000));
        assert_eq!(c.apps["etl"].version, 2);
    }

    #[test]
    fn only_the_latest_request_ids_are_remembered() {
        let mut c = Catalog::default();
        for i in 0..=RECENT_REQUESTS {
            c.apply(deploy_cmd("etl", &format!("r{i}"), i as i64));
        }
        let a = &c.apps["etl"];
        assert_eq!(a.recent_requests.len(), RECENT_REQUESTS);
        assert_eq!(a.recent_requests.front().map(String::as_str), Some("r1"));
    }

    #[test]
    fn stop_then_redeploy() {
        let mut c = Catalog::default();
        c.apply(deploy_cmd("etl", "r1", 1000));
        let stopped = app(c.apply(Command::StopApp { name: "etl".into(), at_ms: 2000 }));
        assert_eq!((stopped.state, stopped.version, stopped.updated_at_ms), (AppState::Stopped, 1, 2000));
        // Stopping again changes nothing, not even the time.
        let twice = app(c.apply(Command::StopApp { name: "etl".into(), at_ms: 3000 }));
        assert_eq!(twice.updated_at_ms, 2000);
        let back = app(c.apply(deploy_cmd("etl", "r2", 4000)));
        assert_eq!((back.state, back.version), (AppState::Deployed, 2));
    }

    #[test]
    fn rejected_commands_change_nothing() {
        let mut c = Catalog::default();
        c.apply(deploy_cmd("etl", "r1", 1000));
        let before = c.clone();
        let cases = [
            (Command::StopApp { name: "nope".into(), at_ms: 1 }, Rejection::AppNotFound("nope".into())),
            (deploy_cmd("", "r9", 1), Rejection::Invalid { field: "name".into(), message: "must not be empty".into() }),
            (
                deploy_cmd("etl", "", 1),
                Rejection::Invalid { field: "request_id".into(), message: "must not be empty".into() },
            ),
            (
                Command::DeployApp {
                    name: "x".into(),
                    functions: vec![],
                    spec_json: "{}".into(),
                    request_id: "r".into(),
                    at_ms: 1,
                    schedules: vec![],
                },
                Rejection::Invalid { field: "functions".into(), message: "an app needs at least one function".into() },
            ),
        ];
        for (cmd, want) in cases {
            assert_eq!(c.apply(cmd), Response::Rejected(want));
            assert_eq!(c, before);
        }
    }

    /// A catalog with app `etl` (function `tick`, scheduled), one node with a GPU, a replica
    /// holding that GPU, a queued call and a finished one.
    fn busy_app() -> Catalog {
        use crate::{CallOutcome, Gpu, ScheduleSpec};
        let mut c = Catalog::default();
        let gpus = vec![Gpu { index: 0, model: "H100".into(), fake: true }];
        c.apply(Command::RegisterNode { id: 1, addr: "a:1".into(), cpus: 2, memory_mib: 1024, gpus, at_ms: 1 });
        let schedule = ScheduleSpec {
            function: "tick".into(),
            spec_json: "{}".into(),
            anchor_ms: 0,
            first_fire_at_ms: Some(5000),
            overlap: crate::Overlap::Allow,
            catch_up: crate::CatchUp::None,
            catch_up_window_s: 60,
        };
        let mut deploy = deploy_cmd("etl", "r1", 1000);
        if let Command::DeployApp { schedules, .. } = &mut deploy {
            schedules.push(schedule);
        }
        assert!(matches!(c.apply(deploy), Response::App(_)));
        let add = Command::AddReplica {
            id: "rp-1".into(),
            app: "etl".into(),
            function: "tick".into(),
            version: 1,
            node: 1,
            cpu: 0.5,
            memory_mib: 64,
            gpus: vec![0],
            at_ms: 1100,
        };
        assert!(matches!(c.apply(add), Response::Replica(_)));
        for id in ["fc-done", "fc-queued"] {
            let spawn = Command::SpawnCall {
                id: id.into(),
                app: "etl".into(),
                function: "tick".into(),
                input: vec![],
                request_id: None,
                at_ms: 1200,
            };
            assert!(matches!(c.apply(spawn), Response::Call(_)));
        }
        c.apply(Command::StartCall { id: "fc-done".into(), node: 1, attempt: 1, at_ms: 1300 });
        let outcome = CallOutcome::Succeeded(b"ok".to_vec());
        let finish = Command::FinishCall { id: "fc-done".into(), attempt: 1, outcome, retry_at_ms: None, at_ms: 1400 };
        assert!(matches!(c.apply(finish), Response::Call(_)));
        c
    }

    #[test]
    fn remove_takes_the_app_its_schedules_replicas_and_queued_calls() {
        let mut c = busy_app();
        assert_eq!(c.schedules.get("etl/tick").map(|s| s.function.as_str()), Some("tick"));
        let removed = app(c.apply(Command::RemoveApp { name: "etl".into(), at_ms: 2000 }));
        assert_eq!(removed.name, "etl");
        assert!(c.apps.is_empty());
        assert!(c.schedules.get("etl/tick").is_none());
        assert!(c.replicas.is_empty() && c.gpu_leases.is_empty());
        // The queued call can never run: it ends cancelled with the reason.
        let queued = &c.calls["fc-queued"];
        assert_eq!(queued.state, crate::CallState::Cancelled);
        assert_eq!(queued.error.as_deref(), Some("its app was removed"));
        // The finished call stays until retention, as it was.
        assert_eq!(c.calls["fc-done"].state, crate::CallState::Succeeded);
        // Removing it again names it; the name is free for a new version 1.
        assert_eq!(
            c.apply(Command::RemoveApp { name: "etl".into(), at_ms: 2100 }),
            Response::Rejected(Rejection::AppNotFound("etl".into()))
        );
        let again = app(c.apply(deploy_cmd("etl", "r2", 3000)));
        assert_eq!((again.version, again.state, again.deployed_at_ms), (1, AppState::Deployed, 3000));
    }

    #[test]
    fn a_stopped_app_refuses_calls_by_name_and_runs_again_when_redeployed() {
        let mut c = Catalog::default();
        c.apply(deploy_cmd("etl", "r1", 1000));
        c.apply(Command::StopApp { name: "etl".into(), at_ms: 2000 });
        assert_eq!(c.check_function("etl", "tick"), Err(Rejection::AppStopped("etl".into())));
        app(c.apply(deploy_cmd("etl", "r2", 3000)));
        assert_eq!(c.check_function("etl", "tick"), Ok(()));
    }

    #[test]
    fn pending_reason_is_set_once_per_change_cleared_and_reset_by_deploy() {
        let mut c = Catalog::default();
        c.apply(deploy_cmd("etl", "r1", 1000));
        let set = |reason: Option<&str>, version, at_ms| Command::SetPending {
            app: "etl".into(),
            function: "tick".into(),
            version,
            reason: reason.map(str::to_string),
            at_ms,
        };
        let full = "no node has 1 free CPU: node 1 has 0.0 of 8.0 left";
        let a = app(c.apply(set(Some(full), 1, 1100)));
        assert_eq!(a.pending["tick"], Pending { reason: full.into(), since_ms: 1100 });
        // The same reason again keeps its first time; a new one starts its own.
        assert_eq!(app(c.apply(set(Some(full), 1, 1200))).pending["tick"].since_ms, 1100);
        assert_eq!(app(c.apply(set(Some("other"), 1, 1300))).pending["tick"].since_ms, 1300);
        assert!(app(c.apply(set(None, 1, 1400))).pending.is_empty());
        c.apply(set(Some(full), 1, 1500));
        // A reason for another version, another function or a stopped app is refused.
        assert!(matches!(c.apply(set(Some(full), 2, 1600)), Response::Rejected(Rejection::Stale(_))));
        let ghost =
            Command::SetPending { app: "etl".into(), function: "nope".into(), version: 1, reason: None, at_ms: 1600 };
        assert!(matches!(c.apply(ghost), Response::Rejected(Rejection::FunctionNotFound(_))));
        // A new version starts with no reason.
        assert!(app(c.apply(deploy_cmd("etl", "r2", 1700))).pending.is_empty());
        c.apply(set(Some(full), 2, 1800));
        assert!(app(c.apply(Command::StopApp { name: "etl".into(), at_ms: 1900 })).pending.is_empty());
        assert!(matches!(c.apply(set(Some(full), 2, 2000)), Response::Rejected(Rejection::Stale(_))));
    }
}
