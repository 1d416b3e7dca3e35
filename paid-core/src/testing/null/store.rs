//! [`NullStore`]: a [`Store`] whose writes store nothing.

use async_trait::async_trait;
use chrono::Duration;

use crate::store::prelude::*;
use crate::{
    AppendLog, AuditEvent, AuthorPin, ClaimRequest, CostQuery, DailyCost, Error, Failure, LogAppend, LogChunk,
    ModelDecision, NewRun, Outcome, Project, ProjectId, Result, Run, RunFilter, RunId, RunKind, RunPatch, RunState,
    Spend, SpendQuery, StepRecord, StepStatus, Timestamp, TrackedIssue, Transition, UsageRecord,
};

/// A [`Store`] that stores nothing: every write succeeds, answering with a
/// plausible value built from its input where it must answer with one
/// (`create_run` returns the queued run, `transition` a run in the new
/// state, `begin_step` the first step), and every read finds nothing
/// (lists are empty, single entities are [`Error::NotFound`]).
///
/// It is the negative control of the store conformance suite: every case
/// of `testing::store` must fail against it (see `tests/null_backends.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullStore;

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound { entity, id: id.to_string() }
}

/// A run that was never stored: `id` in `state` as of `at`.
fn phantom_run(id: RunId, state: RunState, at: Timestamp) -> Run {
    let new = NewRun {
        id,
        project_id: ProjectId(uuid::Uuid::nil()),
        issue_number: 0,
        kind: RunKind::Build,
        priority: 0,
        created_at: at,
        context: Default::default(),
    };
    let mut run = Run::from_new(&new);
    run.state = state;
    run.updated_at = at;
    if state.is_terminal() {
        run.finished_at = Some(at);
    }
    run
}

fn apply_patch(mut run: Run, patch: &RunPatch) -> Run {
    let RunPatch { branch, model, pr_url, iterations, failure, context } = patch.clone();
    run.branch = branch.or(run.branch);
    run.model = model.or(run.model);
    run.pr_url = pr_url.or(run.pr_url);
    run.iterations = iterations.unwrap_or(run.iterations);
    run.failure = failure.or(run.failure);
    run.context = context.unwrap_or(run.context);
    run
}

fn step_record(id: RunId, step: RunState, key: Option<&str>, at: Timestamp) -> StepRecord {
    StepRecord {
        run_id: id,
        seq: 1,
        step,
        idempotency_key: key.map(str::to_string),
        status: StepStatus::Started,
        output: serde_json::Value::Null,
        error: None,
        started_at: at,
        finished_at: None,
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Catalog for NullStore {
    async fn put_project(&self, _project: &Project) -> Result<()> {
        Ok(())
    }
    async fn project(&self, id: ProjectId) -> Result<Project> {
        Err(not_found("project", id))
    }
    async fn projects(&self) -> Result<Vec<Project>> {
        Ok(Vec::new())
    }
    async fn delete_project(&self, _id: ProjectId) -> Result<()> {
        Ok(())
    }
    async fn put_issue(&self, _issue: &TrackedIssue) -> Result<()> {
        Ok(())
    }
    async fn issue(&self, _project: ProjectId, number: u64) -> Result<TrackedIssue> {
        Err(not_found("issue", number))
    }
    async fn issues(&self, _project: ProjectId) -> Result<Vec<TrackedIssue>> {
        Ok(Vec::new())
    }
    async fn pin_author(&self, _project: ProjectId, _login: &str, user_id: u64, _at: Timestamp) -> Result<u64> {
        Ok(user_id)
    }
    async fn author_pins(&self, _project: ProjectId) -> Result<Vec<AuthorPin>> {
        Ok(Vec::new())
    }
    async fn record_delivery(&self, _key: &str, _at: Timestamp, _forget_before: Timestamp) -> Result<bool> {
        Ok(true)
    }
    async fn claim_poll(&self, _project: ProjectId, _owner: &str, _until: Timestamp, _now: Timestamp) -> Result<bool> {
        Ok(true)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Runs for NullStore {
    async fn create_run(&self, run: &NewRun) -> Result<Run> {
        Ok(Run::from_new(run))
    }
    async fn run(&self, id: RunId) -> Result<Run> {
        Err(not_found("run", id))
    }
    async fn runs(&self, _filter: &RunFilter) -> Result<Vec<Run>> {
        Ok(Vec::new())
    }
    async fn transition(&self, t: &Transition) -> Result<Run> {
        Ok(apply_patch(phantom_run(t.run_id, t.to, t.at), &t.patch))
    }
    async fn patch_run(&self, id: RunId, _owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run> {
        Ok(apply_patch(phantom_run(id, RunState::Queued, at), patch))
    }
    async fn request_cancel(&self, id: RunId, at: Timestamp) -> Result<Run> {
        let mut run = phantom_run(id, RunState::Cancelled, at);
        run.failure = Some(Failure::cancelled(RunState::Queued));
        Ok(run)
    }
    async fn cancel_requested(&self, _id: RunId) -> Result<bool> {
        Ok(false)
    }
    async fn claim(&self, _req: &ClaimRequest) -> Result<Option<Run>> {
        Ok(None)
    }
    async fn heartbeat(&self, _id: RunId, _owner: &str, _lease: Duration, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    async fn release(&self, _id: RunId, _owner: &str) -> Result<()> {
        Ok(())
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Journal for NullStore {
    async fn begin_step(
        &self,
        id: RunId,
        _owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        Ok(step_record(id, step, idempotency_key, at))
    }
    async fn finish_step(
        &self,
        id: RunId,
        _owner: &str,
        step: RunState,
        result: std::result::Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        let mut record = step_record(id, step, None, at);
        record.finish(result, at);
        Ok(record)
    }
    async fn steps(&self, _id: RunId) -> Result<Vec<StepRecord>> {
        Ok(Vec::new())
    }
    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        self.begin_step(id, owner, step, idempotency_key, at).await
    }
    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        _result: std::result::Result<serde_json::Value, String>,
    ) -> Result<Run> {
        self.transition(t).await
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl RunLog for NullStore {
    async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend> {
        Ok(LogAppend { stored: req.text.len().min(req.cap_bytes), truncated: false })
    }
    async fn logs(&self, _id: RunId, _after: u64) -> Result<Vec<LogChunk>> {
        Ok(Vec::new())
    }
    async fn prune_logs(&self, _finished_before: Timestamp) -> Result<u64> {
        Ok(0)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Ledger for NullStore {
    async fn record_usage(&self, _usage: &UsageRecord) -> Result<()> {
        Ok(())
    }
    async fn usage(&self, _id: RunId) -> Result<Vec<UsageRecord>> {
        Ok(Vec::new())
    }
    async fn spend(&self, _req: &SpendQuery) -> Result<Vec<Spend>> {
        Ok(Vec::new())
    }
    async fn daily_costs(&self, _req: &CostQuery) -> Result<Vec<DailyCost>> {
        Ok(Vec::new())
    }
    async fn record_decision(&self, _decision: &ModelDecision) -> Result<()> {
        Ok(())
    }
    async fn decision(&self, _id: RunId) -> Result<Option<ModelDecision>> {
        Ok(None)
    }
    async fn record_outcome(&self, _outcome: &Outcome) -> Result<()> {
        Ok(())
    }
    async fn outcomes(&self, _project: ProjectId) -> Result<Vec<Outcome>> {
        Ok(Vec::new())
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Audit for NullStore {
    async fn audit(&self, _event: &AuditEvent) -> Result<()> {
        Ok(())
    }
    async fn audit_events(&self, _project: Option<ProjectId>) -> Result<Vec<AuditEvent>> {
        Ok(Vec::new())
    }
}
