//! `/api/v1/costs`: spend per project and model, by day and month.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::Datelike;
use paid_api::{CostRow, Costs, CostsQuery};
use paid_core::{RunFilter, UsageRecord};

use super::ApiState;
use super::error::{ApiResult, ok};
use super::projects::find_project;
use super::runs::repo_names;

// ---- costs ------------------------------------------------------------------

pub(crate) async fn costs(State(state): State<Arc<ApiState>>, Query(q): Query<CostsQuery>) -> ApiResult {
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
    ok(StatusCode::OK, Costs { by_day: day.into_values().collect(), by_month: month.into_values().collect(), total })
}
