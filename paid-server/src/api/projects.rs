//! `/api/v1/projects`: declared and added projects.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use paid_api::{NewProject, ProjectSource, ProjectView, RemovedProject};
use paid_core::{Error as CoreError, ProjectId, RepoRef};
use serde_json::json;

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiResult, ok};
use crate::projects::by_repo;

pub(crate) fn view(state: &ApiState, p: paid_core::Project) -> ProjectView {
    let source =
        if state.projects.is_declared(&p.repo.to_string()) { ProjectSource::Config } else { ProjectSource::Api };
    ProjectView { project: p, source, mirror: None }
}

pub(crate) async fn list_projects(State(state): State<Arc<ApiState>>) -> ApiResult {
    let projects: Vec<ProjectView> = state.store.projects().await?.into_iter().map(|p| view(&state, p)).collect();
    ok(StatusCode::OK, projects)
}

pub(crate) async fn find_project(state: &ApiState, repo: &str) -> Result<paid_core::Project, ApiError> {
    by_repo(state.store.as_ref(), repo).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "project_not_found",
            format!("no project for {repo}; add it with `paid project add {repo}` or in paid.toml"),
        )
        .details(json!({ "repo": repo }))
    })
}

pub(crate) async fn show_project(
    State(state): State<Arc<ApiState>>,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult {
    let p = find_project(&state, &format!("{owner}/{name}")).await?;
    ok(StatusCode::OK, view(&state, p))
}

pub(crate) async fn add_project(State(state): State<Arc<ApiState>>, ApiJson(req): ApiJson<NewProject>) -> ApiResult {
    let repo = RepoRef::parse(&req.repo)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string()))?;
    if by_repo(state.store.as_ref(), &repo.to_string()).await?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("{repo} is already a project")));
    }
    let now = chrono::Utc::now();
    // Clone URLs must be on the forge's web host (the one the token goes to).
    let forge = paid_github::WebOrigin::from_api_base(&state.github_api)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let mut p = paid_core::Project::new(
        ProjectId(uuid::Uuid::now_v7()),
        repo.clone(),
        req.clone_url.unwrap_or_else(|| forge.clone_url(&repo)),
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
    p.settings = paid_core::ProjectSettings {
        model: None,
        budget_usd_per_run: req.budget_usd_per_run,
        budget_usd_per_month: req.budget_usd_per_month,
        allowed_clone_hosts: req.allowed_clone_hosts,
        ..Default::default()
    };
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
    p.validate_clone_url(forge.host())?;
    p.validate()?;
    paid_core::policy::ForbiddenPaths::new(&p.allowed_paths)?;
    // Repository access, with the stored token when there is one.
    if let Some(token) = state.vault.get("github").await.ok().flatten() {
        crate::github::check_token(&state.github_api, &token, std::slice::from_ref(&repo))
            .await
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "repository_unreachable", e.0))?;
    }
    // The settings are stored with the project, in the same write.
    state.store.put_project(&p).await?;
    if let Some(proxy) = &state.proxy {
        crate::proxy::register_budget(proxy, p.id, &p.settings);
    }
    ok(StatusCode::CREATED, view(&state, p))
}

pub(crate) async fn remove_project(
    State(state): State<Arc<ApiState>>,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult {
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
    ok(StatusCode::OK, RemovedProject { removed: repo, id: p.id })
}
