//! The engine: the one place that sequences a run's steps.
//!
//! A run is a persisted state machine ([`crate::RunState`]). The engine
//! claims a run with a lease, then [`Engine::advance`]s it one state at a
//! time: each step is journaled in the store before its side effect and
//! marked done after, and every side effect carries an idempotency key
//! (the branch for push, the head branch for the PR, a hidden marker for the
//! comment), so a run resumed by another worker never pushes twice, opens a
//! second PR or comments twice.
//!
//! [`Engine`] is a facade over crate-private roles, each holding only the
//! ports it uses (taken from the builder's parts):
//!
//! - `intake/` (`Intake`): polling issues and PR feedback, trust, queuing
//!   and cancelling runs. Store, forge, clock, ids, events; the learning
//!   hooks (PR feedback rescores outcomes).
//! - `drive/` (`Driver`): claiming runs and driving them through their
//!   steps (journal, sandbox sessions, delivery, planning, follow-up
//!   rebases). Every port a step uses; the learning hooks and the
//!   comparison role.
//! - `comparison/` (`Comparison`): comparison runs, their candidates and a
//!   human's pick. Store, runtime, workspaces, credentials, clock, events
//!   and the projects' specs; the learning hooks; the driver is passed in
//!   where a comparison runs as a step.
//! - `learn.rs` (`LearningHooks`): prompt picks and rendering, outcome
//!   scoring, evolution. The store (journal reads), the learning loop and
//!   the prompt template.
//! - `maintenance.rs` (`Maintenance`): the sweep. Store, runtime,
//!   workspaces, clock.

mod builder;
mod comparison;
mod config;
mod drive;
mod events;
mod intake;
mod learn;
mod maintenance;
pub mod prompt;
mod templates;

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use builder::EngineBuilder;
pub use comparison::{
    Candidate, CandidateReport, CompareSpec, Criterion, Ranking, SelectionRule, compare_table, worktree_ids,
};
pub use config::{EngineConfig, MAX_PR_BODY, RetryConfig, StepTimeouts};
pub use drive::{
    ClaimGate, ExecOutput, PLAN_TEMPLATE, PlannedIssue, REBASE_ACTION, RunLogger, SandboxSession, WorkerOptions,
    comment_marker,
};
pub use events::EngineEvent;
pub use intake::{EDITED_ACTION, FOLLOW_UP_ACTION, FollowUpContext, FollowUpReport, PollReport, UNTRUSTED_ACTION};
pub use maintenance::{SweepOptions, SweepReport};

use crate::learning::PromptVersionId;
use crate::learning::evolution::{EvolutionConfig, EvolutionReport};
use crate::metrics::Metrics;
use crate::{LlmProvider, Project, ProjectId, Result, Run, RunId, Store};

/// Runs issues through the pipeline. Cheap to clone; clones share state.
///
/// ```no_run
/// # async fn demo(engine: paid_core::engine::Engine, project: paid_core::ProjectId) -> paid_core::Result<()> {
/// engine.poll_project(project).await?;   // queue runs for labeled issues
/// while let Some(run) = engine.run_once().await? {
///     println!("run {} ended {}", run.id, run.state);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("worker_id", &self.inner.config.worker_id).finish_non_exhaustive()
    }
}

/// The roles, and what the facade hands out itself.
struct Inner {
    intake: intake::Intake,
    driver: drive::Driver,
    comparison: comparison::Comparison,
    learning: learn::LearningHooks,
    maintenance: maintenance::Maintenance,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    config: Arc<EngineConfig>,
    events: events::Events,
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    /// Progress events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// The store this engine uses.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The metrics this engine records.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
}

/// Intake: issues and PR feedback into queued runs.
impl Engine {
    /// Looks for triggered issues of a project and queues a run for each new
    /// one from a trusted author. Untrusted issues are tracked (text kept out
    /// of prompts), audited and skipped. Issues labeled `paid-plan` get a
    /// plan run, the others a build run.
    ///
    /// It also notices tracked issues that were closed on the forge: they are
    /// marked closed and their active runs cancelled (see
    /// [`Engine::poll_closed`]).
    pub async fn poll_project(&self, project_id: ProjectId) -> Result<PollReport> {
        self.inner.intake.poll_project(project_id).await
    }

    /// Queues a run for one issue (a manual trigger). Fails with
    /// [`crate::Error::Untrusted`] for issues from authors outside the
    /// allowlist, and [`crate::Error::AlreadyExists`] when the issue has an
    /// active run; in both cases no run is written.
    pub async fn enqueue(&self, project_id: ProjectId, issue: u64) -> Result<Run> {
        self.inner.intake.enqueue_with(project_id, issue, None).await
    }

    /// Queues a comparison run for one issue: the issue is run on every
    /// candidate of `spec` in parallel sandboxes and the winner (by
    /// `spec.rule`) becomes the PR. Same checks as [`Engine::enqueue`].
    pub async fn enqueue_compare(&self, project_id: ProjectId, issue: u64, spec: CompareSpec) -> Result<Run> {
        spec.validate()?;
        self.inner.intake.enqueue_with(project_id, issue, Some(spec)).await
    }

    /// Requests cancellation of a run. An unleased run ends at once; a
    /// running one is stopped by its worker, which still cleans up; a run
    /// awaiting a choice (parked, with no worker) moves to `cleaning`, where
    /// a worker claims it and cleans up.
    pub async fn cancel(&self, run_id: RunId) -> Result<Run> {
        self.inner.intake.cancel(run_id).await
    }

    /// Marks tracked open issues that the forge reports closed as closed,
    /// and cancels their active runs. Returns their numbers.
    ///
    /// The cursor is the oldest `updated_at` of the tracked open issues (less
    /// a margin for clock skew): every closure of one of them happened after
    /// Paid last saw it change, so nothing is missed, and the cursor only
    /// moves when the set of tracked open issues does, which keeps idle polls
    /// conditional (free on GitHub). It lives in the store, so it survives
    /// restarts and is shared by workers. Forges that cannot list closed
    /// issues (the port's default) are skipped with a debug log.
    pub async fn poll_closed(&self, project: &Project) -> Result<Vec<u64>> {
        self.inner.intake.poll_closed(project).await
    }

    /// Reads the feedback on the PRs of a project's succeeded build runs,
    /// records it in their outcomes (merged or closed, CI, 👍/👎 of trusted
    /// authors), and queues a follow-up run on the PR's branch for each open
    /// PR with failing checks or trusted review comments. Feedback already
    /// handed to a follow-up run (same head commit, same text) queues
    /// nothing again.
    pub async fn follow_up(&self, project_id: ProjectId) -> Result<FollowUpReport> {
        self.inner.intake.follow_up(project_id).await
    }
}

/// Driving: claiming runs and moving them through their steps.
impl Engine {
    /// Claims the next runnable run for this worker, if any.
    pub async fn claim_next(&self) -> Result<Option<Run>> {
        self.inner.driver.claim_next().await
    }

    /// Executes the step of the run's current state once and moves it on.
    /// The caller must hold the run's lease (see [`Engine::claim_next`]).
    /// Returns the run in its new state; a run in an end state is returned
    /// unchanged.
    pub async fn advance(&self, run_id: RunId) -> Result<Run> {
        self.inner.driver.advance(run_id).await
    }

    /// Drives a claimed run to an end state, renewing the lease as it goes
    /// and stopping the agent when cancellation is requested. A run that
    /// stops short of an end (an error, a shutdown) has its lease released;
    /// an ended run's lease binds nothing (no claim takes an ended run, no
    /// project's limit counts one) and is left to expire. A run that parks
    /// ([`crate::RunState::is_parked`]: a comparison awaiting a human pick)
    /// is returned as it parks: the transition gave its lease up.
    pub async fn drive(&self, run_id: RunId) -> Result<Run> {
        self.inner.driver.drive_until(run_id, &CancellationToken::new()).await
    }

    /// [`Engine::drive`], stopping between steps when `shutdown` is
    /// cancelled: the lease is released and the run, still in its current
    /// state, is returned for another worker to resume.
    pub async fn drive_until(&self, run_id: RunId, shutdown: &CancellationToken) -> Result<Run> {
        self.inner.driver.drive_until(run_id, shutdown).await
    }

    /// The worker loop: claims and drives runs until `shutdown` is cancelled.
    /// When idle it waits `opts.idle_wait` (or less, when `opts.wake` fires: a
    /// store notification such as PostgreSQL `LISTEN/NOTIFY`). While
    /// `opts.accepting` says no (e.g. the disk is nearly full) it claims
    /// nothing. On shutdown it stops claiming, lets the current step finish,
    /// releases the lease and returns; another worker resumes the run from its
    /// journal. Each run is driven in a `run` span carrying `trace_id`,
    /// `run_id` and `project_id`. Returns how many runs it finished.
    pub async fn run_until_shutdown(&self, shutdown: CancellationToken, opts: WorkerOptions) -> Result<u64> {
        self.inner.driver.run_until_shutdown(shutdown, opts).await
    }

    /// Claims one run and drives it to its end. `None` when nothing is runnable.
    pub async fn run_once(&self) -> Result<Option<Run>> {
        self.inner.driver.run_once().await
    }

    /// Runs until no run is runnable. Returns the runs it finished.
    pub async fn run_until_idle(&self) -> Result<Vec<Run>> {
        let mut done = Vec::new();
        while let Some(run) = self.run_once().await? {
            done.push(run);
        }
        Ok(done)
    }
}

/// Comparison runs: their candidates and a human's pick.
impl Engine {
    /// The candidates of a comparison run, once they are done (empty
    /// otherwise), for a UI to show before [`Engine::pick`].
    pub async fn candidates(&self, run_id: RunId) -> Result<Vec<CandidateReport>> {
        self.inner.comparison.candidates(run_id).await
    }

    /// A human picks the winner of a run awaiting a choice, by candidate
    /// name (`c2-model`) or model. The run moves on to `committing` at once
    /// (it holds no lease, so none is needed), and the next worker to claim
    /// it goes on with the pick: commit, policy check, push, PR. Candidates
    /// that did not finish cannot be picked. The pick is recorded in the
    /// run's context in the same write that moves it on, so the first pick
    /// wins and a later one is refused.
    pub async fn pick(&self, run_id: RunId, candidate: &str) -> Result<Run> {
        self.inner.comparison.pick(run_id, candidate).await
    }
}

/// Learning: prompt versions and evolution.
impl Engine {
    /// The prompt version a run rendered (for a comparison run, the
    /// winner's): its context's, else its journal's. `None` when learning
    /// was not configured or the run has not been provisioned yet.
    pub async fn prompt_version(&self, run_id: RunId) -> Result<Option<PromptVersionId>> {
        self.inner.learning.prompt_version(run_id).await
    }

    /// Runs the evolution workflow of the engine's prompt with `llm` (for an
    /// operator's scheduler; the workflow skips itself when it is not due).
    /// `None` when the engine has no learning loop.
    pub async fn evolve_due(&self, llm: &dyn LlmProvider, config: &EvolutionConfig) -> Result<Option<EvolutionReport>> {
        self.inner.learning.evolve_due(llm, config).await
    }
}

/// Maintenance.
impl Engine {
    /// Removes what no active run owns: orphan worktrees
    /// ([`crate::Workspaces::sweep_orphans`]) and whatever the runtime
    /// manages for runs that ended or that this store does not know
    /// ([`crate::SandboxRuntime::reap`]: sandboxes, and the runtime's own
    /// extras such as the egress forwarder or warm-pool entries).
    ///
    /// Everything owned by a run not in an end state stays: its worktree,
    /// every comparison candidate's worktree (a parked run's included) and
    /// its sandboxes. So does anything younger than the ages of `opts`.
    ///
    /// The store's active runs are read first; if they cannot be read,
    /// nothing is removed and the error is returned. Afterwards a failing
    /// part (the worktree sweep, listing sandboxes or reading their runs, the
    /// runtime's reap) is noted in [`SweepReport::notes`] and the others go
    /// on; the runtime is not reaped when its sandboxes' runs are unknown.
    ///
    /// A sandbox's run is the one it is labelled with
    /// ([`crate::SandboxInfo::run_id`]). A sandbox of a run this store does
    /// not know is kept for [`SweepOptions::unknown_sandbox_min_age`]; one
    /// labelled with something that is not a run id is reaped like an
    /// ended run's.
    ///
    /// ```no_run
    /// # async fn demo(engine: paid_core::engine::Engine) -> paid_core::Result<()> {
    /// use paid_core::engine::SweepOptions;
    ///
    /// let report = engine.sweep(&SweepOptions::default()).await?;
    /// println!("removed {} worktrees, {} sandboxes", report.worktrees.len(), report.runtime.sandboxes.len());
    /// # Ok(()) }
    /// ```
    pub async fn sweep(&self, opts: &SweepOptions) -> Result<SweepReport> {
        self.inner.maintenance.sweep(opts).await
    }
}
