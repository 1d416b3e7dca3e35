//! `/health`, `/health/ready`, `/metrics` and `/api/v1/status`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use paid_api::Status;
use serde_json::json;

use super::ApiState;
use super::error::{ApiError, ApiResult, ok};
use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};

pub(crate) async fn health() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

pub(crate) async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    let report = state.readiness.report().await;
    let status = if report.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

/// `/metrics`: OpenMetrics when the scraper asks for it (Prometheus does),
/// the classic text format (0.0.4) otherwise.
pub(crate) async fn metrics(State(state): State<Arc<ApiState>>, headers: axum::http::HeaderMap) -> Response {
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

pub(crate) async fn status(State(state): State<Arc<ApiState>>) -> ApiResult {
    ok(
        StatusCode::OK,
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            worker_id: state.worker_id.clone(),
            accepting_runs: state.disk.accepting_runs(),
            disk: state.disk.last().await,
            agents: state.agent_kinds.clone(),
            master_key_id: state.vault.key_id().await,
        },
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
