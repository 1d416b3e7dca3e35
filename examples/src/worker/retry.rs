//! [`RetryStore`]: a [`Store`] layer that rides out a database restart.
//!
//! Calls failing with a retryable error (the database is unreachable or
//! restarting, a serialization race) are retried with exponential backoff
//! and jitter, for up to [`RetryStore::patience`]. A retried *write* may have
//! committed before its connection broke, so the second attempt can be
//! refused for having already happened; those answers are recognized and
//! turned back into the success they stand for:
//!
//! - `transition` refused (state moved, or lease changed) while the run is
//!   in the target state under our lease: done;
//! - `finish_step` finding no started record while the step's latest record
//!   is finished: done;
//! - `create_run` refused for an existing id: the run is read back;
//! - `claim` failing ambiguously: a run already leased to us is returned.
//!
//! Everything else is idempotent, or harmless when repeated (a journal
//! record begun twice, a log line or audit event written twice).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use paid_core::{
    AppendLog, AuditEvent, ClaimRequest, Error, LogAppend, LogChunk, ModelDecision, NewRun, Outcome, Project,
    ProjectId, Result, Run, RunFilter, RunId, RunPatch, RunState, StepRecord, StepStatus, Store, Timestamp,
    TrackedIssue, Transition, UsageRecord,
};
use tracing::warn;

/// Retries retryable store errors; see the module documentation.
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
    /// Wraps `inner`, retrying for up to `patience` per call.
    pub fn new(inner: Arc<dyn Store>, patience: Duration) -> Self {
        Self { inner, patience }
    }

    /// How long one call keeps retrying.
    pub fn patience(&self) -> Duration {
        self.patience
    }

    /// Runs `call` until it succeeds, fails for good, or patience runs out.
    /// Returns the result and whether an attempt failed retryably before it.
    async fn retry<T, F, Fut>(&self, what: &'static str, mut call: F) -> (Result<T>, bool)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(usize::MAX)
            .with_jitter()
            .build();
        let mut retried = false;
        loop {
            match call().await {
                Err(e) if e.is_retryable() && started.elapsed() < self.patience => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(2));
                    warn!(call = what, error = %e, ?delay, "store call failed; retrying");
                    retried = true;
                    tokio::time::sleep(delay).await;
                }
                other => return (other, retried),
            }
        }
    }
}

macro_rules! plain {
    ($self:ident, $what:literal, $call:expr) => {
        $self.retry($what, || $call).await.0
    };
}

#[async_trait]
impl Store for RetryStore {
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

    async fn create_run(&self, run: &NewRun) -> Result<Run> {
        match self.retry("create_run", || self.inner.create_run(run)).await {
            (Err(Error::AlreadyExists { .. }), true) => match self.run(run.id).await {
                // Our first attempt committed.
                Ok(existing) if existing.issue_number == run.issue_number => Ok(existing),
                _ => Err(Error::AlreadyExists { entity: "run", id: run.id.to_string() }),
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
                match self.run(t.run_id).await {
                    Ok(run) if run.state == t.to && run.lease_owner.as_deref() == Some(t.owner.as_str()) => Ok(run),
                    _ => Err(e),
                }
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
            // An attempt may have committed before its answer was lost: the
            // write is atomic, so a run that moved had its step finished too.
            (
                Err(
                    e @ (Error::NotFound { entity: "step", .. }
                    | Error::IllegalTransition { .. }
                    | Error::LeaseLost { .. }),
                ),
                true,
            ) => match self.run(t.run_id).await {
                Ok(run) if run.state == t.to && run.lease_owner.as_deref() == Some(t.owner.as_str()) => Ok(run),
                _ => Err(e),
            },
            (result, _) => result,
        }
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

    async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend> {
        plain!(self, "append_log", self.inner.append_log(req))
    }

    async fn logs(&self, id: RunId, after: u64) -> Result<Vec<LogChunk>> {
        plain!(self, "logs", self.inner.logs(id, after))
    }

    async fn prune_logs(&self, finished_before: Timestamp) -> Result<u64> {
        plain!(self, "prune_logs", self.inner.prune_logs(finished_before))
    }

    async fn record_usage(&self, usage: &UsageRecord) -> Result<()> {
        plain!(self, "record_usage", self.inner.record_usage(usage))
    }

    async fn usage(&self, id: RunId) -> Result<Vec<UsageRecord>> {
        plain!(self, "usage", self.inner.usage(id))
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

    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        plain!(self, "audit", self.inner.audit(event))
    }

    async fn audit_events(&self, project: Option<ProjectId>) -> Result<Vec<AuditEvent>> {
        plain!(self, "audit_events", self.inner.audit_events(project))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Fails `n` times with `Unavailable`, then delegates.
    struct Flaky {
        inner: Arc<dyn Store>,
        failures: AtomicUsize,
    }

    impl Flaky {
        fn fail(&self) -> Result<()> {
            if self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::Unavailable { backend: "test", message: "down".into(), source: None });
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Store for Flaky {
        async fn put_project(&self, project: &Project) -> Result<()> {
            self.inner.put_project(project).await
        }
        async fn project(&self, id: ProjectId) -> Result<Project> {
            self.fail()?;
            self.inner.project(id).await
        }
        async fn projects(&self) -> Result<Vec<Project>> {
            self.inner.projects().await
        }
        async fn delete_project(&self, id: ProjectId) -> Result<()> {
            self.inner.delete_project(id).await
        }
        async fn put_issue(&self, issue: &TrackedIssue) -> Result<()> {
            self.inner.put_issue(issue).await
        }
        async fn issue(&self, project: ProjectId, number: u64) -> Result<TrackedIssue> {
            self.inner.issue(project, number).await
        }
        async fn issues(&self, project: ProjectId) -> Result<Vec<TrackedIssue>> {
            self.inner.issues(project).await
        }
        async fn create_run(&self, run: &NewRun) -> Result<Run> {
            self.inner.create_run(run).await
        }
        async fn run(&self, id: RunId) -> Result<Run> {
            self.inner.run(id).await
        }
        async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
            self.inner.runs(filter).await
        }
        async fn transition(&self, t: &Transition) -> Result<Run> {
            // Commits, then "loses the connection" before answering.
            let done = self.inner.transition(t).await;
            self.fail()?;
            done
        }
        async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run> {
            self.inner.patch_run(id, owner, patch, at).await
        }
        async fn request_cancel(&self, id: RunId, at: Timestamp) -> Result<Run> {
            self.inner.request_cancel(id, at).await
        }
        async fn cancel_requested(&self, id: RunId) -> Result<bool> {
            self.inner.cancel_requested(id).await
        }
        async fn claim(&self, req: &ClaimRequest) -> Result<Option<Run>> {
            let done = self.inner.claim(req).await;
            self.fail()?;
            done
        }
        async fn heartbeat(&self, id: RunId, owner: &str, lease: chrono::Duration, now: Timestamp) -> Result<()> {
            self.inner.heartbeat(id, owner, lease, now).await
        }
        async fn release(&self, id: RunId, owner: &str) -> Result<()> {
            self.inner.release(id, owner).await
        }
        async fn begin_step(
            &self,
            id: RunId,
            owner: &str,
            step: RunState,
            key: Option<&str>,
            at: Timestamp,
        ) -> Result<StepRecord> {
            self.inner.begin_step(id, owner, step, key, at).await
        }
        async fn finish_step(
            &self,
            id: RunId,
            owner: &str,
            step: RunState,
            result: std::result::Result<serde_json::Value, String>,
            at: Timestamp,
        ) -> Result<StepRecord> {
            let done = self.inner.finish_step(id, owner, step, result, at).await;
            self.fail()?;
            done
        }
        async fn steps(&self, id: RunId) -> Result<Vec<StepRecord>> {
            self.inner.steps(id).await
        }
        async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend> {
            self.inner.append_log(req).await
        }
        async fn logs(&self, id: RunId, after: u64) -> Result<Vec<LogChunk>> {
            self.inner.logs(id, after).await
        }
        async fn prune_logs(&self, finished_before: Timestamp) -> Result<u64> {
            self.inner.prune_logs(finished_before).await
        }
        async fn record_usage(&self, usage: &UsageRecord) -> Result<()> {
            self.inner.record_usage(usage).await
        }
        async fn usage(&self, id: RunId) -> Result<Vec<UsageRecord>> {
            self.inner.usage(id).await
        }
        async fn record_decision(&self, decision: &ModelDecision) -> Result<()> {
            self.inner.record_decision(decision).await
        }
        async fn decision(&self, id: RunId) -> Result<Option<ModelDecision>> {
            self.inner.decision(id).await
        }
        async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
            self.inner.record_outcome(outcome).await
        }
        async fn outcomes(&self, project: ProjectId) -> Result<Vec<Outcome>> {
            self.inner.outcomes(project).await
        }
        async fn audit(&self, event: &AuditEvent) -> Result<()> {
            self.inner.audit(event).await
        }
        async fn audit_events(&self, project: Option<ProjectId>) -> Result<Vec<AuditEvent>> {
            self.inner.audit_events(project).await
        }
    }

    #[tokio::test]
    async fn writes_that_committed_before_the_connection_broke_count_as_done() {
        use paid_core::testing::fixtures::{self, at};
        let sqlite: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
        let flaky = Arc::new(Flaky { inner: sqlite, failures: AtomicUsize::new(0) });
        let store = RetryStore::new(flaky.clone(), Duration::from_secs(5));
        let project = fixtures::project("flaky");
        store.put_project(&project).await.unwrap();
        let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();

        flaky.failures.store(1, Ordering::SeqCst);
        let req = ClaimRequest { owner: "w".into(), lease: chrono::Duration::hours(1), now: at(0) };
        let claimed = store.claim(&req).await.unwrap();
        assert_eq!(claimed.map(|r| r.id), Some(run.id), "the lease granted before the error is picked up");

        flaky.failures.store(1, Ordering::SeqCst);
        let t = Transition {
            run_id: run.id,
            from: RunState::Queued,
            to: RunState::SelectingModel,
            owner: "w".into(),
            at: at(1),
        };
        assert_eq!(store.transition(&t).await.unwrap().state, RunState::SelectingModel);

        store.begin_step(run.id, "w", RunState::SelectingModel, None, at(2)).await.unwrap();
        flaky.failures.store(1, Ordering::SeqCst);
        let record =
            store.finish_step(run.id, "w", RunState::SelectingModel, Ok(serde_json::json!(1)), at(3)).await.unwrap();
        assert_eq!(record.status, StepStatus::Done);

        flaky.failures.store(2, Ordering::SeqCst);
        assert_eq!(store.project(project.id).await.unwrap(), project, "plain reads are retried");
    }

    #[tokio::test]
    async fn permanent_errors_and_exhausted_patience_come_through() {
        let sqlite: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
        let flaky = Arc::new(Flaky { inner: sqlite, failures: AtomicUsize::new(1000) });
        let store = RetryStore::new(flaky, Duration::from_millis(300));
        let started = Instant::now();
        let err = store.project(paid_core::testing::fixtures::project_id()).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
