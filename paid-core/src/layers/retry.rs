//! [`RetryStore`]: a [`Store`] layer that rides out a database restart.

use std::sync::Arc;
use std::time::Duration;

use crate::store::prelude::*;
use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;
use tracing::warn;

use crate::{
    AppendLog, AuditEvent, AuthorPin, ClaimRequest, CostQuery, DailyCost, Error, LogAppend, LogChunk, ModelDecision,
    NewRun, Outcome, Project, ProjectId, Result, Run, RunFilter, RunId, RunPatch, RunState, Spend, SpendQuery,
    StepRecord, StepStatus, Store, Timestamp, TrackedIssue, Transition, UsageRecord,
};

/// The shortest wait between two attempts (before jitter).
const MIN_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Retries retryable [`Store`] errors for up to a patience window per call:
/// the one place store calls are retried (see [`crate::layers`]).
///
/// A call failing with a retryable error ([`Error::is_retryable`]: the
/// database is unreachable or restarting, a serialization race) is tried
/// again with exponential backoff and jitter (50 ms, doubling, at most 2 s
/// apart) until it succeeds, fails with an error that is not retryable, or
/// [`RetryStore::patience`] has passed since its first attempt. When patience
/// runs out, the last error comes back as [`Error::RetriesExhausted`], which
/// is not retryable: the engine's step retries above this layer do not retry
/// a database that stayed down. Errors that were never retryable come back
/// unchanged, after one attempt.
///
/// A retried *write* may have committed before its connection broke, so a
/// later attempt can be refused for having already happened. Those answers
/// are recognized, after at least one retryable failure only, and turned
/// back into the success they stand for:
///
/// - `transition` and `finish_step_and_transition` refused (the state
///   moved, the lease changed, the step is no longer started) while the run
///   is in the target state under our lease: done, the moved run is returned;
/// - `finish_step` finding no started record while the step's latest record
///   is finished: done, that record is returned;
/// - `create_run` refused for an existing id of the same issue: the run is
///   read back;
/// - `claim` answering "nothing runnable": a run already leased to us (an
///   earlier attempt's lease) is returned.
///
/// Every other call is idempotent, or harmless when repeated (a journal
/// record begun twice, a log chunk or audit event written twice). A retried
/// `record_delivery` whose first attempt committed answers `false`: the
/// delivery is taken for a replay and dropped, which is the safe side (a
/// webhook only makes Paid notice sooner; polling still sees the change).
///
/// ```
/// use std::{sync::Arc, time::Duration};
///
/// use paid_core::{Store, layers::RetryStore};
///
/// # fn wrap(postgres: Arc<dyn Store>) {
/// let store: Arc<dyn Store> = Arc::new(RetryStore::new(postgres, Duration::from_secs(60)));
/// # }
/// ```
#[derive(Clone)]
pub struct RetryStore {
    inner: Arc<dyn Store>,
    patience: Duration,
}

impl std::fmt::Debug for RetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryStore").field("patience", &self.patience).finish_non_exhaustive()
    }
}

impl RetryStore {
    /// Wraps `inner`, retrying each call for up to `patience`.
    pub fn new(inner: Arc<dyn Store>, patience: Duration) -> Self {
        Self { inner, patience }
    }

    /// How long one call keeps retrying, from its first attempt.
    pub fn patience(&self) -> Duration {
        self.patience
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Runs `call` until it succeeds, fails for good, or patience runs out
    /// (then the error is made [`Error::RetriesExhausted`]). Returns the
    /// result and whether an attempt failed retryably before it.
    async fn retry<T, F, Fut>(&self, what: &'static str, mut call: F) -> (Result<T>, bool)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(MIN_DELAY)
            .with_max_delay(MAX_DELAY)
            .with_max_times(usize::MAX)
            .with_jitter()
            .build();
        let mut attempts: u32 = 0;
        loop {
            attempts = attempts.saturating_add(1);
            match call().await {
                Err(e) if e.is_retryable() => {
                    let left = self.patience.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        warn!(call = what, error = %e, attempts, "store call failed; giving up");
                        return (Err(e.exhausted(attempts)), attempts > 1);
                    }
                    let delay = delays.next().unwrap_or(MAX_DELAY).min(left);
                    warn!(call = what, error = %e, ?delay, "store call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return (other, attempts > 1),
            }
        }
    }

    /// Whether `t` already happened: the run is in `t.to` under `t.owner`'s lease.
    async fn moved(&self, t: &Transition) -> Option<Run> {
        match self.run(t.run_id).await {
            Ok(run) if run.state == t.to && run.lease_owner.as_deref() == Some(t.owner.as_str()) => Some(run),
            _ => None,
        }
    }
}

macro_rules! plain {
    ($self:ident, $what:literal, $call:expr) => {
        $self.retry($what, || $call).await.0
    };
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Catalog for RetryStore {
    async fn put_project(&self, project: &Project) -> Result<()> {
        plain!(self, "put_project", self.inner.put_project(project))
    }

    async fn project(&self, id: ProjectId) -> Result<Project> {
        plain!(self, "project", self.inner.project(id))
    }

    async fn projects(&self) -> Result<Vec<Project>> {
        plain!(self, "projects", self.inner.projects())
    }

    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        plain!(self, "delete_project", self.inner.delete_project(id))
    }

    async fn put_issue(&self, issue: &TrackedIssue) -> Result<()> {
        plain!(self, "put_issue", self.inner.put_issue(issue))
    }

    async fn issue(&self, project: ProjectId, number: u64) -> Result<TrackedIssue> {
        plain!(self, "issue", self.inner.issue(project, number))
    }

    async fn issues(&self, project: ProjectId) -> Result<Vec<TrackedIssue>> {
        plain!(self, "issues", self.inner.issues(project))
    }

    /// Safe to retry: a repeated pin returns the id pinned first.
    async fn pin_author(&self, project: ProjectId, login: &str, user_id: u64, at: Timestamp) -> Result<u64> {
        plain!(self, "pin_author", self.inner.pin_author(project, login, user_id, at))
    }

    async fn author_pins(&self, project: ProjectId) -> Result<Vec<AuthorPin>> {
        plain!(self, "author_pins", self.inner.author_pins(project))
    }

    async fn record_delivery(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<bool> {
        plain!(self, "record_delivery", self.inner.record_delivery(key, at, forget_before))
    }

    async fn claim_poll(&self, project: ProjectId, owner: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        // Idempotent: a retried claim by the same owner renews its own lease.
        plain!(self, "claim_poll", self.inner.claim_poll(project, owner, until, now))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Runs for RetryStore {
    async fn create_run(&self, run: &NewRun) -> Result<Run> {
        match self.retry("create_run", || self.inner.create_run(run)).await {
            (Err(e @ Error::AlreadyExists { .. }), true) => match self.run(run.id).await {
                // An earlier attempt committed.
                Ok(existing)
                    if existing.project_id == run.project_id
                        && existing.issue_number == run.issue_number
                        && existing.kind == run.kind =>
                {
                    Ok(existing)
                }
                _ => Err(e),
            },
            (result, _) => result,
        }
    }

    async fn run(&self, id: RunId) -> Result<Run> {
        plain!(self, "run", self.inner.run(id))
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        plain!(self, "runs", self.inner.runs(filter))
    }

    async fn transition(&self, t: &Transition) -> Result<Run> {
        match self.retry("transition", || self.inner.transition(t)).await {
            (Err(e @ (Error::IllegalTransition { .. } | Error::LeaseLost { .. })), true) => {
                self.moved(t).await.ok_or(e)
            }
            (result, _) => result,
        }
    }

    async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run> {
        plain!(self, "patch_run", self.inner.patch_run(id, owner, patch, at))
    }

    async fn request_cancel(&self, id: RunId, at: Timestamp) -> Result<Run> {
        plain!(self, "request_cancel", self.inner.request_cancel(id, at))
    }

    async fn cancel_requested(&self, id: RunId) -> Result<bool> {
        plain!(self, "cancel_requested", self.inner.cancel_requested(id))
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Run>> {
        match self.retry("claim", || self.inner.claim(req)).await {
            (Ok(None), true) => {
                // An attempt may have leased a run to us before its
                // connection broke: pick it up rather than wait for expiry.
                let active = self.runs(&RunFilter { active_only: true, ..RunFilter::default() }).await?;
                Ok(active.into_iter().find(|r| {
                    r.lease_owner.as_deref() == Some(req.owner.as_str())
                        && r.lease_expires_at.is_some_and(|until| until > req.now)
                        && !r.state.is_parked()
                }))
            }
            (result, _) => result,
        }
    }

    async fn heartbeat(&self, id: RunId, owner: &str, lease: chrono::Duration, now: Timestamp) -> Result<()> {
        plain!(self, "heartbeat", self.inner.heartbeat(id, owner, lease, now))
    }

    async fn release(&self, id: RunId, owner: &str) -> Result<()> {
        plain!(self, "release", self.inner.release(id, owner))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Journal for RetryStore {
    async fn begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        plain!(self, "begin_step", self.inner.begin_step(id, owner, step, idempotency_key, at))
    }

    async fn finish_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        result: std::result::Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        let outcome = self.retry("finish_step", || self.inner.finish_step(id, owner, step, result.clone(), at)).await;
        match outcome {
            (Err(e @ Error::NotFound { entity: "step", .. }), true) => {
                let steps = self.steps(id).await?;
                steps.into_iter().rev().find(|s| s.step == step).filter(|s| s.status != StepStatus::Started).ok_or(e)
            }
            (result, _) => result,
        }
    }

    async fn steps(&self, id: RunId) -> Result<Vec<StepRecord>> {
        plain!(self, "steps", self.inner.steps(id))
    }

    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        plain!(self, "resume_or_begin_step", self.inner.resume_or_begin_step(id, owner, step, idempotency_key, at))
    }

    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        result: std::result::Result<serde_json::Value, String>,
    ) -> Result<Run> {
        let outcome =
            self.retry("finish_step_and_transition", || self.inner.finish_step_and_transition(t, result.clone())).await;
        match outcome {
            // The write is atomic: a run that moved had its step finished too.
            (
                Err(
                    e @ (Error::NotFound { entity: "step", .. }
                    | Error::IllegalTransition { .. }
                    | Error::LeaseLost { .. }),
                ),
                true,
            ) => self.moved(t).await.ok_or(e),
            (result, _) => result,
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl RunLog for RetryStore {
    async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend> {
        plain!(self, "append_log", self.inner.append_log(req))
    }

    async fn logs(&self, id: RunId, after: u64) -> Result<Vec<LogChunk>> {
        plain!(self, "logs", self.inner.logs(id, after))
    }

    async fn prune_logs(&self, finished_before: Timestamp) -> Result<u64> {
        plain!(self, "prune_logs", self.inner.prune_logs(finished_before))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Ledger for RetryStore {
    async fn record_usage(&self, usage: &UsageRecord) -> Result<()> {
        plain!(self, "record_usage", self.inner.record_usage(usage))
    }

    async fn usage(&self, id: RunId) -> Result<Vec<UsageRecord>> {
        plain!(self, "usage", self.inner.usage(id))
    }

    async fn spend(&self, req: &SpendQuery) -> Result<Vec<Spend>> {
        plain!(self, "spend", self.inner.spend(req))
    }

    async fn daily_costs(&self, req: &CostQuery) -> Result<Vec<DailyCost>> {
        plain!(self, "daily_costs", self.inner.daily_costs(req))
    }

    async fn record_decision(&self, decision: &ModelDecision) -> Result<()> {
        plain!(self, "record_decision", self.inner.record_decision(decision))
    }

    async fn decision(&self, id: RunId) -> Result<Option<ModelDecision>> {
        plain!(self, "decision", self.inner.decision(id))
    }

    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        plain!(self, "record_outcome", self.inner.record_outcome(outcome))
    }

    async fn outcomes(&self, project: ProjectId) -> Result<Vec<Outcome>> {
        plain!(self, "outcomes", self.inner.outcomes(project))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Audit for RetryStore {
    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        plain!(self, "audit", self.inner.audit(event))
    }

    async fn audit_events(&self, project: Option<ProjectId>) -> Result<Vec<AuditEvent>> {
        plain!(self, "audit_events", self.inner.audit_events(project))
    }
}
