//! The HTTP API (axum) that the CLI talks to, plus `/metrics`, `/health`
//! and `/health/ready`.
//!
//! Every `/api/v1` answer is JSON: `{"data": …, "meta": {"request_id",
//! "timestamp"}}` on success, and the one error shape
//! `{"error": {"code", "message", "details"}, "meta": {"request_id"}}`
//! otherwise. The request id is also in the `x-request-id` header (an
//! incoming one is kept when it is sane). `/api` needs
//! `Authorization: Bearer <token>`; without it every path, existing or not,
//! answers the same 401, so nothing is revealed. Bodies over the limit get
//! 413 in the error shape.

//!
//! One module per resource: [`projects`], [`runs`], [`costs`], [`prompts`],
//! [`secrets`]; [`health`] holds `/health`, `/metrics` and `/status`;
//! [`error`] the envelope and the one error shape.

pub mod costs;
pub mod error;
pub mod health;
pub mod projects;
pub mod prompts;
pub mod runs;
pub mod secrets;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use paid_core::Store;
use paid_core::engine::Engine;
use paid_core::ports::learning::LearningStore;
use prometheus_client::registry::Registry;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::Instrument;

use self::costs::*;
use self::error::{ApiError, REQUEST_ID};
use self::health::*;
use self::projects::*;
use self::prompts::*;
use self::runs::*;
use self::secrets::*;
use crate::disk::DiskGuard;
use crate::health::Readiness;
use crate::projects::ProjectDirectory;
use crate::vault::Vault;

/// Everything the handlers use.
pub struct ApiState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The engine (manual triggers, cancellation).
    pub engine: Engine,
    /// Encrypted secrets.
    pub vault: Arc<Vault>,
    /// The metrics registry `/metrics` encodes.
    pub registry: Arc<Registry>,
    /// SHA-256 of the bearer token (`None`: the `/api` routes are not served).
    pub token_digest: Option<[u8; 32]>,
    /// Wakes idle workers after a manual trigger.
    pub wake: Arc<Notify>,
    /// `/health/ready`.
    pub readiness: Arc<Readiness>,
    /// Declared projects and their extra settings.
    pub projects: Arc<ProjectDirectory>,
    /// The disk guard.
    pub disk: Arc<DiskGuard>,
    /// The GitHub API base URL tokens are checked against.
    pub github_api: String,
    /// Agent kinds the engine has.
    pub agent_kinds: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// This daemon's worker id.
    pub worker_id: String,
    /// Prompts and experiments, when the store has learning support.
    pub learning: Option<Arc<dyn LearningStore>>,
    /// The metering proxy, when started: projects' budgets are set on it.
    pub proxy: Option<paid_llm::proxy::Proxy>,
    /// The forge token, re-read when a new one is stored.
    pub forge_token: Arc<crate::forge_token::ForgeToken>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("worker_id", &self.worker_id).finish_non_exhaustive()
    }
}

/// SHA-256 of a token, for constant-size comparison.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The router.
pub fn router(state: Arc<ApiState>) -> Router {
    let max_body = state.max_body_bytes;
    let api = Router::new()
        .route("/status", get(status))
        .route("/projects", get(list_projects).post(add_project))
        .route("/projects/{owner}/{name}", get(show_project).delete(remove_project))
        .route("/runs", get(list_runs).post(trigger_run))
        .route("/runs/{id}", get(show_run))
        .route("/runs/{id}/logs", get(run_logs))
        .route("/runs/{id}/cancel", post(cancel_run))
        .route("/runs/{id}/candidates", get(run_candidates))
        .route("/runs/{id}/pick", post(pick_candidate))
        .route("/costs", get(costs))
        .route("/prompts", get(list_prompts))
        .route("/prompts/{slug}", get(show_prompt))
        .route("/experiments", get(list_experiments))
        .route("/experiments/{id}", get(show_experiment))
        .route("/secrets", get(list_secrets))
        .route("/secrets/{name}", put(put_secret))
        .route("/keys/rotate", post(rotate_key))
        .method_not_allowed_fallback(method_not_allowed);
    // Authentication covers all of `/api`, unknown paths included.
    let api = Router::new()
        .nest("/v1", api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(max_body));
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .nest("/api", api)
        .fallback(not_found)
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        .then(|| s.to_string())
}

/// Only `/health`, `/health/ready` and `/metrics` (a worker without the API).
pub fn health_router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

async fn request_context(req: Request, next: Next) -> Response {
    let id =
        req.headers().get("x-request-id").and_then(sane_request_id).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!("request", trace_id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req).instrument(span.clone())).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    span.in_scope(|| tracing::debug!(status = resp.status().as_u16(), "request served"));
    resp
}

async fn auth(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let given =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compare digests: equal length, and no early exit on the token's bytes.
    let ok = match (given, &state.token_digest) {
        (Some(t), Some(want)) => {
            let d = digest(t.trim());
            d.iter().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        }
        _ => false,
    };
    if !ok {
        let mut resp =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "authentication required").into_response();
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    next.run(req).await
}

async fn body_limit(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {} bytes", state.max_body_bytes),
        )
        .details(json!({ "limit_bytes": state.max_body_bytes }))
        .into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this resource")
}
