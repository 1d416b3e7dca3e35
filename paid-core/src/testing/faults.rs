//! [`FlakyStore`]: a [`Store`] that fails on cue (feature `testing`), to
//! test layers and the engine against a database that breaks.
//!
//! A fault strikes either **before** the call reaches the wrapped store
//! (nothing happened) or **after** it (the call committed and its answer was
//! lost, as when a connection breaks between commit and reply).
//!
//! ```
//! # async fn example(sqlite: std::sync::Arc<dyn paid_core::Store>) {
//! use paid_core::testing::faults::{FaultPoint, FlakyStore};
//!
//! let flaky = FlakyStore::new(sqlite);
//! flaky.fail("transition", FaultPoint::After, 1); // the next transition commits, then errs
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::store::prelude::*;
use async_trait::async_trait;

use crate::{
    AppendLog, AuditEvent, ClaimRequest, CostQuery, DailyCost, Error, LogAppend, LogChunk, ModelDecision, NewRun,
    Outcome, Project, ProjectId, Result, Run, RunFilter, RunId, RunPatch, RunState, Spend, SpendQuery, StepRecord,
    Store, Timestamp, TrackedIssue, Transition, UsageRecord,
};

/// When an injected fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Before the call reaches the wrapped store: nothing happened.
    Before,
    /// After the wrapped store answered: the call took effect, its answer is
    /// replaced by the error.
    After,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    point: FaultPoint,
    times: usize,
    error: fn() -> Error,
}

/// Wraps a [`Store`], failing the calls it is told to; see the module
/// documentation. Calls are named by their [`Store`] method name
/// (`"transition"`, `"finish_step_and_transition"`, ...).
pub struct FlakyStore {
    inner: Arc<dyn Store>,
    faults: Mutex<HashMap<&'static str, Fault>>,
    calls: Mutex<BTreeMap<&'static str, usize>>,
}

impl std::fmt::Debug for FlakyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlakyStore").finish_non_exhaustive()
    }
}

impl FlakyStore {
    /// Wraps `inner`, failing nothing yet.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, faults: Mutex::default(), calls: Mutex::default() }
    }

    /// The error [`FlakyStore::fail`] injects: the database is unavailable
    /// (retryable).
    pub fn unavailable() -> Error {
        Error::Unavailable { backend: "flaky", message: "injected fault: connection lost".into(), source: None }
    }

    /// Makes the next `times` calls of `method` fail at `point` with
    /// [`FlakyStore::unavailable`]. Replaces an earlier fault of `method`.
    pub fn fail(&self, method: &'static str, point: FaultPoint, times: usize) {
        self.fail_with(method, point, times, Self::unavailable);
    }

    /// Makes the next `times` calls of `method` fail at `point` with `error()`.
    pub fn fail_with(&self, method: &'static str, point: FaultPoint, times: usize, error: fn() -> Error) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).insert(method, Fault { point, times, error });
    }

    /// How many calls of `method` this wrapper saw, failed ones included.
    /// A provided port method is counted under its own name only: the
    /// calls the wrapped store makes inside it are not seen.
    pub fn calls(&self, method: &str) -> usize {
        self.counted().get(method).copied().unwrap_or(0)
    }

    /// Every method called at least once, with its count, by name.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.counted().clone()
    }

    /// All calls but those of the methods in `except`.
    pub fn total_except(&self, except: &[&str]) -> usize {
        self.counted().iter().filter(|(m, _)| !except.contains(m)).map(|(_, n)| n).sum()
    }

    /// Sets every count back to zero (say, after a test's setup).
    pub fn reset(&self) {
        self.counted().clear();
    }

    fn counted(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, usize>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one pending fault of `method` at `point`, if any.
    fn strike(&self, method: &'static str, point: FaultPoint) -> Option<Error> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let fault = faults.get_mut(method).filter(|f| f.point == point && f.times > 0)?;
        fault.times -= 1;
        Some((fault.error)())
    }

    fn enter(&self, method: &'static str) -> Result<()> {
        *self.counted().entry(method).or_default() += 1;
        self.strike(method, FaultPoint::Before).map_or(Ok(()), Err)
    }

    fn leave<T>(&self, method: &'static str, answer: Result<T>) -> Result<T> {
        match self.strike(method, FaultPoint::After) {
            Some(e) => Err(e),
            None => answer,
        }
    }
}

macro_rules! flaky {
    ($self:ident, $name:literal, $call:expr) => {{
        $self.enter($name)?;
        let answer = $call.await;
        $self.leave($name, answer)
    }};
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Catalog for FlakyStore {
    async fn put_project(&self, project: &Project) -> Result<()> {
        flaky!(self, "put_project", self.inner.put_project(project))
    }
    async fn project(&self, id: ProjectId) -> Result<Project> {
        flaky!(self, "project", self.inner.project(id))
    }
    async fn projects(&self) -> Result<Vec<Project>> {
        flaky!(self, "projects", self.inner.projects())
    }
    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        flaky!(self, "delete_project", self.inner.delete_project(id))
    }
    async fn put_issue(&self, issue: &TrackedIssue) -> Result<()> {
        flaky!(self, "put_issue", self.inner.put_issue(issue))
    }
    async fn issue(&self, project: ProjectId, number: u64) -> Result<TrackedIssue> {
        flaky!(self, "issue", self.inner.issue(project, number))
    }
    async fn issues(&self, project: ProjectId) -> Result<Vec<TrackedIssue>> {
        flaky!(self, "issues", self.inner.issues(project))
    }
    async fn pin_author(&self, project: ProjectId, login: &str, user_id: u64, at: Timestamp) -> Result<u64> {
        flaky!(self, "pin_author", self.inner.pin_author(project, login, user_id, at))
    }
    async fn author_pins(&self, project: ProjectId) -> Result<Vec<crate::AuthorPin>> {
        flaky!(self, "author_pins", self.inner.author_pins(project))
    }
    async fn record_delivery(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<bool> {
        flaky!(self, "record_delivery", self.inner.record_delivery(key, at, forget_before))
    }

    async fn claim_poll(&self, project: ProjectId, owner: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        flaky!(self, "claim_poll", self.inner.claim_poll(project, owner, until, now))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Runs for FlakyStore {
    async fn create_run(&self, run: &NewRun) -> Result<Run> {
        flaky!(self, "create_run", self.inner.create_run(run))
    }
    async fn run(&self, id: RunId) -> Result<Run> {
        flaky!(self, "run", self.inner.run(id))
    }
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        flaky!(self, "runs", self.inner.runs(filter))
    }
    async fn transition(&self, t: &Transition) -> Result<Run> {
        flaky!(self, "transition", self.inner.transition(t))
    }
    async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run> {
        flaky!(self, "patch_run", self.inner.patch_run(id, owner, patch, at))
    }
    async fn request_cancel(&self, id: RunId, at: Timestamp) -> Result<Run> {
        flaky!(self, "request_cancel", self.inner.request_cancel(id, at))
    }
    async fn cancel_requested(&self, id: RunId) -> Result<bool> {
        flaky!(self, "cancel_requested", self.inner.cancel_requested(id))
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Run>> {
        flaky!(self, "claim", self.inner.claim(req))
    }
    async fn heartbeat(&self, id: RunId, owner: &str, lease: chrono::Duration, now: Timestamp) -> Result<()> {
        flaky!(self, "heartbeat", self.inner.heartbeat(id, owner, lease, now))
    }
    async fn release(&self, id: RunId, owner: &str) -> Result<()> {
        flaky!(self, "release", self.inner.release(id, owner))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Journal for FlakyStore {
    async fn begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        flaky!(self, "begin_step", self.inner.begin_step(id, owner, step, idempotency_key, at))
    }
    async fn finish_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        result: std::result::Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        flaky!(self, "finish_step", self.inner.finish_step(id, owner, step, result, at))
    }
    async fn steps(&self, id: RunId) -> Result<Vec<StepRecord>> {
        flaky!(self, "steps", self.inner.steps(id))
    }
    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        flaky!(self, "resume_or_begin_step", self.inner.resume_or_begin_step(id, owner, step, idempotency_key, at))
    }
    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        result: std::result::Result<serde_json::Value, String>,
    ) -> Result<Run> {
        flaky!(self, "finish_step_and_transition", self.inner.finish_step_and_transition(t, result))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl RunLog for FlakyStore {
    async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend> {
        flaky!(self, "append_log", self.inner.append_log(req))
    }
    async fn logs(&self, id: RunId, after: u64) -> Result<Vec<LogChunk>> {
        flaky!(self, "logs", self.inner.logs(id, after))
    }
    async fn prune_logs(&self, finished_before: Timestamp) -> Result<u64> {
        flaky!(self, "prune_logs", self.inner.prune_logs(finished_before))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Ledger for FlakyStore {
    async fn record_usage(&self, usage: &UsageRecord) -> Result<()> {
        flaky!(self, "record_usage", self.inner.record_usage(usage))
    }
    async fn usage(&self, id: RunId) -> Result<Vec<UsageRecord>> {
        flaky!(self, "usage", self.inner.usage(id))
    }
    async fn spend(&self, req: &SpendQuery) -> Result<Vec<Spend>> {
        flaky!(self, "spend", self.inner.spend(req))
    }
    async fn daily_costs(&self, req: &CostQuery) -> Result<Vec<DailyCost>> {
        flaky!(self, "daily_costs", self.inner.daily_costs(req))
    }
    async fn record_decision(&self, decision: &ModelDecision) -> Result<()> {
        flaky!(self, "record_decision", self.inner.record_decision(decision))
    }
    async fn decision(&self, id: RunId) -> Result<Option<ModelDecision>> {
        flaky!(self, "decision", self.inner.decision(id))
    }
    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        flaky!(self, "record_outcome", self.inner.record_outcome(outcome))
    }
    async fn outcomes(&self, project: ProjectId) -> Result<Vec<Outcome>> {
        flaky!(self, "outcomes", self.inner.outcomes(project))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Audit for FlakyStore {
    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        flaky!(self, "audit", self.inner.audit(event))
    }
    async fn audit_events(&self, project: Option<ProjectId>) -> Result<Vec<AuditEvent>> {
        flaky!(self, "audit_events", self.inner.audit_events(project))
    }
}
