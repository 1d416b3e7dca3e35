//! What a request may cost at most, and the hold that keeps it under the
//! caps while it is in flight (see [`super::budget`]).

use std::fmt;
use std::sync::Arc;

use chrono::NaiveDate;
use paid_core::Timestamp;

use super::auth::Grant;
use super::budget::{Breach, BudgetEvent, Budgets, Cap};
use crate::prices::Price;

/// Tokens every request may carry beyond its body: the framing a provider
/// adds around messages and the tool-use system prompt (a few hundred
/// tokens for tool use).
pub const FRAMING_TOKENS: u64 = 1_024;

/// The output held for a request that sets no output cap, for a model
/// whose maximum output the price file does not give.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 32_768;

/// The most a request may use: its input (bounded by its body's length in
/// bytes, since a token is at least a byte of text, plus
/// [`FRAMING_TOKENS`]) and its output (its `max_tokens`, or the model's
/// maximum, or the proxy's default), priced at the dearest rate of each
/// kind (cache writes for input, reasoning for output, where dearer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorstCase {
    /// Tokens.
    pub tokens: u64,
    /// Micro-USD.
    pub cost_micros: i64,
}

impl WorstCase {
    /// The worst case of a request with a body of `body_bytes` and at most
    /// `max_output` output tokens, at `price` (none: no cost is held).
    pub fn of_request(body_bytes: usize, max_output: u64, price: Option<&Price>) -> Self {
        let input = u64::try_from(body_bytes).unwrap_or(u64::MAX).saturating_add(FRAMING_TOKENS);
        let tokens = input.saturating_add(max_output);
        let cost_micros = price.map_or(0, |p| p.worst_cost_micros(input, max_output));
        Self { tokens, cost_micros }
    }

    /// Its amount in `cap`'s unit.
    pub(super) fn of(&self, cap: Cap) -> i64 {
        match cap {
            Cap::RunTokens => i64::try_from(self.tokens).unwrap_or(i64::MAX),
            Cap::RunCost | Cap::ProjectDaily | Cap::ProjectMonthly => self.cost_micros,
        }
    }
}

/// Why [`Budgets::reserve`] refused a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A cap is reached: the run's requests are refused from now on. The
    /// event is set on the run's first refusal, to report.
    Reached(Breach, Option<BudgetEvent>),
    /// The request's worst case does not fit under `cap` beside what is
    /// spent and held (`committed`); a smaller request may.
    NoRoom {
        /// The cap.
        cap: Cap,
        /// Spent and held under it.
        committed: i64,
        /// The request's worst case in the cap's unit.
        worst: i64,
        /// The cap's value.
        limit: i64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Reached(breach, _) => breach.fmt(f),
            Refusal::NoRoom { cap, committed, worst, limit } => write!(
                f,
                "{cap} cap: this request may use up to {worst}, and {committed} of {limit} is spent or held by \
                 requests in flight"
            ),
        }
    }
}

/// A request's worst case, held against the caps until [`settle`]d. Dropped
/// unsettled, it is released and nothing is charged, unless it was
/// [`mark_sent`](Reservation::mark_sent): then the upstream may have billed
/// the request, and its worst case is charged.
///
/// [`settle`]: Reservation::settle
#[must_use = "a reservation is released when dropped"]
pub struct Reservation {
    budgets: Arc<Budgets>,
    grant: Grant,
    held: WorstCase,
    day: NaiveDate,
    settled: bool,
    sent: bool,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation").field("run_id", &self.grant.run_id).field("held", &self.held).finish()
    }
}

impl Reservation {
    pub(super) fn new(budgets: Arc<Budgets>, grant: Grant, held: WorstCase, day: NaiveDate) -> Self {
        Self { budgets, grant, held, day, settled: false, sent: false }
    }

    /// Records that the request went to the upstream.
    pub fn mark_sent(&mut self) {
        self.sent = true;
    }

    /// What it holds.
    pub fn held(&self) -> WorstCase {
        self.held
    }

    /// Releases the hold and charges the request's actual `tokens` and
    /// `cost_micros`, in one step. Returns the alerts and breaches the
    /// charge caused, to report.
    pub fn settle(mut self, tokens: u64, cost_micros: Option<i64>, now: Timestamp) -> Vec<BudgetEvent> {
        self.settled = true;
        self.budgets.settle_held(&self.grant, self.held, self.day, Some((tokens, cost_micros)), now)
    }

    /// Settles at the worst case: for an answer that reported no usage.
    pub fn settle_at_worst(self, now: Timestamp) -> Vec<BudgetEvent> {
        let WorstCase { tokens, cost_micros } = self.held;
        self.settle(tokens, Some(cost_micros), now)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            let actual = self.sent.then_some((self.held.tokens, Some(self.held.cost_micros)));
            let now = self.budgets.now();
            let events = self.budgets.settle_held(&self.grant, self.held, self.day, actual, now);
            if !events.is_empty() {
                tracing::warn!(run_id = %self.grant.run_id, events = events.len(), "a request dropped mid-flight was charged its worst case");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use paid_core::testing::fixtures::{self, at};
    use paid_store_sqlite::SqliteStore;

    use super::*;
    use crate::proxy::auth::RunLimits;
    use crate::proxy::budget::{BudgetConfig, Budgets, Cap, Refusal};
    use paid_core::RunId;

    const DAY: i64 = 86_400;

    fn budgets(config: BudgetConfig) -> (Arc<Budgets>, Grant) {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap_or_else(|e| panic!("{e}")));
        let project = fixtures::project("widgets");
        let grant = Grant {
            run_id: RunId(uuid::Uuid::now_v7()),
            project_id: project.id,
            expires_at: None,
            limits: RunLimits::default(),
        };
        let clock = Arc::new(paid_core::ManualClock::new(at(40 * DAY)));
        (Arc::new(Budgets::new(config, store).with_clock(clock)), grant)
    }

    fn worst(cost_micros: i64) -> WorstCase {
        WorstCase { tokens: 10, cost_micros }
    }

    #[tokio::test]
    async fn holds_count_against_every_cap_until_settled_or_dropped() {
        let config =
            BudgetConfig { run_cost_micros: Some(100), project_daily_micros: Some(150), ..BudgetConfig::default() };
        let (b, grant) = budgets(config);
        let now = at(40 * DAY);
        let first = b.reserve(&grant, worst(60), now).await.unwrap_or_else(|e| panic!("{e}"));
        let refused = b.reserve(&grant, worst(60), now).await.err();
        assert_eq!(refused, Some(Refusal::NoRoom { cap: Cap::RunCost, committed: 60, worst: 60, limit: 100 }));
        // Another run of the project has room under its own cap, not the project's.
        let other = Grant { run_id: RunId(uuid::Uuid::now_v7()), ..grant.clone() };
        let second = b.reserve(&other, worst(60), now).await.unwrap_or_else(|e| panic!("{e}"));
        let refused = b.reserve(&other, worst(40), now).await.err();
        assert_eq!(refused, Some(Refusal::NoRoom { cap: Cap::ProjectDaily, committed: 120, worst: 40, limit: 150 }));

        // Settled for less: the difference is free again.
        assert!(first.settle(10, Some(20), now).is_empty());
        assert_eq!((b.spend(grant.run_id).cost_micros, b.reserved(grant.run_id).cost_micros), (20, 0));
        // Dropped before it was sent: released, nothing charged.
        drop(second);
        assert_eq!((b.spend(other.run_id).cost_micros, b.reserved(other.run_id).cost_micros), (0, 0));
        // Dropped after it was sent: the upstream may have billed it.
        let mut sent = b.reserve(&other, worst(50), now).await.unwrap_or_else(|e| panic!("{e}"));
        sent.mark_sent();
        drop(sent);
        assert_eq!((b.spend(other.run_id).cost_micros, b.reserved(other.run_id).cost_micros), (50, 0));
        // Charged on the ledger's clock's day: the project's day holds 20 + 50.
        let third = Grant { run_id: RunId(uuid::Uuid::now_v7()), ..grant.clone() };
        let refused = b.reserve(&third, worst(81), now).await.err();
        assert_eq!(refused, Some(Refusal::NoRoom { cap: Cap::ProjectDaily, committed: 70, worst: 81, limit: 150 }));
    }

    #[tokio::test]
    async fn a_hold_made_yesterday_does_not_free_todays_room() {
        let config = BudgetConfig { project_daily_micros: Some(100), ..BudgetConfig::default() };
        let (b, grant) = budgets(config);
        let yesterday = b.reserve(&grant, worst(80), at(40 * DAY)).await.unwrap_or_else(|e| panic!("{e}"));
        let today = at(41 * DAY);
        let held_today = b.reserve(&grant, worst(90), today).await.unwrap_or_else(|e| panic!("{e}"));
        drop(yesterday);
        // Today's 90 are still held: 20 more do not fit.
        assert!(matches!(b.reserve(&grant, worst(20), today).await, Err(Refusal::NoRoom { committed: 90, .. })));
        drop(held_today);
        assert!(b.reserve(&grant, worst(20), today).await.is_ok());
    }

    #[tokio::test]
    async fn budget_gauges_follow_holds_and_spend() {
        let config = BudgetConfig { project_monthly_micros: Some(5_000_000), ..BudgetConfig::default() };
        let (b, grant) = budgets(config);
        let shared = Arc::new(paid_core::metrics::Metrics::default());
        let b = Arc::new(
            Arc::try_unwrap(b)
                .unwrap_or_else(|_| panic!("one owner"))
                .with_metrics(crate::metrics::LlmMetrics::new(shared.clone())),
        );
        let gauge = |family: &prometheus_client::metrics::family::Family<
            paid_core::metrics::BudgetLabels,
            prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
        >,
                     period: &str| {
            let labels =
                paid_core::metrics::BudgetLabels { project_id: grant.project_id.to_string(), period: period.into() };
            family.get_or_create(&labels).get()
        };
        let now = at(40 * DAY);
        let held = b.reserve(&grant, worst(250_000), now).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gauge(&shared.budget_reserved_usd, "month"), 0.25);
        assert_eq!(b.project_reserved_micros(grant.project_id, now), 250_000);
        assert_eq!(b.project_reserved_micros(grant.project_id, at(80 * DAY)), 0, "another month holds nothing");
        assert_eq!(gauge(&shared.budget_limit_usd, "month"), 5.0);
        held.settle(10, Some(100_000), now);
        assert_eq!(gauge(&shared.budget_reserved_usd, "month"), 0.0);
        assert_eq!(gauge(&shared.budget_spent_usd, "month"), 0.1);
        assert_eq!(gauge(&shared.budget_spent_usd, "day"), 0.1);
    }
}
