//! `/api/v1/prompts` and `/api/v1/experiments`: the learning data.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use paid_api::{ExperimentDetail, ExperimentsQuery, PromptDetail};
use paid_core::learning::ExperimentId;
use paid_core::ports::learning::{ExperimentFilter, LearningStore};

use super::ApiState;
use super::error::{ApiError, ApiResult, ok};

// ---- learning -----------------------------------------------------------------

pub(crate) fn learning(state: &ApiState) -> Result<&Arc<dyn LearningStore>, ApiError> {
    state.learning.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "prompts and experiments are not available: this store has no learning support (SQLite and PostgreSQL do)",
        )
    })
}

pub(crate) async fn list_prompts(State(state): State<Arc<ApiState>>) -> ApiResult {
    ok(StatusCode::OK, learning(&state)?.prompts().await?)
}

pub(crate) async fn show_prompt(State(state): State<Arc<ApiState>>, Path(slug): Path<String>) -> ApiResult {
    let store = learning(&state)?;
    let prompt = store.prompt(&slug).await?;
    let versions = store.versions(&slug).await?;
    ok(StatusCode::OK, PromptDetail { prompt, versions })
}

pub(crate) async fn list_experiments(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<ExperimentsQuery>,
) -> ApiResult {
    let filter = ExperimentFilter { subject: q.subject, active_only: q.active };
    ok(StatusCode::OK, learning(&state)?.experiments(&filter).await?)
}

pub(crate) async fn show_experiment(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult {
    let store = learning(&state)?;
    let id = ExperimentId::parse(&id)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("experiment {id} not found")))?;
    let experiment = store.experiment(id).await?;
    let samples = store.samples(id).await?;
    ok(StatusCode::OK, ExperimentDetail { experiment, samples })
}
