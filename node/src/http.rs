//! The node's small HTTP endpoint (`--http`), for load balancers, orchestrators, Prometheus
//! and people with curl:
//!
//! - `GET /healthz` answers 200 when this node knows a leader (it can serve requests) and 503
//!   when it does not. Always open: a load balancer's probe carries no token.
//! - `GET /status` is this node's view of the group as JSON (the same figures as
//!   `flotilla cluster status` answered by this node, plus the Scheduler's counts and commit
//!   lateness while this node led).
//! - `GET /metrics` is every series of [`crate::metrics`] in the Prometheus text format.
//! - `GET /` is the dashboard page and `GET /dashboard.js` its script; the page polls
//!   `GET /api/dashboard`, this node's view of the cluster as JSON ([`crate::dashboard`]).
//!
//! When the node requires API tokens, `/status`, `/metrics` and `/api/dashboard` do too, as
//! `Authorization: Bearer TOKEN`, checked like a gRPC call's (`auth::check`); without one
//! they answer 401. `/healthz` and the dashboard's page and script (which hold no data) are
//! always served.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::schedule::Stats;

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    cluster: Cluster,
    fires: Stats,
    /// Whether `/status` and `/metrics` need a token.
    auth: bool,
}

async fn healthz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    match s.cluster.group().leader {
        Some(_) => (StatusCode::OK, "ok\n"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no leader\n"),
    }
}

async fn status(State(s): State<Shared>) -> Json<serde_json::Value> {
    let g = s.cluster.group();
    Json(json!({
        "node": s.cluster.id,
        "addr": s.cluster.addr,
        "leader": g.leader,
        "term": g.term,
        "voters": g.voters,
        "learners": g.learners,
        "last_log_index": g.last_log_index,
        "last_applied": g.last_applied,
        "snapshot_index": g.snapshot_index,
        "purged_index": g.purged_index,
        "scheduler": s.fires.report(),
    }))
}

async fn dashboard_view(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(crate::dashboard::view(&s.cluster))
}

async fn dashboard_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::dashboard::INDEX_HTML).into_response()
}

async fn dashboard_script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], crate::dashboard::APP_JS).into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    let text = s.cluster.metrics.render(&s.cluster);
    ([(header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)], text).into_response()
}

/// Refuses a request without an accepted token (when the node requires tokens) with 401.
async fn authenticated(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if s.auth {
        let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Err(status) = crate::auth::check(&s.cluster, presented).await {
            let body = format!("unauthenticated: {}\n", status.message());
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
    }
    next.run(req).await
}

/// Binds `addr`; a port already taken is a start-up error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("http {addr}: {e}"))
}

/// Serves on `listener` until `shutdown` turns true; `auth` as the node's gRPC services.
pub async fn serve(
    listener: TcpListener,
    cluster: Cluster,
    fires: Stats,
    auth: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Shared { cluster, fires, auth };
    let guarded = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/api/dashboard", get(dashboard_view))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authenticated));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/", get(dashboard_page))
        .route("/dashboard.js", get(dashboard_script))
        .merge(guarded)
        .with_state(shared);
    let served = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    if let Err(e) = served.await {
        tracing::error!(error = %e, "HTTP endpoint failed");
    }
}
