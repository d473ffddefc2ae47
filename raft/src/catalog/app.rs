//! Apps: deploy (create or replace with a new version) and stop.

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
}
