//! The node's small HTTP endpoint (`--http`), for load balancers, orchestrators and people
//! with curl: `GET /healthz` answers 200 when this node knows a leader (it can serve
//! requests) and 503 when it does not; `GET /status` is this node's view of the group as
//! JSON (the same figures as `flotilla cluster status` answered by this node, plus the
//! Scheduler's counts and commit lateness while this node led).

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::schedule::Stats;

async fn healthz(State((cluster, _)): State<(Cluster, Stats)>) -> (StatusCode, &'static str) {
    match cluster.group().leader {
        Some(_) => (StatusCode::OK, "ok\n"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no leader\n"),
    }
}

async fn status(State((cluster, fires)): State<(Cluster, Stats)>) -> Json<serde_json::Value> {
    let g = cluster.group();
    Json(json!({
        "node": cluster.id,
        "addr": cluster.addr,
        "leader": g.leader,
        "term": g.term,
        "voters": g.voters,
        "learners": g.learners,
        "last_log_index": g.last_log_index,
        "last_applied": g.last_applied,
        "snapshot_index": g.snapshot_index,
        "purged_index": g.purged_index,
        "scheduler": fires.report(),
    }))
}

/// Binds `addr`; a port already taken is a start-up error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("http {addr}: {e}"))
}

/// Serves on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, cluster: Cluster, fires: Stats, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new().route("/healthz", get(healthz)).route("/status", get(status)).with_state((cluster, fires));
    let served = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    if let Err(e) = served.await {
        tracing::error!(error = %e, "HTTP endpoint failed");
    }
}
