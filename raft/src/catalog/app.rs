//! Apps: deploy (create or replace with a new version) and stop.

use std::collections::BTreeMap;

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
    /// Request id of the deploy that created this version, to recognise a client retry.
    pub last_request_id: String,
}

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
        Some(app) if app.last_request_id == request_id => Response::App(app.clone()),
        Some(app) => {
            app.version += 1;
            app.state = AppState::Deployed;
            app.functions = functions;
            app.spec_json = spec_json;
            app.updated_at_ms = at_ms;
            app.last_request_id = request_id;
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
                last_request_id: request_id,
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
