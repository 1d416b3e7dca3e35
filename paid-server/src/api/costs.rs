//! `/api/v1/costs`: spend per project and model, by day and month.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::Datelike;
use paid_api::{BudgetState, CostRow, Costs, CostsQuery};
use paid_core::{CostQuery, ProjectId, Store, UsageTotals};

use super::ApiState;
use super::error::{ApiError, ApiResult, ok};
use super::projects::find_project;
use super::runs::repo_names;

// ---- costs ------------------------------------------------------------------

pub(crate) async fn costs(State(state): State<Arc<ApiState>>, Query(q): Query<CostsQuery>) -> ApiResult {
    let project_id = match &q.project {
        Some(repo) => Some(find_project(&state, repo).await?.id),
        None => None,
    };
    let mut costs = summarize(state.store.as_ref(), project_id).await?;
    costs.budgets = budgets(&state, project_id, &costs).await?;
    ok(StatusCode::OK, costs)
}

/// Each project's (or `project`'s) budget this month: its cap, its spend
/// (from `costs`, already summed), and what this node's proxy holds for
/// requests in flight.
async fn budgets(state: &ApiState, project: Option<ProjectId>, costs: &Costs) -> Result<Vec<BudgetState>, ApiError> {
    let now = chrono::Utc::now();
    let period = format!("{:04}-{:02}", now.year(), now.month());
    let mut projects = state.store.projects().await?;
    projects.retain(|p| project.is_none_or(|id| p.id == id));
    projects.sort_by_key(|p| p.repo.to_string());
    Ok(projects
        .into_iter()
        .map(|p| {
            let repo = p.repo.to_string();
            let spent_micros: i64 = costs
                .by_month
                .iter()
                .filter(|r| r.period == period && r.repo == repo)
                .fold(0, |sum, r| sum.saturating_add(r.micros));
            BudgetState {
                repo,
                period: period.clone(),
                limit_usd: p.settings.budget_usd_per_month,
                spent_usd: spent_micros as f64 / 1e6,
                reserved_usd: state.proxy.as_ref().map(|proxy| proxy.project_reserved_micros(p.id) as f64 / 1e6),
            }
        })
        .collect())
}

/// The costs of every project (or of `project`), folded from the store's
/// per-day aggregate: two store calls (the aggregate and the project
/// names), however many runs there are.
async fn summarize(store: &dyn Store, project: Option<ProjectId>) -> Result<Costs, ApiError> {
    let names = repo_names(store).await?;
    let query = match project {
        Some(p) => CostQuery::all().project(p),
        None => CostQuery::all(),
    };
    let mut day: BTreeMap<(String, String, String), CostRow> = BTreeMap::new();
    let mut month: BTreeMap<(String, String, String), CostRow> = BTreeMap::new();
    let mut total = CostRow { repo: "*".into(), model: "*".into(), period: "all".into(), ..Default::default() };
    for agg in store.daily_costs(&query).await? {
        let repo = names.get(&agg.project_id).cloned().unwrap_or_default();
        let d = agg.day.format("%Y-%m-%d").to_string();
        let m = format!("{:04}-{:02}", agg.day.year(), agg.day.month());
        for (map, period) in [(&mut day, d), (&mut month, m)] {
            let row = map.entry((period.clone(), repo.clone(), agg.model.clone())).or_insert_with(|| CostRow {
                repo: repo.clone(),
                model: agg.model.clone(),
                period,
                ..Default::default()
            });
            add(row, &agg.totals);
        }
        add(&mut total, &agg.totals);
    }
    fn add(row: &mut CostRow, t: &UsageTotals) {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        row.requests = row.requests.saturating_add(count(t.records));
        row.unpriced_requests = row.unpriced_requests.saturating_add(count(t.unpriced_records));
        row.micros = row.micros.saturating_add(t.cost_micros);
        row.usd = row.micros as f64 / 1e6;
        row.tokens = row.tokens.saturating_add(t.tokens());
    }
    Ok(Costs {
        by_day: day.into_values().collect(),
        by_month: month.into_values().collect(),
        total,
        budgets: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use paid_core::store::prelude::*;
    use std::collections::BTreeSet;

    use paid_core::testing::faults::FlakyStore;
    use paid_core::testing::fixtures::{self, at};
    use paid_core::{RunFilter, UsageRecord};
    use paid_store_sqlite::SqliteStore;
    use pretty_assertions::assert_eq;

    use super::*;

    /// `GET /costs` as it was computed before the aggregate: every run, then
    /// every usage record of each.
    async fn record_by_record(store: &dyn Store, project: Option<ProjectId>) -> Costs {
        let names = repo_names(store).await.unwrap();
        let mut day: BTreeMap<(String, String, String), CostRow> = BTreeMap::new();
        let mut month: BTreeMap<(String, String, String), CostRow> = BTreeMap::new();
        let mut total = CostRow { repo: "*".into(), model: "*".into(), period: "all".into(), ..Default::default() };
        fn add(row: &mut CostRow, u: &UsageRecord) {
            row.requests += 1;
            match u.cost_micros {
                Some(m) => row.micros += m,
                None => row.unpriced_requests += 1,
            }
            row.usd = row.micros as f64 / 1e6;
            row.tokens += u.usage.total();
        }
        let mut filter = RunFilter::all();
        filter.project_id = project;
        for run in store.runs(&filter).await.unwrap() {
            let repo = names.get(&run.project_id).cloned().unwrap_or_default();
            for u in store.usage(run.id).await.unwrap() {
                let d = u.at.format("%Y-%m-%d").to_string();
                let m = format!("{:04}-{:02}", u.at.year(), u.at.month());
                for (map, period) in [(&mut day, d), (&mut month, m)] {
                    let key = (period.clone(), repo.clone(), u.model.clone());
                    let row = map.entry(key).or_insert_with(|| CostRow {
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
        Costs {
            by_day: day.into_values().collect(),
            by_month: month.into_values().collect(),
            total,
            budgets: Vec::new(),
        }
    }

    /// Two projects; `runs` runs in the first, each with usage on three days
    /// (two in January, one in February) of two models, one unpriced.
    async fn seeded(runs: u64) -> (Arc<FlakyStore>, ProjectId) {
        let store = Arc::new(FlakyStore::new(Arc::new(SqliteStore::open_in_memory().unwrap())));
        let (widgets, gadgets) = (fixtures::project("widgets"), fixtures::project("gadgets"));
        for p in [&widgets, &gadgets] {
            store.put_project(p).await.unwrap();
        }
        let mut new_runs: Vec<_> = (0..runs).map(|i| fixtures::new_run(widgets.id, i + 1)).collect();
        new_runs.push(fixtures::new_run(gadgets.id, 1));
        for (i, new) in new_runs.iter().enumerate() {
            let run = store.create_run(new).await.unwrap();
            let day = 86_400;
            for (secs, model, cost) in [
                (60, "claude-sonnet", Some(1_000 + i as i64)),
                (day + 60, "gpt", None),
                (40 * day, "claude-sonnet", Some(7)),
            ] {
                let u =
                    UsageRecord { model: model.into(), cost_micros: cost, ..fixtures::usage_record(run.id, at(secs)) };
                store.record_usage(&u).await.unwrap();
            }
        }
        (store, widgets.id)
    }

    #[tokio::test]
    async fn costs_equal_the_record_by_record_sums() {
        let (store, widgets) = seeded(3).await;
        for project in [None, Some(widgets)] {
            let got = summarize(store.as_ref(), project).await.unwrap();
            assert_eq!(got, record_by_record(store.as_ref(), project).await, "project {project:?}");
            assert_eq!(got.by_month.iter().map(|r| r.period.as_str()).collect::<BTreeSet<_>>().len(), 2);
        }
        let all = summarize(store.as_ref(), None).await.unwrap();
        assert_eq!((all.total.requests, all.total.unpriced_requests), (12, 4));
    }

    #[tokio::test]
    async fn costs_make_the_same_two_store_calls_whatever_the_number_of_runs() {
        for runs in [1, 25] {
            let (store, widgets) = seeded(runs).await;
            let before = |m| store.calls(m);
            let (usage, list, aggregate, names) =
                (before("usage"), before("runs"), before("daily_costs"), before("projects"));
            let costs = summarize(store.as_ref(), Some(widgets)).await.unwrap();
            assert_eq!(costs.total.requests as u64, 3 * runs, "every record of {runs} runs is counted");
            assert_eq!(store.calls("usage") - usage, 0, "no usage() per run ({runs} runs)");
            assert_eq!(store.calls("runs") - list, 0, "no run listing ({runs} runs)");
            assert_eq!(store.calls("daily_costs") - aggregate, 1, "one aggregate ({runs} runs)");
            assert_eq!(store.calls("projects") - names, 1, "one read of the names ({runs} runs)");
        }
    }
}
