//! Budgets, fail-closed: per-run token and cost caps, per-project daily and
//! monthly cost caps.
//!
//! The proxy's [`BudgetConfig`] is the default; a project may have its own
//! ([`Budgets::set_project`], [`crate::proxy::Proxy::set_project_budget`]),
//! which then replaces the default for every run of that project (a run
//! token carries its project). Project caps count only that project's
//! spending.
//!
//! Before a request is forwarded, [`Budgets::check`] refuses it when any cap
//! it falls under is already reached. After the response, [`Budgets::charge`]
//! adds its tokens and cost; crossing [`BudgetConfig::alert_ratio`] of a cap
//! raises an alert, and crossing the cap marks the run budget-exceeded so its
//! next request is refused. Both are reported to the [`BudgetObserver`]
//! (by default, audit events in the store) and the run's breach stays
//! queryable with [`Budgets::breach`].
//!
//! Before a request is forwarded, [`Budgets::reserve`] holds its worst case
//! (see [`WorstCase`]) against every cap it falls under, and refuses it when
//! that does not fit beside what is spent and what requests in flight hold.
//! When the response ends, [`Reservation::settle`] swaps the hold for the
//! actual usage in one step; a reservation dropped unsettled is released.
//! So concurrent requests cannot overspend a cap: the spend of a run stays
//! within its cap as long as each request's actual usage is within its
//! worst case.
//!
//! Spending is kept in memory and seeded from the store's usage records the
//! first time a run or project is seen, so a restarted proxy keeps counting.
//!
//! The caps are pure data; the arithmetic ([`Spend`]) has no I/O.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate, NaiveTime};
use paid_core::{AuditEvent, CostQuery, ProjectId, RunId, Store, Timestamp};
use serde::{Deserialize, Serialize};

use super::auth::Grant;
pub use super::reservation::{Refusal, Reservation, WorstCase};

/// The caps. `None` means no cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetConfig {
    /// Tokens per run (all buckets). Default 10M (DESIGN §7).
    pub run_tokens: Option<u64>,
    /// Cost per run, micro-USD.
    pub run_cost_micros: Option<i64>,
    /// Cost per project per UTC day, micro-USD.
    pub project_daily_micros: Option<i64>,
    /// Cost per project per UTC month, micro-USD.
    pub project_monthly_micros: Option<i64>,
    /// Share of a cap at which an alert is raised (0.8).
    pub alert_ratio: f64,
    /// Refuse models without a price while any cost cap applies (their cost
    /// could not be counted). Default true: fail closed.
    pub refuse_unpriced: bool,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            run_tokens: Some(10_000_000),
            run_cost_micros: None,
            project_daily_micros: None,
            project_monthly_micros: None,
            alert_ratio: 0.8,
            refuse_unpriced: true,
        }
    }
}

/// Which cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cap {
    /// Tokens of one run.
    RunTokens,
    /// Cost of one run.
    RunCost,
    /// Cost of the run's project today (UTC).
    ProjectDaily,
    /// Cost of the run's project this month (UTC).
    ProjectMonthly,
}

impl Cap {
    /// The `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::RunTokens => "run_tokens",
            Cap::RunCost => "run_cost",
            Cap::ProjectDaily => "project_daily_cost",
            Cap::ProjectMonthly => "project_monthly_cost",
        }
    }

    fn unit(self) -> &'static str {
        if self == Cap::RunTokens { "tokens" } else { "micro-USD" }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cap reached: what, how much was spent, the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// The cap.
    pub cap: Cap,
    /// Spent so far (tokens or micro-USD).
    pub spent: i64,
    /// The cap's value.
    pub limit: i64,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cap reached: {} of {} {}", self.cap, self.spent, self.limit, self.cap.unit())
    }
}

/// Alert or breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetEventKind {
    /// [`BudgetConfig::alert_ratio`] of a cap was crossed.
    Alert,
    /// A cap was reached; the run's further requests are refused.
    Exceeded,
}

/// Reported to the [`BudgetObserver`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetEvent {
    /// Alert or breach.
    pub kind: BudgetEventKind,
    /// The run whose request crossed the line.
    pub run_id: RunId,
    /// Its project.
    pub project_id: ProjectId,
    /// The cap, spending and limit.
    pub breach: Breach,
    /// When.
    pub at: Timestamp,
}

/// Told about alerts and breaches. The engine implements it to move a run
/// to `budget_exceeded`; the default, [`AuditObserver`], writes audit events.
#[async_trait]
pub trait BudgetObserver: Send + Sync + 'static {
    /// Called once per cap crossing.
    async fn on_budget_event(&self, event: &BudgetEvent);
}

/// Writes each event as an audit event (`budget.alert` / `budget.exceeded`,
/// subject `run:{id}`).
#[derive(Clone)]
pub struct AuditObserver {
    store: Arc<dyn Store>,
}

impl fmt::Debug for AuditObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditObserver")
    }
}

impl AuditObserver {
    /// Writes to `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl BudgetObserver for AuditObserver {
    async fn on_budget_event(&self, event: &BudgetEvent) {
        let action = match event.kind {
            BudgetEventKind::Alert => "budget.alert",
            BudgetEventKind::Exceeded => "budget.exceeded",
        };
        let audit = AuditEvent {
            at: event.at,
            project_id: Some(event.project_id),
            actor: "llm-proxy".into(),
            action: action.into(),
            subject: format!("run:{}", event.run_id),
            details: serde_json::json!({
                "cap": event.breach.cap,
                "spent": event.breach.spent,
                "limit": event.breach.limit,
            }),
        };
        if let Err(e) = self.store.audit(&audit).await {
            tracing::error!(error = %e, run_id = %event.run_id, "cannot record budget event");
        }
    }
}

/// Money and tokens spent, and which alerts were raised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spend {
    /// Tokens.
    pub tokens: u64,
    /// Micro-USD.
    pub cost_micros: i64,
}

#[derive(Debug, Default)]
struct RunState {
    spend: Spend,
    /// Held by requests in flight.
    reserved: Spend,
    breach: Option<Breach>,
    alerted: HashSet<Cap>,
}

#[derive(Debug, Default)]
struct ProjectState {
    /// Whether past spending was read from the store (only done while a
    /// project cap applies).
    seeded: bool,
    day: Option<NaiveDate>,
    day_micros: i64,
    month: Option<(i32, u32)>,
    month_micros: i64,
    /// Held by requests in flight, today and this month.
    day_reserved: i64,
    month_reserved: i64,
    alerted: HashSet<(Cap, NaiveDate)>,
}

impl ProjectState {
    fn roll(&mut self, now: Timestamp) {
        let day = now.date_naive();
        if self.day != Some(day) {
            self.day = Some(day);
            self.day_micros = 0;
            self.day_reserved = 0;
        }
        let month = (day.year(), day.month());
        if self.month != Some(month) {
            self.month = Some(month);
            self.month_micros = 0;
            self.month_reserved = 0;
        }
    }
}

#[derive(Debug, Default)]
struct Ledger {
    runs: HashMap<RunId, RunState>,
    projects: HashMap<ProjectId, ProjectState>,
}

/// The spending ledger and its caps.
pub struct Budgets {
    config: BudgetConfig,
    projects: RwLock<HashMap<ProjectId, BudgetConfig>>,
    store: Arc<dyn Store>,
    ledger: Mutex<Ledger>,
    metrics: Option<crate::metrics::LlmMetrics>,
    clock: Arc<dyn paid_core::Clock>,
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.projects.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Budgets").field("config", &self.config).field("project_overrides", &n).finish()
    }
}

fn limit(cap: Cap, config: &BudgetConfig, grant: &Grant) -> Option<i64> {
    match cap {
        Cap::RunTokens => grant.limits.tokens.or(config.run_tokens).map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
        Cap::RunCost => grant.limits.cost_micros.or(config.run_cost_micros),
        Cap::ProjectDaily => config.project_daily_micros,
        Cap::ProjectMonthly => config.project_monthly_micros,
    }
}

fn spent(cap: Cap, run: &RunState, project: &ProjectState) -> i64 {
    match cap {
        Cap::RunTokens => i64::try_from(run.spend.tokens).unwrap_or(i64::MAX),
        Cap::RunCost => run.spend.cost_micros,
        Cap::ProjectDaily => project.day_micros,
        Cap::ProjectMonthly => project.month_micros,
    }
}

fn reserved(cap: Cap, run: &RunState, project: &ProjectState) -> i64 {
    match cap {
        Cap::RunTokens => i64::try_from(run.reserved.tokens).unwrap_or(i64::MAX),
        Cap::RunCost => run.reserved.cost_micros,
        Cap::ProjectDaily => project.day_reserved,
        Cap::ProjectMonthly => project.month_reserved,
    }
}

const CAPS: [Cap; 4] = [Cap::RunTokens, Cap::RunCost, Cap::ProjectDaily, Cap::ProjectMonthly];

impl Budgets {
    /// Caps from `config`; spending is seeded from `store`.
    pub fn new(config: BudgetConfig, store: Arc<dyn Store>) -> Self {
        Self {
            config,
            projects: RwLock::new(HashMap::new()),
            store,
            ledger: Mutex::new(Ledger::default()),
            metrics: None,
            clock: Arc::new(paid_core::SystemClock),
        }
    }

    /// Takes the time from `clock` where no caller gives it (a reservation
    /// dropped unsettled). Default: the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn paid_core::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by the ledger's clock.
    pub(super) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Publishes each project's caps, spend and holds per period
    /// (`paid_budget_{limit,spent,reserved}_usd`) into `metrics` as they
    /// change.
    pub fn with_metrics(mut self, metrics: crate::metrics::LlmMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the budget gauges of `project` from its state.
    fn publish(&self, project_id: ProjectId, project: &ProjectState, config: &BudgetConfig) {
        let Some(metrics) = &self.metrics else { return };
        let m = metrics.metrics();
        let usd = |micros: i64| micros as f64 / 1e6;
        for (period, limit, spent, reserved) in [
            ("day", config.project_daily_micros, project.day_micros, project.day_reserved),
            ("month", config.project_monthly_micros, project.month_micros, project.month_reserved),
        ] {
            let labels = paid_core::metrics::BudgetLabels { project_id: project_id.to_string(), period: period.into() };
            if let Some(limit) = limit {
                m.budget_limit_usd.get_or_create(&labels).set(usd(limit));
            }
            m.budget_spent_usd.get_or_create(&labels).set(usd(spent));
            m.budget_reserved_usd.get_or_create(&labels).set(usd(reserved));
        }
    }

    /// The default caps (for projects without their own).
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// The caps of `project`'s runs: its own, else the default.
    pub fn config_for(&self, project: ProjectId) -> BudgetConfig {
        let own = self.projects.read().unwrap_or_else(|p| p.into_inner()).get(&project).copied();
        own.unwrap_or(self.config)
    }

    /// Gives `project` its own caps (`Some`), replacing the default for its
    /// runs from their next request, or returns it to the default (`None`).
    /// Spending counted so far is kept.
    pub fn set_project(&self, project: ProjectId, config: Option<BudgetConfig>) {
        let mut map = self.projects.write().unwrap_or_else(|p| p.into_inner());
        match config {
            Some(c) => map.insert(project, c),
            None => map.remove(&project),
        };
    }

    /// The projects with caps of their own.
    pub fn project_overrides(&self) -> HashMap<ProjectId, BudgetConfig> {
        self.projects.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a cost cap applies to `grant`'s requests.
    pub fn has_cost_cap(&self, grant: &Grant) -> bool {
        let config = self.config_for(grant.project_id);
        [Cap::RunCost, Cap::ProjectDaily, Cap::ProjectMonthly].iter().any(|c| limit(*c, &config, grant).is_some())
    }

    /// The breach that stopped `run`, if one did.
    pub fn breach(&self, run: RunId) -> Option<Breach> {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.runs.get(&run).and_then(|r| r.breach)
    }

    /// What `run` has spent, as far as this proxy knows.
    pub fn spend(&self, run: RunId) -> Spend {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.runs.get(&run).map(|r| r.spend.clone()).unwrap_or_default()
    }

    /// Refuses a request that would start beyond a cap. The first refusal
    /// of a run returns an event to report.
    pub async fn check(&self, grant: &Grant, now: Timestamp) -> Result<(), (Breach, Option<BudgetEvent>)> {
        let config = self.config_for(grant.project_id);
        self.hydrate(grant, &config, now).await;
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let Ledger { runs, projects } = &mut *ledger;
        let project = projects.entry(grant.project_id).or_default();
        project.roll(now);
        let run = runs.entry(grant.run_id).or_default();
        if let Some(b) = run.breach {
            return Err((b, None));
        }
        for cap in CAPS {
            if let Some(lim) = limit(cap, &config, grant)
                && spent(cap, run, project) >= lim
            {
                let breach = Breach { cap, spent: spent(cap, run, project), limit: lim };
                run.breach = Some(breach);
                let event = BudgetEvent {
                    kind: BudgetEventKind::Exceeded,
                    run_id: grant.run_id,
                    project_id: grant.project_id,
                    breach,
                    at: now,
                };
                return Err((breach, Some(event)));
            }
        }
        Ok(())
    }

    /// Adds a response's tokens and cost; returns the alerts and breaches
    /// it caused, to report.
    pub fn charge(&self, grant: &Grant, tokens: u64, cost_micros: Option<i64>, now: Timestamp) -> Vec<BudgetEvent> {
        let config = self.config_for(grant.project_id);
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let events = charge_locked(&mut ledger, &config, grant, tokens, cost_micros, now);
        if let Some(project) = ledger.projects.get(&grant.project_id) {
            self.publish(grant.project_id, project, &config);
        }
        events
    }

    /// Holds `worst` against every cap `grant`'s request falls under, or
    /// refuses it: [`Refusal::Reached`] when a cap is already reached (the
    /// run is stopped, as [`Budgets::check`] does), [`Refusal::NoRoom`]
    /// when the worst case does not fit beside what is spent and held.
    /// Checking and holding are one step, so requests that arrive together
    /// cannot all pass on the same room.
    pub async fn reserve(
        self: &Arc<Self>,
        grant: &Grant,
        worst: WorstCase,
        now: Timestamp,
    ) -> Result<Reservation, Refusal> {
        self.check(grant, now).await.map_err(|(breach, event)| Refusal::Reached(breach, event))?;
        let config = self.config_for(grant.project_id);
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let Ledger { runs, projects } = &mut *ledger;
        let project = projects.entry(grant.project_id).or_default();
        project.roll(now);
        let run = runs.entry(grant.run_id).or_default();
        for cap in CAPS {
            let Some(limit) = limit(cap, &config, grant) else { continue };
            let committed = spent(cap, run, project).saturating_add(reserved(cap, run, project));
            let need = worst.of(cap);
            if committed.saturating_add(need) > limit {
                return Err(Refusal::NoRoom { cap, committed, worst: need, limit });
            }
        }
        run.reserved.tokens = run.reserved.tokens.saturating_add(worst.tokens);
        run.reserved.cost_micros = run.reserved.cost_micros.saturating_add(worst.cost_micros);
        project.day_reserved = project.day_reserved.saturating_add(worst.cost_micros);
        project.month_reserved = project.month_reserved.saturating_add(worst.cost_micros);
        let day = project.day.unwrap_or_else(|| now.date_naive());
        self.publish(grant.project_id, project, &config);
        Ok(Reservation::new(self.clone(), grant.clone(), worst, day))
    }

    /// Releases what `reservation` held and charges `actual` (tokens, cost),
    /// under one lock. Returns the alerts and breaches the charge caused.
    pub(super) fn settle_held(
        &self,
        grant: &Grant,
        held: WorstCase,
        day: NaiveDate,
        actual: Option<(u64, Option<i64>)>,
        now: Timestamp,
    ) -> Vec<BudgetEvent> {
        let config = self.config_for(grant.project_id);
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        {
            let Ledger { runs, projects } = &mut *ledger;
            if let Some(run) = runs.get_mut(&grant.run_id) {
                run.reserved.tokens = run.reserved.tokens.saturating_sub(held.tokens);
                run.reserved.cost_micros = (run.reserved.cost_micros.saturating_sub(held.cost_micros)).max(0);
            }
            if let Some(project) = projects.get_mut(&grant.project_id) {
                // A day or month that rolled over since started its holds at zero.
                if project.day == Some(day) {
                    project.day_reserved = (project.day_reserved.saturating_sub(held.cost_micros)).max(0);
                }
                if project.month == Some((day.year(), day.month())) {
                    project.month_reserved = (project.month_reserved.saturating_sub(held.cost_micros)).max(0);
                }
            }
        }
        let events = match actual {
            Some((tokens, cost)) => charge_locked(&mut ledger, &config, grant, tokens, cost, now),
            None => Vec::new(),
        };
        if let Some(project) = ledger.projects.get(&grant.project_id) {
            self.publish(grant.project_id, project, &config);
        }
        events
    }

    /// What requests in flight hold against `project`'s caps this month
    /// (UTC, as of the last request), in micro-USD.
    pub fn project_reserved_micros(&self, project: ProjectId, now: Timestamp) -> i64 {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let this_month = Some((now.year(), now.month()));
        ledger.projects.get(&project).filter(|p| p.month == this_month).map_or(0, |p| p.month_reserved)
    }

    /// What requests in flight hold for `run`.
    pub fn reserved(&self, run: RunId) -> Spend {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.runs.get(&run).map(|r| r.reserved.clone()).unwrap_or_default()
    }

    /// Seeds the ledger from the store the first time a run is seen, and
    /// the first time a project is seen while a project cap applies to it.
    async fn hydrate(&self, grant: &Grant, config: &BudgetConfig, now: Timestamp) {
        let project_capped = config.project_daily_micros.is_some() || config.project_monthly_micros.is_some();
        let (need_run, need_project) = {
            let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
            let seeded = ledger.projects.get(&grant.project_id).map(|p| p.seeded);
            (!ledger.runs.contains_key(&grant.run_id), seeded.is_none() || (seeded == Some(false) && project_capped))
        };
        let mut run_spend = Spend::default();
        if need_run {
            match self.store.usage(grant.run_id).await {
                Ok(records) => {
                    // What agents reported about themselves is not what the
                    // proxy charged: only metered requests count.
                    for r in records.iter().filter(|r| !r.is_reported()) {
                        run_spend.tokens = run_spend.tokens.saturating_add(r.usage.total());
                        run_spend.cost_micros = run_spend.cost_micros.saturating_add(r.cost_micros.unwrap_or(0).max(0));
                    }
                }
                Err(e) => tracing::warn!(error = %e, run_id = %grant.run_id, "cannot read past usage of run"),
            }
        }
        let (mut day, mut month) = (0i64, 0i64);
        if need_project && project_capped {
            // The project's spending per day this month, in one aggregate query.
            let today = now.date_naive();
            let month_start = today.with_day(1).unwrap_or(today).and_time(NaiveTime::MIN).and_utc();
            match self.store.daily_costs(&CostQuery::all().project(grant.project_id).since(month_start)).await {
                Ok(days) => {
                    for d in days {
                        month = month.saturating_add(d.totals.cost_micros);
                        if d.day == today {
                            day = day.saturating_add(d.totals.cost_micros);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, project_id = %grant.project_id, "cannot read past usage of project")
                }
            }
        }
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if need_run && !ledger.runs.contains_key(&grant.run_id) {
            ledger.runs.insert(grant.run_id, RunState { spend: run_spend, ..RunState::default() });
        }
        if need_project {
            let p = ledger.projects.entry(grant.project_id).or_default();
            if !p.seeded {
                p.roll(now);
                // What this proxy counted may not be written yet: keep the larger.
                p.day_micros = p.day_micros.max(day);
                p.month_micros = p.month_micros.max(month);
                p.seeded = project_capped;
            }
        }
    }
}

/// [`Budgets::charge`] on the locked ledger.
fn charge_locked(
    ledger: &mut Ledger,
    config: &BudgetConfig,
    grant: &Grant,
    tokens: u64,
    cost_micros: Option<i64>,
    now: Timestamp,
) -> Vec<BudgetEvent> {
    let Ledger { runs, projects } = ledger;
    let project = projects.entry(grant.project_id).or_default();
    project.roll(now);
    let run = runs.entry(grant.run_id).or_default();
    let cost = cost_micros.unwrap_or(0).max(0);
    run.spend.tokens = run.spend.tokens.saturating_add(tokens);
    run.spend.cost_micros = run.spend.cost_micros.saturating_add(cost);
    project.day_micros = project.day_micros.saturating_add(cost);
    project.month_micros = project.month_micros.saturating_add(cost);

    let mut events = Vec::new();
    let event =
        |kind, breach| BudgetEvent { kind, run_id: grant.run_id, project_id: grant.project_id, breach, at: now };
    for cap in CAPS {
        let Some(lim) = limit(cap, config, grant) else { continue };
        let s = spent(cap, run, project);
        let breach = Breach { cap, spent: s, limit: lim };
        let alert_at = (lim as f64 * config.alert_ratio).ceil() as i64;
        if s >= alert_at {
            let fresh = match cap {
                Cap::RunTokens | Cap::RunCost => run.alerted.insert(cap),
                Cap::ProjectDaily | Cap::ProjectMonthly => {
                    let day = now.date_naive();
                    let key_day = if cap == Cap::ProjectMonthly { day.with_day(1).unwrap_or(day) } else { day };
                    project.alerted.insert((cap, key_day))
                }
            };
            if fresh {
                events.push(event(BudgetEventKind::Alert, breach));
            }
        }
        if s >= lim && run.breach.is_none() {
            run.breach = Some(breach);
            events.push(event(BudgetEventKind::Exceeded, breach));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use paid_core::store::prelude::{Catalog as _, Ledger as _, Runs as _};
    use paid_core::testing::faults::FlakyStore;
    use paid_core::testing::fixtures::{self, at};
    use paid_core::{Run, UsageRecord};
    use paid_store_sqlite::SqliteStore;
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::proxy::auth::RunLimits;

    const DAY: i64 = 86_400;

    /// Ten runs of one project, each with usage today (2024-02-10, 100
    /// micro-USD), on the first of the month (1,000) and in the last
    /// millisecond of January (1,000,000); and an eleventh run without usage.
    async fn seeded() -> (Arc<FlakyStore>, Run, Timestamp) {
        let store = Arc::new(FlakyStore::new(Arc::new(SqliteStore::open_in_memory().unwrap())));
        let project = fixtures::project("widgets");
        store.put_project(&project).await.unwrap();
        let (now, month_start) = (at(40 * DAY), at(31 * DAY));
        for issue in 1..=10 {
            let run = store.create_run(&fixtures::new_run(project.id, issue)).await.unwrap();
            for (when, cost) in
                [(now, 100), (month_start, 1_000), (month_start - chrono::Duration::milliseconds(1), 1_000_000)]
            {
                let u = UsageRecord { cost_micros: Some(cost), ..fixtures::usage_record(run.id, when) };
                store.record_usage(&u).await.unwrap();
            }
        }
        let fresh = store.create_run(&fixtures::new_run(project.id, 11)).await.unwrap();
        (store, fresh, now)
    }

    fn grant(run: &Run) -> Grant {
        Grant { run_id: run.id, project_id: run.project_id, expires_at: None, limits: RunLimits::default() }
    }

    #[tokio::test]
    async fn a_project_is_seeded_with_this_months_and_todays_spending_from_one_aggregate() {
        let (store, run, now) = seeded().await;
        let cases = [
            (BudgetConfig { project_monthly_micros: Some(11_000), ..BudgetConfig::default() }, Cap::ProjectMonthly),
            (BudgetConfig { project_daily_micros: Some(1_000), ..BudgetConfig::default() }, Cap::ProjectDaily),
        ];
        for (config, cap) in cases {
            let limit = limit(cap, &config, &grant(&run)).unwrap();
            let budgets = Budgets::new(config, store.clone());
            let (breach, _) = budgets.check(&grant(&run), now).await.unwrap_err();
            assert_eq!(breach, Breach { cap, spent: limit, limit });

            // The negative control: one micro-USD more room and the run may go on.
            let roomy = match cap {
                Cap::ProjectMonthly => BudgetConfig { project_monthly_micros: Some(limit + 1), ..config },
                _ => BudgetConfig { project_daily_micros: Some(limit + 1), ..config },
            };
            Budgets::new(roomy, store.clone()).check(&grant(&run), now).await.unwrap();
        }
        // Four proxies seeded: one read of the run's own usage and one
        // aggregate each, however many runs the project has.
        assert_eq!((store.calls("usage"), store.calls("daily_costs"), store.calls("runs")), (4, 4, 0));
    }

    #[tokio::test]
    async fn what_an_agent_reports_is_never_charged() {
        let (store, run, now) = seeded().await;
        let huge = paid_core::Usage { input: u64::MAX, output: u64::MAX, ..paid_core::Usage::default() };
        for metered in [false, true, false] {
            let report = UsageRecord::reported(run.id, "aider", "m", huge, Some(i64::MAX), metered, now);
            store.record_usage(&report).await.unwrap();
        }
        let budgets = Budgets::new(BudgetConfig { run_cost_micros: Some(1_000), ..BudgetConfig::default() }, store);
        budgets.check(&grant(&run), now).await.unwrap();
        assert_eq!(budgets.spend(run.id), Spend::default(), "reports do not add to the run's spend, nor wrap it");
        // The negative control: a metered request does.
        budgets.charge(&grant(&run), 10, Some(2_000), now);
        assert!(budgets.check(&grant(&run), now).await.is_err());
    }
}
