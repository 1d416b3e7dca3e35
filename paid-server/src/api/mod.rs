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
//! `/metrics` is unauthenticated on the API listener by default, like the
//! health endpoints (the API binds loopback by default). `api.metrics_auth`
//! puts it behind the bearer token; `api.metrics_bind` moves it to a
//! listener of its own ([`MetricsListener`]) that serves nothing else, and
//! off the API listener. With `api.public_url` set, a request on the API
//! listener whose `Host` names another host gets 421.
//! Files named in requests (`/keys/rotate`) must be inside `data_dir`.

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
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
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
use crate::config::ApiConfig;
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
    /// `[api]`: where `/metrics` is served and whether it needs the token,
    /// and the public URL `Host` is checked against.
    pub api: ApiConfig,
    /// The data directory: the only place a request may name a file in.
    pub data_dir: PathBuf,
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
    let app = Router::new().route("/health", get(health)).route("/health/ready", get(ready));
    with_metrics(app, &state)
        .nest("/api", api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), host_check))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// `app` with `/metrics`, unless `api.metrics_bind` serves it elsewhere;
/// behind the bearer token with `api.metrics_auth`.
fn with_metrics(app: Router<Arc<ApiState>>, state: &Arc<ApiState>) -> Router<Arc<ApiState>> {
    if state.api.metrics_bind.is_some() { app } else { app.route("/metrics", metrics_route(state)) }
}

fn metrics_route(state: &Arc<ApiState>) -> axum::routing::MethodRouter<Arc<ApiState>> {
    let route = get(metrics);
    if state.api.metrics_auth { route.route_layer(middleware::from_fn_with_state(state.clone(), auth)) } else { route }
}

/// The router of `api.metrics_bind`'s listener: `/metrics` (behind the
/// bearer token with `api.metrics_auth`) and nothing else.
pub fn metrics_router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", metrics_route(&state))
        .fallback(not_found)
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// The listener of `api.metrics_bind`, bound, with its router.
pub struct MetricsListener {
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// Where it is bound.
    pub addr: SocketAddr,
    /// [`metrics_router`].
    pub app: Router,
}

impl std::fmt::Debug for MetricsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsListener").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl MetricsListener {
    /// Binds `api.metrics_bind`, when set, for [`metrics_router`].
    pub async fn bind(state: &Arc<ApiState>) -> std::io::Result<Option<Self>> {
        let Some(bind) = state.api.metrics_bind else { return Ok(None) };
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        Ok(Some(Self { listener, addr, app: metrics_router(state.clone()) }))
    }
}

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        .then(|| s.to_string())
}

/// Only `/health`, `/health/ready` and `/metrics` (a worker without the
/// API; `/metrics` as [`router`] serves it).
pub fn health_router(state: Arc<ApiState>) -> Router {
    let app = Router::new().route("/health", get(health)).route("/health/ready", get(ready));
    with_metrics(app, &state)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), host_check))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// With `api.public_url` set: a request whose `Host` names another host
/// (or port) than the URL's gets `421 Misdirected Request`, and one without
/// a `Host` `400`. A `Host` that is an IP address is let through: the CLI
/// and probes address `api.bind` by IP, and a DNS-rebinding page always
/// sends a name.
pub(crate) async fn host_check(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let Some(public) = &state.api.public_url else { return next.run(req).await };
    let given = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(given) = given else {
        return ApiError::new(StatusCode::BAD_REQUEST, "missing_host", "the request has no Host header")
            .into_response();
    };
    if host_matches(public, &given) {
        return next.run(req).await;
    }
    let want = match (public.host_str(), public.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (h, None) => h.unwrap_or_default().to_string(),
        (None, Some(_)) => String::new(),
    };
    tracing::warn!(host = %given.chars().take(100).collect::<String>(), "refused a request for another host");
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected_request",
        format!("this server answers for {want} (api.public_url), not for the Host this request names"),
    )
    .into_response()
}

/// Whether the `Host` value `given` names `public`'s host and port (the
/// scheme's default port when either leaves it out), or is an IP address.
fn host_matches(public: &reqwest::Url, given: &str) -> bool {
    let (host, port) = match given.rsplit_once(':') {
        // `[v6]:port`, or `name:port` (a bare IPv6 address has more colons).
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return false,
        },
        _ => (given, None),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let Some(want) = public.host_str() else { return false };
    let same_host = bare.trim_end_matches('.').eq_ignore_ascii_case(want.trim_end_matches('.'));
    same_host && port.or_else(|| public.port_or_known_default()) == public.port_or_known_default()
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
