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

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Datelike;
use paid_core::engine::Engine;
use paid_core::learning::ExperimentId;
use paid_core::ports::learning::{ExperimentFilter, LearningStore};
use paid_core::{Error as CoreError, ProjectId, RepoRef, Run, RunFilter, RunId, RunState, Store, UsageRecord};
use prometheus_client::registry::Registry;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::Instrument;

use super::disk::DiskGuard;
use super::health::Readiness;
use super::projects::{ProjectDirectory, by_repo};
use super::vault::{Vault, VaultError};

tokio::task_local! {
    static REQUEST_ID: String;
}

fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

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
    /// SHA-256 of the bearer token.
    pub token_digest: [u8; 32],
    /// Wakes idle workers after a manual trigger.
    pub wake: Arc<Notify>,
    /// `/health/ready`.
    pub readiness: Arc<Readiness>,
    /// Declared projects and their extra settings.
    pub projects: Arc<ProjectDirectory>,
    /// The disk guard.
    pub disk: Arc<DiskGuard>,
    /// Checks forge tokens: `(http client, API base URL)`.
    pub github: (reqwest::Client, String),
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
    pub forge_token: Arc<super::forge_token::ForgeToken>,
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

/// An error in the one shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    /// An error with `status`, a machine `code` and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: json!({}) }
    }

    fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details },
            "meta": { "request_id": request_id() },
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let (status, code) = match &e {
            CoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            CoreError::AlreadyExists { .. } => (StatusCode::CONFLICT, "conflict"),
            CoreError::IllegalTransition { .. } => (StatusCode::CONFLICT, "conflict"),
            CoreError::Untrusted { .. } => (StatusCode::FORBIDDEN, "untrusted_author"),
            CoreError::InvalidInput { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            CoreError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Unsupported(_) => ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_supported", e.to_string()),
            VaultError::NoKey => ApiError::new(StatusCode::CONFLICT, "no_master_key", e.to_string()),
            VaultError::BadName(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string()),
            VaultError::Crypto(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "decryption_failed", e.to_string())
            }
            VaultError::Store(e) => e.into(),
            VaultError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// A success envelope.
fn ok<T: Serialize>(status: StatusCode, data: T) -> ApiResult {
    let body = json!({
        "data": data,
        "meta": { "request_id": request_id(), "timestamp": chrono::Utc::now() },
    });
    Ok((status, Json(body)).into_response())
}

/// JSON bodies, with rejections (too large, malformed) in the error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(status, "payload_too_large", "the request body is larger than this API accepts");
    }
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_input",
        _ => "bad_request",
    };
    ApiError::new(status, code, r.body_text())
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
    let ok = given.is_some_and(|t| {
        let d = digest(t.trim());
        d.iter().zip(state.token_digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
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

async fn health() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    let report = state.readiness.report().await;
    let status = if report.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

/// `/metrics`: OpenMetrics when the scraper asks for it (Prometheus does),
/// the classic text format (0.0.4) otherwise.
async fn metrics(State(state): State<Arc<ApiState>>, headers: axum::http::HeaderMap) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("encoding metrics: {e}"))
            .into_response();
    }
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], to_classic_text(&text)).into_response()
    }
}

/// OpenMetrics text to the classic Prometheus text format: counter families
/// are named with their `_total` suffix in `HELP`/`TYPE` (as their samples
/// are), and `# EOF` goes.
pub fn to_classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

async fn status(State(state): State<Arc<ApiState>>) -> ApiResult {
    ok(
        StatusCode::OK,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "worker_id": state.worker_id,
            "accepting_runs": state.disk.accepting_runs(),
            "disk": state.disk.last().await,
            "agents": state.agent_kinds,
            "master_key_id": state.vault.key_id().await,
        }),
    )
}

// ---- projects ---------------------------------------------------------------

#[derive(Debug, Serialize)]
struct ProjectView {
    #[serde(flatten)]
    project: paid_core::Project,
    source: &'static str,
    #[serde(flatten)]
    extras: super::projects::ProjectExtras,
}

fn view(state: &ApiState, p: paid_core::Project) -> ProjectView {
    let source = if state.projects.is_declared(&p.repo.to_string()) { "config" } else { "api" };
    let extras = state.projects.extras(p.id);
    ProjectView { project: p, source, extras }
}

async fn list_projects(State(state): State<Arc<ApiState>>) -> ApiResult {
    let projects: Vec<ProjectView> = state.store.projects().await?.into_iter().map(|p| view(&state, p)).collect();
    ok(StatusCode::OK, projects)
}

async fn find_project(state: &ApiState, repo: &str) -> Result<paid_core::Project, ApiError> {
    by_repo(state.store.as_ref(), repo).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "project_not_found",
            format!("no project for {repo}; add it with `paid project add {repo}` or in paid.toml"),
        )
        .details(json!({ "repo": repo }))
    })
}

async fn show_project(State(state): State<Arc<ApiState>>, Path((owner, name)): Path<(String, String)>) -> ApiResult {
    let p = find_project(&state, &format!("{owner}/{name}")).await?;
    ok(StatusCode::OK, view(&state, p))
}

/// `POST /api/v1/projects`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    repo: String,
    clone_url: Option<String>,
    default_branch: Option<String>,
    trigger_labels: Option<Vec<String>>,
    #[serde(default)]
    allowed_authors: Vec<String>,
    #[serde(default)]
    verify: Vec<String>,
    #[serde(default)]
    allowed_paths: Vec<String>,
    image: Option<String>,
    agent: Option<String>,
    max_concurrent_runs: Option<u32>,
    budget_usd_per_run: Option<f64>,
    budget_usd_per_month: Option<f64>,
}

async fn add_project(State(state): State<Arc<ApiState>>, ApiJson(req): ApiJson<NewProject>) -> ApiResult {
    let repo = RepoRef::parse(&req.repo)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string()))?;
    if by_repo(state.store.as_ref(), &repo.to_string()).await?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("{repo} is already a project")));
    }
    let now = chrono::Utc::now();
    let mut p = paid_core::Project::new(
        ProjectId(uuid::Uuid::now_v7()),
        repo.clone(),
        req.clone_url.unwrap_or_else(|| format!("https://github.com/{}/{}.git", repo.owner, repo.name)),
        now,
    );
    if let Some(b) = req.default_branch {
        p.default_branch = b;
    }
    if let Some(l) = req.trigger_labels {
        p.trigger_labels = l;
    }
    p.allowed_authors = req.allowed_authors;
    p.verify = req.verify;
    p.allowed_paths = req.allowed_paths;
    if let Some(i) = req.image {
        p.image = i;
    }
    if let Some(a) = req.agent {
        p.agent = a;
    }
    if let Some(n) = req.max_concurrent_runs {
        p.max_concurrent_runs = n;
    }
    if p.allowed_authors.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "allowed_authors is empty, so no issue could ever trigger a run",
        ));
    }
    if !state.agent_kinds.contains(&p.agent) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("no agent {:?}; known: {}", p.agent, state.agent_kinds.join(", ")),
        ));
    }
    for (key, v) in [("budget_usd_per_run", req.budget_usd_per_run), ("budget_usd_per_month", req.budget_usd_per_month)]
    {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                format!("{key} must be a positive number of USD"),
            ));
        }
    }
    p.validate()?;
    paid_core::policy::ForbiddenPaths::new(&p.allowed_paths)?;
    // Repository access, with the stored token when there is one.
    if let Some(token) = state.vault.get("github").await.ok().flatten() {
        let (client, api) = &state.github;
        super::github::check_token(client, api, &token, std::slice::from_ref(&repo))
            .await
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "repository_unreachable", e.0))?;
    }
    state.store.put_project(&p).await?;
    let extras = super::projects::ProjectExtras {
        model: None,
        budget_usd_per_run: req.budget_usd_per_run,
        budget_usd_per_month: req.budget_usd_per_month,
    };
    if extras != super::projects::ProjectExtras::default() {
        super::projects::save_api_extras(state.store.as_ref(), p.id, &extras).await?;
    }
    if let Some(proxy) = &state.proxy {
        super::proxy::register_budget(proxy, p.id, &extras);
    }
    state.projects.set_extras(p.id, Some(extras));
    ok(StatusCode::CREATED, view(&state, p))
}

async fn remove_project(State(state): State<Arc<ApiState>>, Path((owner, name)): Path<(String, String)>) -> ApiResult {
    let repo = format!("{owner}/{name}");
    let p = find_project(&state, &repo).await?;
    if state.projects.is_declared(&p.repo.to_string()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "declared_in_config",
            format!("{repo} is declared in paid.toml; remove it there (it would come back at the next start)"),
        ));
    }
    state.store.delete_project(p.id).await.map_err(|e| match e {
        CoreError::InvalidInput { message, .. } => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        e => e.into(),
    })?;
    if let Some(proxy) = &state.proxy {
        proxy.clear_project_budget(p.id);
    }
    state.projects.set_extras(p.id, None);
    ok(StatusCode::OK, json!({ "removed": repo, "id": p.id }))
}

// ---- runs -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct RunsQuery {
    project: Option<String>,
    #[serde(default)]
    active: bool,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct RunSummary {
    #[serde(flatten)]
    run: Run,
    repo: String,
}

async fn repo_names(store: &dyn Store) -> Result<BTreeMap<ProjectId, String>, ApiError> {
    Ok(store.projects().await?.into_iter().map(|p| (p.id, p.repo.to_string())).collect())
}

async fn list_runs(State(state): State<Arc<ApiState>>, Query(q): Query<RunsQuery>) -> ApiResult {
    let project_id = match &q.project {
        Some(repo) => Some(find_project(&state, repo).await?.id),
        None => None,
    };
    let names = repo_names(state.store.as_ref()).await?;
    let runs = state
        .store
        .runs(&RunFilter {
            project_id,
            active_only: q.active,
            limit: Some(q.limit.unwrap_or(50).min(1000)),
            ..Default::default()
        })
        .await?;
    let runs: Vec<RunSummary> = runs
        .into_iter()
        .map(|run| RunSummary { repo: names.get(&run.project_id).cloned().unwrap_or_default(), run })
        .collect();
    ok(StatusCode::OK, runs)
}

/// `POST /api/v1/runs`: an issue URL, or a repository and issue number;
/// with `compare` (`{"models": [...], "rule": "best" | "human",
/// "ranking": [...]}`), a comparison run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRun {
    issue_url: Option<String>,
    repo: Option<String>,
    issue: Option<u64>,
    compare: Option<super::compare::CompareRequest>,
}

async fn trigger_run(State(state): State<Arc<ApiState>>, ApiJson(req): ApiJson<TriggerRun>) -> ApiResult {
    let compare = match &req.compare {
        None => None,
        Some(c) => Some(c.to_spec().map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", format!("compare.{e}"))
                .details(json!({ "field": format!("compare.{}", e.field) }))
        })?),
    };
    let (repo, number) = match (req.issue_url, req.repo, req.issue) {
        (Some(url), None, None) => super::github::parse_issue_ref(&url).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                format!("{url:?} is not an issue URL like https://github.com/owner/repo/issues/12"),
            )
        })?,
        (None, Some(repo), Some(n)) => (
            RepoRef::parse(&repo)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string()))?,
            n,
        ),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "give issue_url, or repo and issue",
            ));
        }
    };
    if !state.disk.accepting_runs() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "disk_emergency",
            "the disk is above its emergency threshold; no new runs until space is back",
        ));
    }
    let project = find_project(&state, &repo.to_string()).await?;
    let run = match compare {
        Some(spec) => state.engine.enqueue_compare(project.id, number, spec).await?,
        None => state.engine.enqueue(project.id, number).await?,
    };
    state.wake.notify_waiters();
    ok(StatusCode::CREATED, RunSummary { run, repo: project.repo.to_string() })
}

fn parse_run_id(id: &str) -> Result<RunId, ApiError> {
    RunId::parse(id).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("run {id} not found")))
}

/// What a run cost, from its usage records.
#[derive(Debug, Default, Serialize)]
pub struct CostView {
    /// Sum of priced records, USD.
    pub usd: f64,
    /// The same in micro-USD.
    pub micros: i64,
    /// Usage records.
    pub records: usize,
    /// Records without a price (their cost is unknown, not zero).
    pub unpriced_records: usize,
    /// Tokens by direction.
    pub tokens: BTreeMap<&'static str, u64>,
}

/// Sums usage records.
pub fn cost_of(usage: &[UsageRecord]) -> CostView {
    let mut c = CostView { records: usage.len(), ..Default::default() };
    for u in usage {
        match u.cost_micros {
            Some(m) => c.micros += m,
            None => c.unpriced_records += 1,
        }
        for (k, v) in [
            ("input", u.usage.input),
            ("cache_read", u.usage.cache_read),
            ("cache_write", u.usage.cache_write),
            ("output", u.usage.output),
            ("reasoning", u.usage.reasoning),
        ] {
            *c.tokens.entry(k).or_default() += v;
        }
    }
    c.usd = c.micros as f64 / 1e6;
    c
}

async fn show_run(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_run_id(&id)?;
    let run = state.store.run(id).await?;
    let project = state.store.project(run.project_id).await?;
    let issue = state.store.issue(run.project_id, run.issue_number).await.ok();
    let steps = state.store.steps(id).await?;
    let usage = state.store.usage(id).await?;
    let decision = state.store.decision(id).await?;
    let logs = state.store.logs(id, 0).await?;
    let prompt_version = state.engine.prompt_version(id).await?;
    let candidates = state.engine.candidates(id).await?;
    let mut body = json!({
        "run": run,
        "repo": project.repo.to_string(),
        "issue": issue.map(|i| json!({ "number": i.number, "title": i.title, "url": i.url, "author": i.author })),
        "steps": steps,
        "cost": cost_of(&usage),
        "usage": usage,
        "model_decision": decision,
        "prompt_version": prompt_version,
        "log_chunks": logs.len(),
    });
    if !candidates.is_empty() {
        body["candidates"] = json!(candidates);
    }
    ok(StatusCode::OK, body)
}

/// `GET /api/v1/runs/{id}/candidates`: a comparison run's side-by-side
/// reports, empty until its candidates are done.
async fn run_candidates(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_run_id(&id)?;
    let run = state.store.run(id).await?;
    let candidates = state.engine.candidates(id).await?;
    ok(
        StatusCode::OK,
        json!({
            "run_id": id,
            "state": run.state,
            "awaiting_choice": run.state == RunState::AwaitingChoice,
            "candidates": candidates,
        }),
    )
}

/// `POST /api/v1/runs/{id}/pick`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickBody {
    /// A candidate's name (`c2-model`) or model.
    candidate: String,
}

/// `POST /api/v1/runs/{id}/pick`: names the winner of a run awaiting a
/// choice. 409 when the run is not awaiting one, 422 for an unknown (or
/// unfinished) candidate.
async fn pick_candidate(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PickBody>,
) -> ApiResult {
    let id = parse_run_id(&id)?;
    let run = state.store.run(id).await?;
    let not_awaiting = |state: RunState| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_awaiting_choice",
            format!("run {id} is {state}, not awaiting_choice; only a run awaiting a choice can be picked for"),
        )
        .details(json!({ "state": state }))
    };
    if run.state != RunState::AwaitingChoice {
        return Err(not_awaiting(run.state));
    }
    let run = match state.engine.pick(id, body.candidate.trim()).await {
        Ok(run) => run,
        // Picked or cancelled meanwhile.
        Err(CoreError::InvalidInput { what, .. }) if what == "run.state" => {
            return Err(not_awaiting(state.store.run(id).await?.state));
        }
        Err(CoreError::InvalidInput { what, message }) if what == "run.pick" => {
            return Err(ApiError::new(StatusCode::CONFLICT, "already_picked", message));
        }
        Err(CoreError::InvalidInput { what, message }) if what == "candidate" => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_candidate", message)
                .details(json!({ "candidate": body.candidate })));
        }
        Err(e) => return Err(e.into()),
    };
    state.wake.notify_waiters();
    let repo = state.store.project(run.project_id).await?.repo.to_string();
    ok(StatusCode::OK, RunSummary { run, repo })
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    after: u64,
}

async fn run_logs(State(state): State<Arc<ApiState>>, Path(id): Path<String>, Query(q): Query<LogsQuery>) -> ApiResult {
    let id = parse_run_id(&id)?;
    let run = state.store.run(id).await?;
    let chunks = state.store.logs(id, q.after).await?;
    ok(StatusCode::OK, json!({ "run_state": run.state, "finished": run.state.is_terminal(), "chunks": chunks }))
}

async fn cancel_run(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_run_id(&id)?;
    let current = state.store.run(id).await?;
    if current.state.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("run {id} already ended {}", current.state),
        ));
    }
    let run = state.engine.cancel(id).await?;
    ok(StatusCode::ACCEPTED, json!({ "run": run, "cancel_requested": true }))
}

// ---- costs ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct CostsQuery {
    project: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct CostRow {
    repo: String,
    model: String,
    period: String,
    usd: f64,
    micros: i64,
    requests: usize,
    unpriced_requests: usize,
    tokens: u64,
}

async fn costs(State(state): State<Arc<ApiState>>, Query(q): Query<CostsQuery>) -> ApiResult {
    let project_id = match &q.project {
        Some(repo) => Some(find_project(&state, repo).await?.id),
        None => None,
    };
    let names = repo_names(state.store.as_ref()).await?;
    let runs = state.store.runs(&RunFilter { project_id, ..Default::default() }).await?;
    let mut day: BTreeMap<(String, String, String), CostRow> = BTreeMap::new();
    let mut month: BTreeMap<(String, String, String), CostRow> = BTreeMap::new();
    let mut total = CostRow { repo: "*".into(), model: "*".into(), period: "all".into(), ..Default::default() };
    for run in &runs {
        let repo = names.get(&run.project_id).cloned().unwrap_or_default();
        for u in state.store.usage(run.id).await? {
            let d = u.at.format("%Y-%m-%d").to_string();
            let m = format!("{:04}-{:02}", u.at.year(), u.at.month());
            for (map, period) in [(&mut day, d), (&mut month, m)] {
                let row = map.entry((period.clone(), repo.clone(), u.model.clone())).or_insert_with(|| CostRow {
                    repo: repo.clone(),
                    model: u.model.clone(),
                    period,
                    ..Default::default()
                });
                add(row, &u);
            }
            add(&mut total, &u);
        }
    }
    fn add(row: &mut CostRow, u: &UsageRecord) {
        row.requests += 1;
        match u.cost_micros {
            Some(m) => row.micros += m,
            None => row.unpriced_requests += 1,
        }
        row.usd = row.micros as f64 / 1e6;
        row.tokens += u.usage.total();
    }
    ok(
        StatusCode::OK,
        json!({
            "by_day": day.into_values().collect::<Vec<_>>(),
            "by_month": month.into_values().collect::<Vec<_>>(),
            "total": total,
        }),
    )
}

// ---- learning -----------------------------------------------------------------

fn learning(state: &ApiState) -> Result<&Arc<dyn LearningStore>, ApiError> {
    state.learning.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "prompts and experiments are not available: this store has no learning support (SQLite and PostgreSQL do)",
        )
    })
}

async fn list_prompts(State(state): State<Arc<ApiState>>) -> ApiResult {
    ok(StatusCode::OK, learning(&state)?.prompts().await?)
}

async fn show_prompt(State(state): State<Arc<ApiState>>, Path(slug): Path<String>) -> ApiResult {
    let store = learning(&state)?;
    let prompt = store.prompt(&slug).await?;
    let versions = store.versions(&slug).await?;
    ok(StatusCode::OK, json!({ "prompt": prompt, "versions": versions }))
}

#[derive(Debug, Deserialize)]
struct ExperimentsQuery {
    subject: Option<String>,
    #[serde(default)]
    active: bool,
}

async fn list_experiments(State(state): State<Arc<ApiState>>, Query(q): Query<ExperimentsQuery>) -> ApiResult {
    let filter = ExperimentFilter { subject: q.subject, active_only: q.active };
    ok(StatusCode::OK, learning(&state)?.experiments(&filter).await?)
}

async fn show_experiment(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult {
    let store = learning(&state)?;
    let id = ExperimentId::parse(&id)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("experiment {id} not found")))?;
    let experiment = store.experiment(id).await?;
    let samples = store.samples(id).await?;
    ok(StatusCode::OK, json!({ "experiment": experiment, "samples": samples }))
}

// ---- secrets ------------------------------------------------------------------

async fn list_secrets(State(state): State<Arc<ApiState>>) -> ApiResult {
    let secrets = state.vault.list().await?;
    ok(StatusCode::OK, json!({ "master_key_id": state.vault.key_id().await, "secrets": secrets }))
}

/// `PUT /api/v1/secrets/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecretBody {
    value: String,
}

impl std::fmt::Debug for PutSecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecretBody").field("value", &"[redacted]").finish()
    }
}

async fn put_secret(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PutSecretBody>,
) -> ApiResult {
    super::vault::check_name(&name)?;
    use secrecy::ExposeSecret;
    let value = SecretString::from(body.value.trim().to_string());
    drop(body);
    if value.expose_secret().is_empty() || value.expose_secret().chars().any(char::is_whitespace) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "the value is empty or contains whitespace",
        ));
    }
    let mut validation = Value::Null;
    if name == "github" {
        let repos: Vec<RepoRef> = state.store.projects().await?.into_iter().map(|p| p.repo).collect();
        let (client, api) = &state.github;
        let check = super::github::check_token(client, api, &value, &repos)
            .await
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "token_rejected", e.0))?;
        validation = serde_json::to_value(check).unwrap_or_default();
    }
    let meta = state.vault.put(&name, &value).await?;
    let mut note = "stored encrypted";
    if name == "github" {
        note = match state.forge_token.reload().await {
            Ok(_) => "stored encrypted; the daemon uses the new forge token from now on",
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the GitHub token; the daemon retries shortly");
                "stored encrypted; the daemon picks the new forge token up within a minute"
            }
        };
    }
    ok(StatusCode::OK, json!({ "secret": meta, "validation": validation, "note": note }))
}

/// `POST /api/v1/keys/rotate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    new_key_file: String,
}

async fn rotate_key(State(state): State<Arc<ApiState>>, ApiJson(body): ApiJson<RotateBody>) -> ApiResult {
    let key = super::crypto::MasterKey::from_file(std::path::Path::new(&body.new_key_file))
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_key", e.to_string()))?;
    let report = state.vault.rotate(key).await?;
    ok(
        StatusCode::OK,
        json!({
            "rotation": report,
            "next": "point keys.master_key_file at the new key and keep the old one in keys.previous_key_files until every daemon restarted",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_with_total() {
        let om = "# HELP paid_prs_created Pull requests created.\n# TYPE paid_prs_created counter\n\
                  paid_prs_created_total{project_id=\"p\"} 1\n# HELP paid_disk_usage_bytes Disk.\n\
                  # TYPE paid_disk_usage_bytes gauge\npaid_disk_usage_bytes{type=\"repos\"} 3\n# EOF\n";
        let classic = to_classic_text(om);
        assert_eq!(
            classic,
            "# HELP paid_prs_created_total Pull requests created.\n# TYPE paid_prs_created_total counter\n\
             paid_prs_created_total{project_id=\"p\"} 1\n# HELP paid_disk_usage_bytes Disk.\n\
             # TYPE paid_disk_usage_bytes gauge\npaid_disk_usage_bytes{type=\"repos\"} 3\n"
        );
    }
}
