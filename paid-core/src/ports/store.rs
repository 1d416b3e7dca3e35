//! Durable state: the [`Store`] port, split into cohesive sub-traits
//! ([`Catalog`], [`Runs`], [`Journal`], [`RunLog`], [`Ledger`], [`Audit`]),
//! and the caller sugar of [`StoreExt`].

use async_trait::async_trait;
use chrono::{Duration, NaiveDate};

use crate::{
    AuditEvent, AuthorPin, Failure, LogAppend, LogChunk, LogStream, ModelDecision, NewRun, Outcome, Project, ProjectId,
    RepoRef, Result, Run, RunId, RunState, StepRecord, Timestamp, TrackedIssue, Usage, UsageRecord,
};

/// A state change, applied only if the run is in `from` and the caller holds
/// its lease. A parked run ([`RunState::is_parked`]) holds no lease: moving
/// into a parked state clears the lease in the same write, and moving out
/// of one needs no lease (`owner` is not checked) and leaves the run
/// unleased, for a worker to claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The run.
    pub run_id: RunId,
    /// The state the caller believes the run is in.
    pub from: RunState,
    /// The new state; must be allowed by [`RunState::can_transition_to`].
    pub to: RunState,
    /// The lease owner making the change.
    pub owner: String,
    /// Now.
    pub at: Timestamp,
    /// Fields set in the same write, as [`Runs::patch_run`] sets them: a
    /// step's results (its model, branch, PR, iterations, failure) land
    /// with the move they cause, and a human's pick moves a parked run on
    /// with its new context. The default sets nothing.
    pub patch: RunPatch,
}

/// Fields a step sets on a run, checked against the lease like a transition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunPatch {
    /// The branch.
    pub branch: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// The PR URL.
    pub pr_url: Option<String>,
    /// Agent iterations.
    pub iterations: Option<u32>,
    /// Failure reason.
    pub failure: Option<Failure>,
    /// The run's new context (replaces the whole context).
    pub context: Option<crate::RunContext>,
}

impl RunPatch {
    /// Whether it sets nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Adds `later` on top: each field `later` sets replaces this one's.
    ///
    /// ```
    /// use paid_core::RunPatch;
    ///
    /// let mut patch = RunPatch { model: Some("a".into()), iterations: Some(1), ..RunPatch::default() };
    /// patch.merge(RunPatch { iterations: Some(2), ..RunPatch::default() });
    /// assert_eq!(patch, RunPatch { model: Some("a".into()), iterations: Some(2), ..RunPatch::default() });
    /// ```
    pub fn merge(&mut self, later: RunPatch) {
        let RunPatch { branch, model, pr_url, iterations, failure, context } = later;
        self.branch = branch.or(self.branch.take());
        self.model = model.or(self.model.take());
        self.pr_url = pr_url.or(self.pr_url.take());
        self.iterations = iterations.or(self.iterations);
        self.failure = failure.or(self.failure.take());
        self.context = context.or(self.context.take());
    }
}

/// A request to claim one runnable run.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// The claiming worker.
    pub owner: String,
    /// How long the lease lasts without a heartbeat.
    pub lease: Duration,
    /// Now.
    pub now: Timestamp,
}

/// Which runs to list. Build one with [`RunFilter::all`] or
/// [`RunFilter::active`] and the narrowing methods; new filters do not break
/// callers.
///
/// ```
/// use paid_core::RunFilter;
///
/// # fn example(project: paid_core::ProjectId) {
/// let page = RunFilter::active().project(project).limit(20);
/// assert!(page.active_only);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only this project.
    pub project_id: Option<ProjectId>,
    /// Only this issue (with `project_id`).
    pub issue_number: Option<u64>,
    /// Only runs not yet in an end state.
    pub active_only: bool,
    /// At most this many, newest first. `None` for all.
    pub limit: Option<u32>,
    /// Only runs older than this one (in the newest-first order): the
    /// cursor of the next page is the last run of the previous one.
    pub before: Option<RunId>,
}

impl RunFilter {
    /// Every run.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only runs not yet in an end state.
    pub fn active() -> Self {
        Self { active_only: true, ..Self::default() }
    }

    /// Only `project`'s runs.
    pub fn project(mut self, project: ProjectId) -> Self {
        self.project_id = Some(project);
        self
    }

    /// Only runs of `issue` (with [`RunFilter::project`]).
    pub fn issue(mut self, issue: u64) -> Self {
        self.issue_number = Some(issue);
        self
    }

    /// At most `limit` runs.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Only runs older than `run` (the next page's cursor).
    pub fn before(mut self, run: RunId) -> Self {
        self.before = Some(run);
        self
    }
}

/// A chunk of output to append to a run's log, under a per-run byte cap.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendLog<'a> {
    /// The run.
    pub run_id: RunId,
    /// Source stream.
    pub stream: LogStream,
    /// The text.
    pub text: &'a str,
    /// The run's total log budget in bytes. When an append would exceed it,
    /// the rest is cut and [`crate::TRUNCATION_MARKER`] is stored once.
    pub cap_bytes: usize,
    /// Now.
    pub at: Timestamp,
}

/// Sums over usage records: what [`Ledger::spend`] and [`Ledger::daily_costs`]
/// answer for each group.
///
/// Sums never wrap: each saturates at the bounds of its field's type (costs
/// are never negative in practice, so a saturated sum is the exact sum
/// clamped). [`UsageTotals::add`] is the reference a store's aggregate must
/// equal: summing a group's records from [`Ledger::usage`] with it gives the
/// group's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// Usage records counted.
    pub records: u64,
    /// Those of them without a price (`cost_micros` is `None`): their cost is
    /// unknown, not zero, and adds nothing to `cost_micros`.
    pub unpriced_records: u64,
    /// Cost of the priced records, micro-USD.
    pub cost_micros: i64,
    /// Tokens, per bucket.
    pub usage: Usage,
}

impl UsageTotals {
    /// Counts one record.
    pub fn add(&mut self, record: &UsageRecord) {
        self.merge(&Self {
            records: 1,
            unpriced_records: u64::from(record.cost_micros.is_none()),
            cost_micros: record.cost_micros.unwrap_or(0),
            usage: record.usage,
        });
    }

    /// Adds another group's totals.
    pub fn merge(&mut self, other: &Self) {
        self.records = self.records.saturating_add(other.records);
        self.unpriced_records = self.unpriced_records.saturating_add(other.unpriced_records);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
        let (u, o) = (&mut self.usage, &other.usage);
        u.input = u.input.saturating_add(o.input);
        u.cache_read = u.cache_read.saturating_add(o.cache_read);
        u.cache_write = u.cache_write.saturating_add(o.cache_write);
        u.output = u.output.saturating_add(o.output);
        u.reasoning = u.reasoning.saturating_add(o.reasoning);
    }

    /// All tokens, every bucket (saturating).
    pub fn tokens(&self) -> u64 {
        let u = &self.usage;
        [u.cache_read, u.cache_write, u.output, u.reasoning].into_iter().fold(u.input, u64::saturating_add)
    }

    /// The totals of `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a UsageRecord>) -> Self {
        let mut totals = Self::default();
        for r in records {
            totals.add(r);
        }
        totals
    }
}

/// How [`Ledger::spend`] groups usage records.
///
/// Exhaustive on purpose: a new grouping must be implemented by every
/// backend, so adding one breaks them at compile time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SpendGroup {
    /// One row per project.
    #[default]
    Project,
    /// One row per run.
    Run,
}

/// Which usage records [`Ledger::spend`] sums, and how it groups them.
///
/// Filters combine (all must hold); unset filters match everything.
///
/// ```
/// use paid_core::{ProjectId, SpendGroup, SpendQuery};
///
/// # fn example(project: ProjectId, month_start: paid_core::Timestamp) {
/// // This month's spend of one project.
/// let q = SpendQuery::per_project().project(project).since(month_start);
/// assert_eq!(q.group, SpendGroup::Project);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpendQuery {
    /// One row per project or per run.
    pub group: SpendGroup,
    /// Only records at or after this time (`at >= since`).
    pub since: Option<Timestamp>,
    /// Only records of this project's runs.
    pub project_id: Option<ProjectId>,
    /// Only records of this run.
    pub run_id: Option<RunId>,
}

impl SpendQuery {
    /// Every record, one row per project.
    pub fn per_project() -> Self {
        Self { group: SpendGroup::Project, ..Self::default() }
    }

    /// Every record, one row per run.
    pub fn per_run() -> Self {
        Self { group: SpendGroup::Run, ..Self::default() }
    }

    /// Only records at or after `since`.
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }

    /// Only records of `project`'s runs.
    pub fn project(mut self, project: ProjectId) -> Self {
        self.project_id = Some(project);
        self
    }

    /// Only records of `run`.
    pub fn run(mut self, run: RunId) -> Self {
        self.run_id = Some(run);
        self
    }
}

/// One group of [`Ledger::spend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    /// The project.
    pub project_id: ProjectId,
    /// The run with [`SpendGroup::Run`]; `None` with [`SpendGroup::Project`].
    pub run_id: Option<RunId>,
    /// The sums of the group's records.
    pub totals: UsageTotals,
}

/// Which usage records [`Ledger::daily_costs`] sums.
///
/// Filters combine (all must hold); unset filters match everything.
///
/// ```
/// use paid_core::CostQuery;
///
/// # fn example(project: paid_core::ProjectId) {
/// let everything = CostQuery::all();
/// let one_project = CostQuery::all().project(project);
/// assert_ne!(everything, one_project);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CostQuery {
    /// Only records at or after this time (`at >= since`).
    pub since: Option<Timestamp>,
    /// Only records of this project's runs.
    pub project_id: Option<ProjectId>,
}

impl CostQuery {
    /// Every record.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only records at or after `since`.
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }

    /// Only records of `project`'s runs.
    pub fn project(mut self, project: ProjectId) -> Self {
        self.project_id = Some(project);
        self
    }
}

/// One group of [`Ledger::daily_costs`]: a project's usage of one model on
/// one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCost {
    /// The UTC date of the records' `at`.
    pub day: NaiveDate,
    /// The project.
    pub project_id: ProjectId,
    /// The model ([`UsageRecord::model`]).
    pub model: String,
    /// The sums of the group's records.
    pub totals: UsageTotals,
}

/// Durable state of Paid: every store capability at once. Implemented by
/// `paid-store-sqlite`, `paid-store-postgres`, and anything passing
/// `paid_core::testing::store` (feature `testing`).
///
/// `Store` has no methods of its own. It is the sum of six cohesive
/// sub-traits, and every type implementing all six is a `Store` (blanket
/// impl), so `Arc<dyn Store>` is what callers hold:
///
/// | trait | concern |
/// |---|---|
/// | [`Catalog`] | projects, tracked issues, webhook delivery keys |
/// | [`Runs`] | runs, their state machine, leases and cancellation |
/// | [`Journal`] | the step journal (exactly-once side effects) |
/// | [`RunLog`] | run output logs |
/// | [`Ledger`] | usage, spend, model decisions, outcomes |
/// | [`Audit`] | audit events |
///
/// Implementors write the six sub-traits (every method is atomic); callers
/// bring them into scope with `use paid_core::store::prelude::*` (or the
/// crate root re-exports) and get the convenience calls of [`StoreExt`] on
/// top.
pub trait Store: Catalog + Runs + Journal + RunLog + Ledger + Audit {}

impl<T: Catalog + Runs + Journal + RunLog + Ledger + Audit + ?Sized> Store for T {}

/// What Paid works on: projects and the issues it tracks in them, and the
/// forge deliveries (webhooks) already accepted about them.
///
/// Part of [`Store`]; implemented by every store backend and layer.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Inserts or replaces a project.
    async fn put_project(&self, project: &Project) -> Result<()>;
    /// Reads a project.
    async fn project(&self, id: ProjectId) -> Result<Project>;
    /// All projects, oldest first.
    async fn projects(&self) -> Result<Vec<Project>>;
    /// Deletes a project that has no active run.
    async fn delete_project(&self, id: ProjectId) -> Result<()>;
    /// Inserts or updates a tracked issue.
    async fn put_issue(&self, issue: &TrackedIssue) -> Result<()>;
    /// Reads a tracked issue.
    async fn issue(&self, project: ProjectId, number: u64) -> Result<TrackedIssue>;
    /// A project's tracked issues, by number.
    async fn issues(&self, project: ProjectId) -> Result<Vec<TrackedIssue>>;
    /// Pins `login` (compared case-insensitively, stored lowercase) to the
    /// forge user id `user_id` in `project`, unless it is pinned already.
    /// Returns the id the login is pinned to: `user_id` on the first call,
    /// the first call's id on every later one, whatever id it names. Of
    /// concurrent first calls, from any handle, one wins and all return its
    /// id. Fails with [`crate::Error::NotFound`] for a missing project.
    async fn pin_author(&self, project: ProjectId, login: &str, user_id: u64, at: Timestamp) -> Result<u64>;
    /// A project's pinned logins, by login.
    async fn author_pins(&self, project: ProjectId) -> Result<Vec<AuthorPin>>;
    /// Records an inbound delivery (a forge webhook) under `key` (e.g. the
    /// digest of its signed body), received at `at`, so a replay is refused
    /// after a restart and on every node sharing the store.
    ///
    /// `Ok(true)` when `key` is new, or was last recorded before
    /// `forget_before` (the replay window has passed); `Ok(false)`, and
    /// nothing written, when it was recorded at or after `forget_before`: a
    /// replay. Of concurrent calls with one key, on any handle, exactly one
    /// gets `true`. The same write drops every other key recorded before
    /// `forget_before`, so the store keeps one replay window of keys.
    async fn record_delivery(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<bool>;
    /// Takes or renews the lease on polling `project` for `owner` until
    /// `until`, so that one node of a cluster polls each project at a time.
    /// `Ok(true)` when `owner` now holds it: nobody did, `owner` did, or the
    /// holder's lease ran out (`expires <= now`); `Ok(false)`, and nothing
    /// written, while another owner's lease runs. Of concurrent calls for one
    /// project, on any handle, at most one other than the holder's wins.
    async fn claim_poll(&self, project: ProjectId, owner: &str, until: Timestamp, now: Timestamp) -> Result<bool>;
}

/// Run state: creating, reading and listing runs, moving them through the
/// state machine ([`RunState::can_transition_to`]) under a lease, patching
/// their fields, cancelling them, and the lease itself (claim, heartbeat,
/// release).
///
/// Part of [`Store`]. Lease-checked writes (`transition`, `patch_run`) fail
/// with [`crate::Error::LeaseLost`] when `owner` does not hold an unexpired
/// lease.
#[async_trait]
pub trait Runs: Send + Sync + 'static {
    /// Queues a run. Fails with [`crate::Error::AlreadyExists`] when the
    /// issue already has an active run of the same kind.
    async fn create_run(&self, run: &NewRun) -> Result<Run>;
    /// Reads a run.
    async fn run(&self, id: RunId) -> Result<Run>;
    /// Lists runs, newest first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    /// Moves a run to a new state (compare-and-set on `from`, lease-checked
    /// but for parked runs, see [`Transition`]).
    async fn transition(&self, t: &Transition) -> Result<Run>;
    /// Sets fields on a run (lease-checked).
    async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run>;
    /// Moves a run that is not leased (or whose lease expired) straight to
    /// `cancelled`; a leased run (or one in `cleaning`, on its way to an
    /// end already) is marked for cancellation and its worker stops it; a
    /// parked run ([`RunState::is_parked`]) is marked and moves to
    /// `cleaning` with [`crate::Failure::cancelled`], for a worker to clean
    /// up after it. Returns the run.
    async fn request_cancel(&self, id: RunId, at: Timestamp) -> Result<Run>;
    /// Whether cancellation was requested.
    async fn cancel_requested(&self, id: RunId) -> Result<bool>;
    /// Claims the highest-priority runnable run: not in an end state, not
    /// parked ([`RunState::is_parked`]), and unleased or with an expired
    /// lease.
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Run>>;
    /// Extends a held lease.
    async fn heartbeat(&self, id: RunId, owner: &str, lease: Duration, now: Timestamp) -> Result<()>;
    /// Gives a lease up.
    async fn release(&self, id: RunId, owner: &str) -> Result<()>;
}

/// The step journal: one record per step a run takes, written before the
/// step's side effect and finished after it, so a resumed run knows what
/// already happened.
///
/// Part of [`Store`]; needs [`Runs`] because finishing a step and moving the
/// run on is one write ([`Journal::finish_step_and_transition`]).
/// `begin_step` and `finish_step` are lease-checked.
#[async_trait]
pub trait Journal: Runs {
    /// Journals a step before its side effect. Returns the new record.
    async fn begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord>;
    /// Marks the latest record of `step` done (with output) or failed (with an error).
    async fn finish_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        result: std::result::Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> Result<StepRecord>;
    /// The journal, in order.
    async fn steps(&self, id: RunId) -> Result<Vec<StepRecord>>;
    /// Resumes or journals `step`: when the journal's last record is `step`
    /// and done (its worker died after the side effect, before the
    /// transition), returns that record (status `done`) and writes nothing;
    /// otherwise journals the step as [`Journal::begin_step`] does and returns
    /// the new record (status `started`).
    ///
    /// The engine calls it before each side effect. The default reads the
    /// journal, then begins; the stores override it with one round trip.
    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        if let Some(last) = self.steps(id).await?.pop()
            && last.step == step
            && last.status == crate::StepStatus::Done
        {
            return Ok(last);
        }
        self.begin_step(id, owner, step, idempotency_key, at).await
    }
    /// [`Journal::finish_step`] of `t.from` with `result`, then
    /// [`Runs::transition`] `t`, as one atomic write: both or neither. Fails
    /// as `finish_step` would, then as `transition` would. Returns the moved
    /// run.
    ///
    /// The engine calls it to mark an idempotent step done and move on in one
    /// commit. The default makes the two calls one after the other (a crash
    /// between them leaves a done step whose run did not move, which the
    /// engine resumes without repeating the step); the stores override it
    /// with one transaction.
    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        result: std::result::Result<serde_json::Value, String>,
    ) -> Result<Run> {
        self.finish_step(t.run_id, &t.owner, t.from, result, t.at).await?;
        self.transition(t).await
    }
}

/// A run's output log: bounded appends, reads from a sequence number, and
/// pruning of finished runs' logs.
///
/// Part of [`Store`]. The hottest write path (commands' output, in batches).
#[async_trait]
pub trait RunLog: Send + Sync + 'static {
    /// Appends to a run's bounded log.
    async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend>;
    /// A run's log chunks with `seq > after`, in order.
    async fn logs(&self, id: RunId, after: u64) -> Result<Vec<LogChunk>>;
    /// Deletes the log chunks of every run that reached an end state strictly
    /// before `finished_before` (its `finished_at < finished_before`), to
    /// reclaim disk. Active runs and runs that ended at or after the cutoff
    /// keep their logs; runs, steps, usage, decisions, outcomes and audit
    /// events are kept. Returns how many chunks were deleted (0 when there
    /// was nothing to prune). Afterwards `logs` of a pruned run is empty.
    async fn prune_logs(&self, finished_before: Timestamp) -> Result<u64>;
}

/// What runs cost and how they went: LLM usage records and their
/// aggregates (spend, daily costs), the model decision of each run, and
/// each run's outcome.
///
/// Part of [`Store`].
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Records LLM usage.
    async fn record_usage(&self, usage: &UsageRecord) -> Result<()>;
    /// A run's usage records, in order.
    async fn usage(&self, id: RunId) -> Result<Vec<UsageRecord>>;
    /// Sums the usage records `req` selects, per project or per run, in one
    /// aggregate query (not one [`Ledger::usage`] per run).
    ///
    /// Returns one row per group with at least one selected record (a
    /// project or run without one has no row), ordered by project id, then
    /// run id. Each row's totals equal [`UsageTotals::of`] its records.
    async fn spend(&self, req: &SpendQuery) -> Result<Vec<Spend>>;
    /// Sums the usage records `req` selects per UTC day, project and model,
    /// in one aggregate query.
    ///
    /// Returns one row per group with at least one selected record, ordered
    /// by day, then project id, then model (bytewise). Each row's totals
    /// equal [`UsageTotals::of`] its records.
    async fn daily_costs(&self, req: &CostQuery) -> Result<Vec<DailyCost>>;
    /// Records (replaces) a run's model decision.
    async fn record_decision(&self, decision: &ModelDecision) -> Result<()>;
    /// A run's model decision.
    async fn decision(&self, id: RunId) -> Result<Option<ModelDecision>>;
    /// Records (replaces) a run's outcome.
    async fn record_outcome(&self, outcome: &Outcome) -> Result<()>;
    /// A project's outcomes, newest first.
    async fn outcomes(&self, project: ProjectId) -> Result<Vec<Outcome>>;
}

/// The append-only audit trail.
///
/// Part of [`Store`].
#[async_trait]
pub trait Audit: Send + Sync + 'static {
    /// Appends an audit event.
    async fn audit(&self, event: &AuditEvent) -> Result<()>;
    /// Audit events, oldest first, optionally for one project.
    async fn audit_events(&self, project: Option<ProjectId>) -> Result<Vec<AuditEvent>>;
}

/// Convenience calls over [`Store`], for callers. Blanket-implemented for
/// every store (and `dyn Store`): implementors never write it, and it
/// bypasses no layer, as it only calls the port's own methods.
#[async_trait]
pub trait StoreExt: Store {
    /// The project of `repo`, if one is registered (owner and name compared
    /// ASCII case-insensitively, as GitHub does).
    async fn project_by_repo(&self, repo: &RepoRef) -> Result<Option<Project>> {
        Ok(self
            .projects()
            .await?
            .into_iter()
            .find(|p| p.repo.owner.eq_ignore_ascii_case(&repo.owner) && p.repo.name.eq_ignore_ascii_case(&repo.name)))
    }

    /// A project's runs not yet in an end state, newest first.
    async fn active_runs(&self, project: ProjectId) -> Result<Vec<Run>> {
        self.runs(&RunFilter::active().project(project)).await
    }
}

impl<T: Store + ?Sized> StoreExt for T {}

/// The store traits, for `use paid_core::store::prelude::*`: method calls
/// on a store need the sub-trait that declares them in scope.
pub mod prelude {
    pub use super::{Audit, Catalog, Journal, Ledger, RunLog, Runs, Store, StoreExt};
}
