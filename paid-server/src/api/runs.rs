//! `/api/v1/runs`: list (paged), trigger, show, logs, cancel, candidates, pick.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use paid_api::{
    Cancelled, Candidates, CostView, IssueView, Logs, LogsQuery, Pick, RunDetail, RunSummary, RunsQuery, TriggerRun,
};
use paid_core::{Error as CoreError, ProjectId, RepoRef, RunFilter, RunId, RunState, Store, UsageRecord};
use serde_json::json;

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiResult, ok, ok_page};
use super::projects::find_project;
use crate::compare::ToSpec as _;

/// Runs a page holds unless `limit` says otherwise, and at most.
const PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

pub(crate) async fn repo_names(store: &dyn Store) -> Result<BTreeMap<ProjectId, String>, ApiError> {
    Ok(store.projects().await?.into_iter().map(|p| (p.id, p.repo.to_string())).collect())
}

/// `GET /api/v1/runs`: newest first, a page at a time; `meta.next_cursor`
/// is the cursor of the next page.
pub(crate) async fn list_runs(State(state): State<Arc<ApiState>>, Query(q): Query<RunsQuery>) -> ApiResult {
    let project_id = match &q.project {
        Some(repo) => Some(find_project(&state, repo).await?.id),
        None => None,
    };
    let before = match &q.cursor {
        Some(c) => Some(RunId::parse(c).map_err(|_| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", format!("cursor {c:?} is not a run id"))
        })?),
        None => None,
    };
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let names = repo_names(state.store.as_ref()).await?;
    // One more than asked tells whether there is a next page.
    let mut filter = RunFilter::all().limit(limit + 1);
    filter.project_id = project_id;
    filter.active_only = q.active;
    filter.before = before;
    let mut runs = state.store.runs(&filter).await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next = if more { runs.last().map(|r| r.id.to_string()) } else { None };
    let runs: Vec<RunSummary> = runs
        .into_iter()
        .map(|run| RunSummary { repo: names.get(&run.project_id).cloned().unwrap_or_default(), run })
        .collect();
    ok_page(runs, next)
}

pub(crate) async fn trigger_run(State(state): State<Arc<ApiState>>, ApiJson(req): ApiJson<TriggerRun>) -> ApiResult {
    let compare = match &req.compare {
        None => None,
        Some(c) => Some(c.to_spec().map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", format!("compare.{e}"))
                .details(json!({ "field": format!("compare.{}", e.field) }))
        })?),
    };
    let (repo, number) = match (req.issue_url, req.repo, req.issue) {
        (Some(url), None, None) => crate::github::parse_issue_ref(&url).ok_or_else(|| {
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

pub(crate) fn parse_run_id(id: &str) -> Result<RunId, ApiError> {
    RunId::parse(id).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("run {id} not found")))
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
            *c.tokens.entry(k.to_string()).or_default() += v;
        }
    }
    c.usd = c.micros as f64 / 1e6;
    c
}

pub(crate) async fn show_run(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult {
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
    let body = RunDetail {
        run,
        repo: project.repo.to_string(),
        issue: issue.map(|i| IssueView { number: i.number, title: i.title, url: i.url, author: i.author }),
        steps,
        cost: cost_of(&usage),
        usage,
        model_decision: decision,
        prompt_version,
        log_chunks: logs.len(),
        candidates: (!candidates.is_empty()).then_some(candidates),
    };
    ok(StatusCode::OK, body)
}

/// `GET /api/v1/runs/{id}/candidates`: a comparison run's side-by-side
/// reports, empty until its candidates are done.
pub(crate) async fn run_candidates(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult {
    let id = parse_run_id(&id)?;
    let run = state.store.run(id).await?;
    let candidates = state.engine.candidates(id).await?;
    ok(
        StatusCode::OK,
        Candidates { run_id: id, state: run.state, awaiting_choice: run.state == RunState::AwaitingChoice, candidates },
    )
}

/// `POST /api/v1/runs/{id}/pick`: names the winner of a run awaiting a
/// choice. 409 when the run is not awaiting one, 422 for an unknown (or
/// unfinished) candidate.
pub(crate) async fn pick_candidate(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Pick>,
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

pub(crate) async fn run_logs(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult {
    let id = parse_run_id(&id)?;
    let run = state.store.run(id).await?;
    let chunks = state.store.logs(id, q.after).await?;
    ok(StatusCode::OK, Logs { run_state: run.state, finished: run.state.is_terminal(), chunks })
}

pub(crate) async fn cancel_run(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult {
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
    ok(StatusCode::ACCEPTED, Cancelled { run, cancel_requested: true })
}
