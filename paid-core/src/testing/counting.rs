//! [`CountingStore`]: a [`Store`] layer that counts calls per method
//! (feature `testing`), to measure how many round trips the engine makes.
//!
//! ```
//! # async fn example(sqlite: std::sync::Arc<dyn paid_core::Store>, run: paid_core::RunId) -> paid_core::Result<()> {
//! use paid_core::store::prelude::*;
//! use paid_core::testing::counting::CountingStore;
//!
//! let counting = CountingStore::new(sqlite);
//! counting.steps(run).await?;
//! assert_eq!(counting.calls("steps"), 1);
//! assert_eq!(counting.total_except(&["append_log"]), 1);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::store::prelude::*;
use async_trait::async_trait;

use crate::{
    AppendLog, AuditEvent, ClaimRequest, CostQuery, DailyCost, LogAppend, LogChunk, ModelDecision, NewRun, Outcome,
    Project, ProjectId, Result, Run, RunFilter, RunId, RunPatch, RunState, Spend, SpendQuery, StepRecord, Store,
    Timestamp, TrackedIssue, Transition, UsageRecord,
};

/// Wraps a [`Store`] and counts every call by its [`Store`] method name
/// (`"run"`, `"finish_step_and_transition"`, ...), failed calls included.
/// A provided method is counted under its own name only: the calls the
/// wrapped store makes inside it are not seen.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    calls: Mutex<BTreeMap<&'static str, usize>>,
}

impl std::fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingStore").field("calls", &self.counts()).finish_non_exhaustive()
    }
}

impl CountingStore {
    /// Wraps `inner`, with every count at zero.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, calls: Mutex::default() }
    }

    /// How many calls of `method` this layer saw.
    pub fn calls(&self, method: &str) -> usize {
        self.lock().get(method).copied().unwrap_or(0)
    }

    /// Every method called at least once, with its count, by name.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.lock().clone()
    }

    /// All calls but those of the methods in `except`.
    pub fn total_except(&self, except: &[&str]) -> usize {
        self.lock().iter().filter(|(m, _)| !except.contains(m)).map(|(_, n)| n).sum()
    }

    /// Sets every count back to zero (say, after a test's setup).
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, usize>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, method: &'static str) {
        *self.lock().entry(method).or_default() += 1;
    }
}

macro_rules! counted {
    ($self:ident, $name:literal, $call:expr) => {{
        $self.count($name);
        $call.await
    }};
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Catalog for CountingStore {
    async fn put_project(&self, project: &Project) -> Result<()> {
        counted!(self, "put_project", self.inner.put_project(project))
    }
    async fn project(&self, id: ProjectId) -> Result<Project> {
        counted!(self, "project", self.inner.project(id))
    }
    async fn projects(&self) -> Result<Vec<Project>> {
        counted!(self, "projects", self.inner.projects())
    }
    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        counted!(self, "delete_project", self.inner.delete_project(id))
    }
    async fn put_issue(&self, issue: &TrackedIssue) -> Result<()> {
        counted!(self, "put_issue", self.inner.put_issue(issue))
    }
    async fn issue(&self, project: ProjectId, number: u64) -> Result<TrackedIssue> {
        counted!(self, "issue", self.inner.issue(project, number))
    }
    async fn issues(&self, project: ProjectId) -> Result<Vec<TrackedIssue>> {
        counted!(self, "issues", self.inner.issues(project))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Runs for CountingStore {
    async fn create_run(&self, run: &NewRun) -> Result<Run> {
        counted!(self, "create_run", self.inner.create_run(run))
    }
    async fn run(&self, id: RunId) -> Result<Run> {
        counted!(self, "run", self.inner.run(id))
    }
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        counted!(self, "runs", self.inner.runs(filter))
    }
    async fn transition(&self, t: &Transition) -> Result<Run> {
        counted!(self, "transition", self.inner.transition(t))
    }
    async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run> {
        counted!(self, "patch_run", self.inner.patch_run(id, owner, patch, at))
    }
    async fn request_cancel(&self, id: RunId, at: Timestamp) -> Result<Run> {
        counted!(self, "request_cancel", self.inner.request_cancel(id, at))
    }
    async fn cancel_requested(&self, id: RunId) -> Result<bool> {
        counted!(self, "cancel_requested", self.inner.cancel_requested(id))
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Run>> {
        counted!(self, "claim", self.inner.claim(req))
    }
    async fn heartbeat(&self, id: RunId, owner: &str, lease: chrono::Duration, now: Timestamp) -> Result<()> {
        counted!(self, "heartbeat", self.inner.heartbeat(id, owner, lease, now))
    }
    async fn release(&self, id: RunId, owner: &str) -> Result<()> {
        counted!(self, "release", self.inner.release(id, owner))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Journal for CountingStore {
    async fn begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        counted!(self, "begin_step", self.inner.begin_step(id, owner, step, idempotency_key, at))
    }
    async fn finish_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        result: std::result::Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        counted!(self, "finish_step", self.inner.finish_step(id, owner, step, result, at))
    }
    async fn steps(&self, id: RunId) -> Result<Vec<StepRecord>> {
        counted!(self, "steps", self.inner.steps(id))
    }
    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        counted!(self, "resume_or_begin_step", self.inner.resume_or_begin_step(id, owner, step, idempotency_key, at))
    }
    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        result: std::result::Result<serde_json::Value, String>,
    ) -> Result<Run> {
        counted!(self, "finish_step_and_transition", self.inner.finish_step_and_transition(t, result))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl RunLog for CountingStore {
    async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend> {
        counted!(self, "append_log", self.inner.append_log(req))
    }
    async fn logs(&self, id: RunId, after: u64) -> Result<Vec<LogChunk>> {
        counted!(self, "logs", self.inner.logs(id, after))
    }
    async fn prune_logs(&self, finished_before: Timestamp) -> Result<u64> {
        counted!(self, "prune_logs", self.inner.prune_logs(finished_before))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Ledger for CountingStore {
    async fn record_usage(&self, usage: &UsageRecord) -> Result<()> {
        counted!(self, "record_usage", self.inner.record_usage(usage))
    }
    async fn usage(&self, id: RunId) -> Result<Vec<UsageRecord>> {
        counted!(self, "usage", self.inner.usage(id))
    }
    async fn spend(&self, req: &SpendQuery) -> Result<Vec<Spend>> {
        counted!(self, "spend", self.inner.spend(req))
    }
    async fn daily_costs(&self, req: &CostQuery) -> Result<Vec<DailyCost>> {
        counted!(self, "daily_costs", self.inner.daily_costs(req))
    }
    async fn record_decision(&self, decision: &ModelDecision) -> Result<()> {
        counted!(self, "record_decision", self.inner.record_decision(decision))
    }
    async fn decision(&self, id: RunId) -> Result<Option<ModelDecision>> {
        counted!(self, "decision", self.inner.decision(id))
    }
    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        counted!(self, "record_outcome", self.inner.record_outcome(outcome))
    }
    async fn outcomes(&self, project: ProjectId) -> Result<Vec<Outcome>> {
        counted!(self, "outcomes", self.inner.outcomes(project))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Audit for CountingStore {
    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        counted!(self, "audit", self.inner.audit(event))
    }
    async fn audit_events(&self, project: Option<ProjectId>) -> Result<Vec<AuditEvent>> {
        counted!(self, "audit_events", self.inner.audit_events(project))
    }
}
