//! `/api/v1/costs` and what a run cost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a run cost, from its usage records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostView {
    /// Sum of priced records, USD.
    pub usd: f64,
    /// The same in micro-USD.
    pub micros: i64,
    /// Usage records.
    pub records: usize,
    /// Records without a price (their cost is unknown, not zero).
    pub unpriced_records: usize,
    /// Tokens by direction (`input`, `cache_read`, `cache_write`, `output`, `reasoning`).
    pub tokens: BTreeMap<String, u64>,
}

/// `GET /api/v1/costs` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostsQuery {
    /// Only this project (`owner/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// Spend of one project and model in one period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    /// `owner/name` (`*` in the total).
    pub repo: String,
    /// The model (`*` in the total).
    pub model: String,
    /// `YYYY-MM-DD`, `YYYY-MM` or `all`.
    pub period: String,
    /// USD.
    pub usd: f64,
    /// Micro-USD.
    pub micros: i64,
    /// Usage records.
    pub requests: usize,
    /// Records without a price.
    pub unpriced_requests: usize,
    /// Tokens in all directions.
    pub tokens: u64,
}

/// `GET /api/v1/costs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// Per day, project and model.
    pub by_day: Vec<CostRow>,
    /// Per month, project and model.
    pub by_month: Vec<CostRow>,
    /// Everything.
    pub total: CostRow,
    /// Each project's monthly budget this month (UTC): its cap, what it
    /// spent, and what LLM requests in flight hold against it.
    #[serde(default)]
    pub budgets: Vec<BudgetState>,
}

/// A project's budget in the current period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    /// `owner/name`.
    pub repo: String,
    /// `YYYY-MM`.
    pub period: String,
    /// The cap, USD (`None`: no cap).
    pub limit_usd: Option<f64>,
    /// Spent in the period, USD (the store's usage records).
    pub spent_usd: f64,
    /// Held by this node's metering proxy for requests in flight, USD
    /// (`None` without a proxy).
    pub reserved_usd: Option<f64>,
}
