//! The worker's health endpoints.
//!
//! - `GET /health`: liveness; 200 while the process serves requests.
//! - `GET /health/ready`: readiness; 200 when the database answers and the
//!   worker is taking work, 503 (with the reason) when the database is
//!   unreachable or the worker is draining for shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Json;
use axum::routing::get;
use paid_store_postgres::PgStore;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// What the endpoints report on.
#[derive(Debug, Clone)]
pub struct HealthState {
    /// The worker's lease owner name.
    pub worker_id: String,
    /// The database.
    pub store: PgStore,
    /// Set once shutdown begins.
    pub draining: Arc<AtomicBool>,
}

async fn live(State(state): State<HealthState>) -> Json<Value> {
    Json(json!({ "status": "ok", "worker_id": state.worker_id }))
}

async fn ready(State(state): State<HealthState>) -> (StatusCode, Json<Value>) {
    if state.draining.load(Ordering::SeqCst) {
        let body = json!({ "status": "draining", "worker_id": state.worker_id });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    match tokio::time::timeout(Duration::from_secs(3), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "status": "ready", "worker_id": state.worker_id, "store": "ok" }))),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "worker_id": state.worker_id, "store": e.to_string() })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "worker_id": state.worker_id, "store": "ping timed out after 3s" })),
        ),
    }
}

/// The routes.
pub fn router(state: HealthState) -> Router {
    Router::new().route("/health", get(live)).route("/health/ready", get(ready)).with_state(state)
}

/// Serves the endpoints on `addr` until `stop` is cancelled. Returns the
/// bound address (useful with port 0) once listening.
pub async fn serve(
    addr: SocketAddr,
    state: HealthState,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for health checks: {e}"))?;
    let bound = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "health server stopped");
        }
    });
    Ok((bound, task))
}
