//! The engine's fast tier, on the instant backends and SQLite, with a
//! manual clock instead of waiting for leases:
//!
//! - a worker that dies at **any** store write of a run (every step
//!   boundary: claim, journal begin/resume, finish and transition, patches,
//!   logs, records...), before the write or just after it committed, is
//!   replaced by another worker that finishes the run with exactly one
//!   branch pushed, one PR, one issue comment, and no worktree or sandbox
//!   left; the same for a failing run and for a comparison run parked for a
//!   human pick (which holds no lease and is claimed by nobody until the
//!   pick); a poll dying at any write still queues each issue once;
//! - intake (each labeled issue queued once, untrusted authors ignored),
//!   step retries (per [`RetryConfig`]; a permanent failure fails the run
//!   with the failure recorded) and worker leases (no claim while held,
//!   takeover after expiry, heartbeats, a worker losing its lease stops).
//!
//! Run with `--nocapture` to see the boundaries covered.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use paid_core::engine::{CompareSpec, Engine, EngineConfig, RetryConfig, SelectionRule, StepTimeouts, comment_marker};
use paid_core::ports::workspaces::RebaseOutcome;
use paid_core::store::prelude::*;
use paid_core::testing::faults::FaultPoint;
use paid_core::testing::instant::{self, EffectKind};
use paid_core::{
    AppendLog, AuditEvent, ClaimRequest, Clock, CommentRequest, CommitRequest, CostQuery, DailyCost, Error, ExecEvent,
    ExecRequest, Forge, ForgeIssue, IssueState, LabelChange, LogAppend, LogChunk, ManualClock, ModelDecision, NewRun,
    Outcome, PollRequest, PrFeedback, PrFeedbackRequest, PrRequest, Project, ProjectId, PullRequest, ReapReport,
    ReapRequest, RepoRef, Result, Run, RunFilter, RunId, RunPatch, RunState, SandboxHandle, SandboxInfo,
    SandboxRuntime, SandboxSpec, Spend, SpendQuery, StepRecord, StepStatus, Store, SubIssue, SubIssueRequest,
    SystemClock, Timestamp, TrackedIssue, Transition, UsageRecord, Workspaces, Worktree, WorktreeRequest,
};
use support::{Behavior, CapturingForge, ScriptedAgent, World};

/// The lease every engine here takes. Nothing waits for it: the tests move
/// the shared [`ManualClock`] past it.
const LEASE: Duration = Duration::from_secs(60);

fn past_the_lease() -> chrono::Duration {
    chrono::Duration::from_std(LEASE).unwrap() + chrono::Duration::seconds(1)
}

/// A worker's settings: fast retries, and heartbeats far apart so that a
/// run's store writes are the same every time it runs.
fn config(worker: &str) -> EngineConfig {
    EngineConfig {
        worker_id: worker.into(),
        lease: LEASE,
        heartbeat_interval: Duration::from_secs(3600),
        max_iterations: 2,
        retry: RetryConfig { max_retries: 1, min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) },
        ..EngineConfig::default()
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now()))
}

/// An engine of worker `worker` on the world's parts and `clock`.
fn engine(w: &World, worker: &str, clock: &Arc<ManualClock>) -> Engine {
    w.builder(worker).config(config(worker)).clock(clock.clone()).build().unwrap()
}

/// An engine of worker `worker` that dies as `crash` says: its store and
/// every port it calls fail from then on.
fn doomed(w: &World, worker: &str, clock: &Arc<ManualClock>, crash: &Arc<Crash>) -> Engine {
    w.builder(worker)
        .config(config(worker))
        .clock(clock.clone())
        .store(Arc::new(CrashStore { inner: w.store.clone(), crash: crash.clone() }))
        .forge(Arc::new(DeadForge { inner: w.forge.clone(), crash: crash.clone() }))
        .workspaces(Arc::new(DeadWorkspaces { inner: w.workspaces.clone(), crash: crash.clone() }))
        .runtime(Arc::new(DeadRuntime { inner: w.runtime.clone(), crash: crash.clone() }))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// A worker that dies at its Nth store write.

/// Where a worker dies: at its `at`-th store write (from 1; 0 never),
/// before the write reaches the database or just after it committed. From
/// then on every call of the worker fails: its store (reads too), forge,
/// workspaces and runtime, as if its process were gone.
struct Crash {
    at: usize,
    point: FaultPoint,
    state: Mutex<CrashState>,
}

#[derive(Default)]
struct CrashState {
    /// The write methods called, in order: the run's boundaries.
    writes: Vec<&'static str>,
    dead: bool,
}

impl Crash {
    fn at(at: usize, point: FaultPoint) -> Arc<Self> {
        Arc::new(Self { at, point, state: Mutex::default() })
    }

    fn writes(&self) -> Vec<&'static str> {
        self.state.lock().unwrap().writes.clone()
    }

    fn dead(&self) -> bool {
        self.state.lock().unwrap().dead
    }

    fn alive(&self) -> Result<()> {
        if self.dead() { Err(gone()) } else { Ok(()) }
    }

    /// Counts a write. `Ok(true)`: it is the fatal one, and commits first.
    fn write(&self, method: &'static str) -> Result<bool> {
        let mut s = self.state.lock().unwrap();
        if s.dead {
            return Err(gone());
        }
        s.writes.push(method);
        if s.writes.len() != self.at {
            return Ok(false);
        }
        s.dead = true;
        match self.point {
            FaultPoint::Before => Err(gone()),
            FaultPoint::After => Ok(true),
        }
    }
}

fn gone() -> Error {
    Error::Unavailable { backend: "crash", message: "the worker process died".into(), source: None }
}

/// The store as a [`Crash`]ing worker sees it.
struct CrashStore {
    inner: Arc<dyn Store>,
    crash: Arc<Crash>,
}

macro_rules! read {
    ($self:ident, $call:expr) => {{
        $self.crash.alive()?;
        $call.await
    }};
}

macro_rules! write {
    ($self:ident, $name:literal, $call:expr) => {{
        let fatal = $self.crash.write($name)?;
        let answer = $call.await;
        if fatal { Err(gone()) } else { answer }
    }};
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Catalog for CrashStore {
    async fn put_project(&self, project: &Project) -> Result<()> {
        write!(self, "put_project", self.inner.put_project(project))
    }

    async fn project(&self, id: ProjectId) -> Result<Project> {
        read!(self, self.inner.project(id))
    }

    async fn projects(&self) -> Result<Vec<Project>> {
        read!(self, self.inner.projects())
    }

    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        write!(self, "delete_project", self.inner.delete_project(id))
    }

    async fn put_issue(&self, issue: &TrackedIssue) -> Result<()> {
        write!(self, "put_issue", self.inner.put_issue(issue))
    }

    async fn issue(&self, project: ProjectId, number: u64) -> Result<TrackedIssue> {
        read!(self, self.inner.issue(project, number))
    }

    async fn issues(&self, project: ProjectId) -> Result<Vec<TrackedIssue>> {
        read!(self, self.inner.issues(project))
    }

    async fn pin_author(&self, project: ProjectId, login: &str, user_id: u64, at: Timestamp) -> Result<u64> {
        write!(self, "pin_author", self.inner.pin_author(project, login, user_id, at))
    }

    async fn author_pins(&self, project: ProjectId) -> Result<Vec<paid_core::AuthorPin>> {
        read!(self, self.inner.author_pins(project))
    }

    async fn record_delivery(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<bool> {
        write!(self, "record_delivery", self.inner.record_delivery(key, at, forget_before))
    }

    async fn claim_poll(&self, project: ProjectId, owner: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        write!(self, "claim_poll", self.inner.claim_poll(project, owner, until, now))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Runs for CrashStore {
    async fn create_run(&self, run: &NewRun) -> Result<Run> {
        write!(self, "create_run", self.inner.create_run(run))
    }

    async fn run(&self, id: RunId) -> Result<Run> {
        read!(self, self.inner.run(id))
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        read!(self, self.inner.runs(filter))
    }

    async fn transition(&self, t: &Transition) -> Result<Run> {
        write!(self, "transition", self.inner.transition(t))
    }

    async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> Result<Run> {
        write!(self, "patch_run", self.inner.patch_run(id, owner, patch, at))
    }

    async fn request_cancel(&self, id: RunId, at: Timestamp) -> Result<Run> {
        write!(self, "request_cancel", self.inner.request_cancel(id, at))
    }

    async fn cancel_requested(&self, id: RunId) -> Result<bool> {
        read!(self, self.inner.cancel_requested(id))
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Option<Run>> {
        write!(self, "claim", self.inner.claim(req))
    }

    async fn heartbeat(&self, id: RunId, owner: &str, lease: chrono::Duration, now: Timestamp) -> Result<()> {
        write!(self, "heartbeat", self.inner.heartbeat(id, owner, lease, now))
    }

    async fn release(&self, id: RunId, owner: &str) -> Result<()> {
        write!(self, "release", self.inner.release(id, owner))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Journal for CrashStore {
    async fn begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        write!(self, "begin_step", self.inner.begin_step(id, owner, step, idempotency_key, at))
    }

    async fn finish_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        result: std::result::Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        write!(self, "finish_step", self.inner.finish_step(id, owner, step, result, at))
    }

    async fn steps(&self, id: RunId) -> Result<Vec<StepRecord>> {
        read!(self, self.inner.steps(id))
    }

    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> Result<StepRecord> {
        write!(self, "resume_or_begin_step", self.inner.resume_or_begin_step(id, owner, step, idempotency_key, at))
    }

    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        result: std::result::Result<serde_json::Value, String>,
    ) -> Result<Run> {
        write!(self, "finish_step_and_transition", self.inner.finish_step_and_transition(t, result))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl RunLog for CrashStore {
    async fn append_log(&self, req: &AppendLog<'_>) -> Result<LogAppend> {
        write!(self, "append_log", self.inner.append_log(req))
    }

    async fn logs(&self, id: RunId, after: u64) -> Result<Vec<LogChunk>> {
        read!(self, self.inner.logs(id, after))
    }

    async fn prune_logs(&self, finished_before: Timestamp) -> Result<u64> {
        write!(self, "prune_logs", self.inner.prune_logs(finished_before))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Ledger for CrashStore {
    async fn record_usage(&self, usage: &UsageRecord) -> Result<()> {
        write!(self, "record_usage", self.inner.record_usage(usage))
    }

    async fn usage(&self, id: RunId) -> Result<Vec<UsageRecord>> {
        read!(self, self.inner.usage(id))
    }

    async fn spend(&self, req: &SpendQuery) -> Result<Vec<Spend>> {
        read!(self, self.inner.spend(req))
    }

    async fn daily_costs(&self, req: &CostQuery) -> Result<Vec<DailyCost>> {
        read!(self, self.inner.daily_costs(req))
    }

    async fn record_decision(&self, decision: &ModelDecision) -> Result<()> {
        write!(self, "record_decision", self.inner.record_decision(decision))
    }

    async fn decision(&self, id: RunId) -> Result<Option<ModelDecision>> {
        read!(self, self.inner.decision(id))
    }

    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        write!(self, "record_outcome", self.inner.record_outcome(outcome))
    }

    async fn outcomes(&self, project: ProjectId) -> Result<Vec<Outcome>> {
        read!(self, self.inner.outcomes(project))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Audit for CrashStore {
    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        write!(self, "audit", self.inner.audit(event))
    }

    async fn audit_events(&self, project: Option<ProjectId>) -> Result<Vec<AuditEvent>> {
        read!(self, self.inner.audit_events(project))
    }
}

/// The forge as a [`Crash`]ing worker sees it.
struct DeadForge {
    inner: Arc<dyn Forge>,
    crash: Arc<Crash>,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Forge for DeadForge {
    async fn poll_triggered(&self, req: &PollRequest) -> Result<Vec<ForgeIssue>> {
        read!(self, self.inner.poll_triggered(req))
    }
    async fn issue(&self, repo: &RepoRef, number: u64) -> Result<ForgeIssue> {
        read!(self, self.inner.issue(repo, number))
    }
    async fn upsert_comment(&self, req: &CommentRequest) -> Result<u64> {
        read!(self, self.inner.upsert_comment(req))
    }
    async fn set_labels(&self, req: &LabelChange) -> Result<()> {
        read!(self, self.inner.set_labels(req))
    }
    async fn find_or_create_pr(&self, req: &PrRequest) -> Result<PullRequest> {
        read!(self, self.inner.find_or_create_pr(req))
    }
    async fn create_sub_issue(&self, req: &SubIssueRequest) -> Result<SubIssue> {
        read!(self, self.inner.create_sub_issue(req))
    }
    async fn pr_feedback(&self, req: &PrFeedbackRequest) -> Result<PrFeedback> {
        read!(self, self.inner.pr_feedback(req))
    }
    async fn closed_issues(&self, repo: &RepoRef, since: Timestamp) -> Result<Vec<ForgeIssue>> {
        read!(self, self.inner.closed_issues(repo, since))
    }
}

/// The workspaces as a [`Crash`]ing worker sees them.
struct DeadWorkspaces {
    inner: Arc<support::FileWorkspaces>,
    crash: Arc<Crash>,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Workspaces for DeadWorkspaces {
    async fn ensure_mirror(&self, project: &Project) -> Result<()> {
        read!(self, self.inner.ensure_mirror(project))
    }
    async fn create_worktree(&self, req: &WorktreeRequest<'_>) -> Result<Worktree> {
        read!(self, self.inner.create_worktree(req))
    }
    async fn commit_all(&self, req: &CommitRequest<'_>) -> Result<Option<String>> {
        read!(self, self.inner.commit_all(req))
    }
    async fn changed_paths(&self, worktree: &Worktree) -> Result<Vec<String>> {
        read!(self, self.inner.changed_paths(worktree))
    }
    async fn lines_changed(&self, worktree: &Worktree) -> Result<Option<u64>> {
        read!(self, self.inner.lines_changed(worktree))
    }
    async fn rebase(&self, project: &Project, worktree: &Worktree) -> Result<RebaseOutcome> {
        read!(self, self.inner.rebase(project, worktree))
    }
    async fn push(&self, project: &Project, worktree: &Worktree) -> Result<()> {
        read!(self, self.inner.push(project, worktree))
    }
    async fn check_limits(&self, worktree: &Worktree, limits: &paid_core::WorktreeLimits) -> Result<()> {
        read!(self, self.inner.check_limits(worktree, limits))
    }
    async fn remove(&self, worktree: &Worktree) -> Result<()> {
        read!(self, self.inner.remove(worktree))
    }
    async fn sweep_orphans(&self, keep: &[RunId], older_than: chrono::Duration) -> Result<Vec<PathBuf>> {
        read!(self, self.inner.sweep_orphans(keep, older_than))
    }
}

/// The sandbox runtime as a [`Crash`]ing worker sees it.
struct DeadRuntime {
    inner: Arc<support::FileRuntime>,
    crash: Arc<Crash>,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl SandboxRuntime for DeadRuntime {
    async fn ensure_image(&self, image: &str) -> Result<()> {
        read!(self, self.inner.ensure_image(image))
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        read!(self, self.inner.create(spec))
    }
    async fn exec(&self, sandbox: &SandboxHandle, req: ExecRequest) -> Result<BoxStream<'static, Result<ExecEvent>>> {
        read!(self, self.inner.exec(sandbox, req))
    }
    async fn is_running(&self, sandbox: &SandboxHandle) -> Result<bool> {
        read!(self, self.inner.is_running(sandbox))
    }
    async fn stop(&self, sandbox: &SandboxHandle) -> Result<()> {
        read!(self, self.inner.stop(sandbox))
    }
    async fn remove(&self, sandbox: &SandboxHandle) -> Result<()> {
        read!(self, self.inner.remove(sandbox))
    }
    async fn list_managed(&self) -> Result<Vec<SandboxInfo>> {
        read!(self, self.inner.list_managed())
    }
    async fn reap(&self, req: &ReapRequest<'_>) -> Result<ReapReport> {
        read!(self, self.inner.reap(req))
    }
}

// ---------------------------------------------------------------------------
// Driving runs and checking what they did.

/// Drives `id` to its end with `engine`, as a worker pool would: claims it
/// whenever it is claimable; a run parked for a human pick holds no lease
/// and is claimed by nobody until `pick` (if any) is made.
async fn finish(engine: &Engine, id: RunId, pick: Option<&str>, ctx: &str) -> Run {
    for _ in 0..20 {
        let run = engine.store().run(id).await.unwrap();
        if run.state.is_terminal() {
            return run;
        }
        if run.state.is_parked() {
            assert_eq!((run.lease_owner.as_deref(), run.lease_expires_at), (None, None), "{ctx}: parked, leased");
            assert!(engine.claim_next().await.unwrap().is_none(), "{ctx}: a parked run was claimed");
            let pick = pick.unwrap_or_else(|| panic!("{ctx}: parked with nobody to pick"));
            let picked = engine.pick(id, pick).await.unwrap_or_else(|e| panic!("{ctx}: pick: {e}"));
            assert_eq!(picked.lease_owner, None, "{ctx}");
            continue;
        }
        let claimed = engine.claim_next().await.unwrap();
        let claimed = claimed.unwrap_or_else(|| panic!("{ctx}: run in {} cannot be claimed: {run:?}", run.state));
        assert_eq!(claimed.id, id, "{ctx}");
        engine.drive(id).await.unwrap_or_else(|e| panic!("{ctx}: drive from {}: {e}", claimed.state));
    }
    panic!("{ctx}: run {id} never ended");
}

/// Effects by kind: (idempotency key, invocations, creations).
async fn effects(w: &World, kind: EffectKind) -> Vec<(String, usize, usize)> {
    let trail = instant::effects(&*w.store, w.project.id).await.unwrap();
    instant::count(&trail)
        .into_iter()
        .filter(|((k, _), _)| *k == kind)
        .map(|((_, key), c)| (key, c.invoked, c.created))
        .collect()
}

/// The run succeeded with exactly one branch pushed, one PR (of that
/// branch) and one issue comment (its marker), and left nothing behind.
/// Returns the side effects that were repeated (harmlessly, under their
/// idempotency key).
async fn assert_exactly_once(w: &World, run: &Run, ctx: &str) -> Vec<&'static str> {
    assert_eq!(run.state, RunState::Succeeded, "{ctx}: {:?}", run.failure);
    let branch = run.branch.clone().unwrap_or_else(|| panic!("{ctx}: no branch"));
    let pushes = effects(w, EffectKind::Push).await;
    let prs = effects(w, EffectKind::PullRequest).await;
    let comments = effects(w, EffectKind::Comment).await;
    assert_eq!(pushes.iter().map(|p| (p.0.as_str(), p.2)).collect::<Vec<_>>(), [(branch.as_str(), 1)], "{ctx}");
    assert_eq!(prs.iter().map(|p| (p.0.as_str(), p.2)).collect::<Vec<_>>(), [(branch.as_str(), 1)], "{ctx}");
    let marker = comment_marker(run.id);
    assert_eq!(comments.iter().map(|c| (c.0.as_str(), c.2)).collect::<Vec<_>>(), [(marker.as_str(), 1)], "{ctx}");
    let heads: Vec<String> = w.forge.prs.lock().unwrap().iter().map(|p| p.head.clone()).collect();
    assert!(heads.iter().all(|h| *h == branch), "{ctx}: PR requests for other heads: {heads:?}");
    assert!(run.pr_url.is_some(), "{ctx}: no PR URL recorded");
    assert!(w.worktrees_left().is_empty(), "{ctx}: worktrees left: {:?}", w.worktrees_left());
    assert_eq!(w.runtime.live_runs(), Vec::<RunId>::new(), "{ctx}: sandboxes left");
    assert!(run.finished_at.is_some(), "{ctx}: {run:?}");
    let mut repeated = Vec::new();
    for (name, list) in [("push", &pushes), ("pr", &prs), ("comment", &comments)] {
        if list[0].1 > 1 {
            repeated.push(name);
        }
    }
    repeated
}

/// Waits until `done` holds (checked every few milliseconds), for at most
/// ten seconds.
async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Crash and resume at every step boundary.

/// A one-iteration build run (or, when `passes` is false, one whose
/// verify fails at both iterations, so that it fails) during which worker
/// `w1` dies at its `n`th store write (`n` = 0: it does not die); `w2` takes
/// over once the lease ran out. Returns the writes `w1` made (all of them
/// when it did not die) and the idempotent effects repeated on resume.
async fn build_run_crashing_at(passes: bool, n: usize, point: FaultPoint) -> (Vec<&'static str>, Vec<&'static str>) {
    let w = World::new(&[("none", Behavior::new(&["fix.txt"], passes, 10))]).await;
    let clock = clock();
    let run = engine(&w, "api", &clock).enqueue(w.project.id, 1).await.unwrap();
    let crash = Crash::at(n, point);
    let first = doomed(&w, "w1", &clock, &crash);
    let outcome = tokio::time::timeout(Duration::from_secs(20), first.run_once()).await;
    let outcome = outcome.unwrap_or_else(|_| panic!("write {n} {point:?}: the dying worker hung"));
    drop(first);
    let writes = crash.writes();
    let (ended, ctx) = if n == 0 {
        (outcome.unwrap().expect("the run was claimed"), "clean run".to_string())
    } else {
        assert!(crash.dead(), "write {n} {point:?}: the run made only {} writes: {writes:?}", writes.len());
        let left_in = w.store.run(run.id).await.unwrap().state;
        let ctx = format!("crash {point:?} write {n} ({}), run left in {left_in}", writes[n - 1]);
        clock.advance(past_the_lease());
        (finish(&engine(&w, "w2", &clock), run.id, None, &ctx).await, ctx)
    };
    let repeated =
        if passes { assert_exactly_once(&w, &ended, &ctx).await } else { failed_once(&w, &ended, &ctx).await };
    (writes, repeated)
}

/// The run failed verification, pushed nothing, opened no PR, reported
/// its failure in one issue comment and left nothing behind.
async fn failed_once(w: &World, run: &Run, ctx: &str) -> Vec<&'static str> {
    assert_eq!(run.state, RunState::Failed, "{ctx}: {:?}", run.failure);
    let failure = run.failure.clone().unwrap_or_else(|| panic!("{ctx}: no failure recorded"));
    assert_eq!((failure.step, failure.code.as_str()), (RunState::Verifying, "verify_failed"), "{ctx}: {failure:?}");
    assert_eq!(run.iterations, 2, "{ctx}");
    assert!(effects(w, EffectKind::Push).await.is_empty(), "{ctx}: pushed");
    assert!(effects(w, EffectKind::PullRequest).await.is_empty(), "{ctx}: opened a PR");
    let comments = effects(w, EffectKind::Comment).await;
    let marker = comment_marker(run.id);
    assert_eq!(comments.iter().map(|c| (c.0.as_str(), c.2)).collect::<Vec<_>>(), [(marker.as_str(), 1)], "{ctx}");
    assert!(w.worktrees_left().is_empty(), "{ctx}: worktrees left: {:?}", w.worktrees_left());
    assert_eq!(w.runtime.live_runs(), Vec::<RunId>::new(), "{ctx}: sandboxes left");
    if comments[0].1 > 1 { vec!["comment"] } else { Vec::new() }
}

/// Crashes `w1` before and after each write of a clean run of the kind
/// `passes` says, checks each run, and describes what was covered.
async fn crash_at_every_write(passes: bool) -> String {
    let started = Instant::now();
    let (boundaries, _) = build_run_crashing_at(passes, 0, FaultPoint::Before).await;
    assert_eq!(boundaries.first(), Some(&"claim"));
    for method in ["resume_or_begin_step", "finish_step_and_transition", "transition", "finish_step"] {
        assert!(boundaries.contains(&method), "{method} not on the run path: {boundaries:?}");
    }
    let cases: Vec<(usize, FaultPoint)> =
        (1..=boundaries.len()).flat_map(|n| [(n, FaultPoint::Before), (n, FaultPoint::After)]).collect();
    let results: Vec<_> = futures::stream::iter(cases.iter().copied())
        .map(|(n, point)| async move { (n, point, build_run_crashing_at(passes, n, point).await) })
        .buffered(4)
        .collect()
        .await;
    let mut repeated = String::new();
    for (n, point, (writes, again)) in &results {
        assert_eq!(writes[..*n], boundaries[..*n], "crash {point:?} {n}: another path than the clean run's");
        if !again.is_empty() {
            repeated.push_str(&format!("  {point:?} write {n} ({}): {again:?} again\n", writes[n - 1]));
        }
    }
    format!(
        "{} store-write boundaries, {} crashes (before and after each write), {:?}\n\
         boundaries: {boundaries:?}\nidempotent effects repeated on resume (same key, nothing new created):\n{repeated}",
        boundaries.len(),
        cases.len(),
        started.elapsed()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_at_any_store_write_is_replaced_with_one_branch_one_pr_and_one_comment() {
    println!("build run: {}", crash_at_every_write(true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_whose_worker_dies_at_any_store_write_still_fails_once_and_cleans_up() {
    println!("failing build run: {}", crash_at_every_write(false).await);
}

/// Passes verify; cheap.
fn lean() -> (&'static str, Behavior) {
    ("lean", Behavior::new(&["a.txt"], true, 300))
}

/// Passes verify; dearer.
fn big() -> (&'static str, Behavior) {
    ("big", Behavior::new(&["a.txt", "b.txt"], true, 900))
}

/// One crash of a comparison run that parks for a human pick: `w1` drives
/// it until it parks, the pick (of the dearer candidate, so that it is the
/// pick and not the ranking that decides) is made in the same process, and
/// `w1` drives the run on, dying at its `n`th store write; `w2` finishes.
/// The candidates run in parallel, so the order of their writes (not their
/// number) may differ from one run to the next.
async fn compare_run_crashing_at(n: usize, point: FaultPoint) -> (Vec<&'static str>, Vec<&'static str>) {
    let w = World::new(&[lean(), big()]).await;
    let clock = clock();
    let spec = CompareSpec::models(["lean", "big"]).rule(SelectionRule::Human);
    let run = engine(&w, "api", &clock).enqueue_compare(w.project.id, 1, spec).await.unwrap();
    let observer = engine(&w, "observer", &clock);
    let crash = Crash::at(n, point);
    let first = doomed(&w, "w1", &clock, &crash);
    let flow = async {
        let parked = first.run_once().await?.expect("the run was claimed");
        assert_eq!(parked.state, RunState::AwaitingChoice, "{:?}", parked.failure);
        // Parked: no lease, and no worker claims it until the pick.
        let stored = w.store.run(run.id).await.unwrap();
        assert_eq!((stored.lease_owner, stored.lease_expires_at), (None, None), "parked, yet leased");
        assert!(observer.claim_next().await.unwrap().is_none(), "a parked run was claimed");
        first.pick(run.id, "big").await?;
        first.run_once().await
    };
    let outcome = tokio::time::timeout(Duration::from_secs(20), flow).await;
    let outcome = outcome.unwrap_or_else(|_| panic!("compare write {n} {point:?}: the dying worker hung"));
    drop(first);
    let writes = crash.writes();
    let ended = if n == 0 {
        outcome.unwrap().expect("the picked run was claimed")
    } else {
        assert!(crash.dead(), "compare write {n} {point:?}: only {} writes: {writes:?}", writes.len());
        clock.advance(past_the_lease());
        let ctx = format!("compare: crash {point:?} write {n} ({})", writes[n - 1]);
        finish(&engine(&w, "w2", &clock), run.id, Some("big"), &ctx).await
    };
    let ctx = if n == 0 { "clean comparison run".to_string() } else { format!("compare: crash {point:?} write {n}") };
    assert_eq!(ended.model.as_deref(), Some("big"), "{ctx}: the pick was not honoured");
    assert!(ended.branch.as_deref().is_some_and(|b| b.ends_with("-c2")), "{ctx}: {:?}", ended.branch);
    let repeated = assert_exactly_once(&w, &ended, &ctx).await;
    (writes, repeated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comparison_run_parked_for_a_pick_survives_a_crash_at_any_store_write() {
    let started = Instant::now();
    let (boundaries, _) = compare_run_crashing_at(0, FaultPoint::Before).await;
    let total = boundaries.len();
    for method in ["claim", "audit", "transition", "finish_step_and_transition"] {
        assert!(boundaries.contains(&method), "{method} not on the run path: {boundaries:?}");
    }
    let cases: Vec<(usize, FaultPoint)> =
        (1..=total).flat_map(|n| [(n, FaultPoint::Before), (n, FaultPoint::After)]).collect();
    let results: Vec<_> = futures::stream::iter(cases.iter().copied())
        .map(|(n, point)| async move { (n, point, compare_run_crashing_at(n, point).await) })
        .buffered(4)
        .collect()
        .await;
    let repeated = results.iter().filter(|(_, _, (_, r))| !r.is_empty()).count();
    println!(
        "comparison run (human pick): {total} store-write boundaries, {} crashes, {repeated} of them repeated an \
         idempotent effect, {:?}\nboundaries (candidates interleave): {boundaries:?}",
        cases.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Intake.

/// The world's forge with issues of its own to poll, whose labels move as
/// the engine sets them.
struct IssueForge {
    inner: Arc<CapturingForge>,
    issues: Mutex<Vec<ForgeIssue>>,
    polls: AtomicUsize,
}

fn forge_issue(number: u64, author: &str, labels: &[&str]) -> ForgeIssue {
    ForgeIssue {
        number,
        title: format!("Issue {number}"),
        body: format!("Please fix thing {number}."),
        author: author.into(),
        // Each login (case-insensitively) its own account.
        author_id: Some(
            author.to_ascii_lowercase().bytes().fold(7_000_000, |h, b| h * 31 % 1_000_000_007 + u64::from(b)),
        ),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        state: IssueState::Open,
        url: format!("https://instant.invalid/issues/{number}"),
    }
}

impl IssueForge {
    fn new(inner: Arc<CapturingForge>, issues: Vec<ForgeIssue>) -> Arc<Self> {
        Arc::new(Self { inner, issues: Mutex::new(issues), polls: AtomicUsize::new(0) })
    }

    fn add(&self, issue: ForgeIssue) {
        self.issues.lock().unwrap().push(issue);
    }

    fn labels(&self, number: u64) -> Vec<String> {
        self.issues.lock().unwrap().iter().find(|i| i.number == number).map(|i| i.labels.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Forge for IssueForge {
    async fn poll_triggered(&self, req: &PollRequest) -> Result<Vec<ForgeIssue>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let issues = self.issues.lock().unwrap().clone();
        Ok(issues
            .into_iter()
            .filter(|i| i.state == IssueState::Open && i.labels.iter().any(|l| req.labels.contains(l)))
            .collect())
    }
    async fn issue(&self, repo: &RepoRef, number: u64) -> Result<ForgeIssue> {
        let found = self.issues.lock().unwrap().iter().find(|i| i.number == number).cloned();
        match found {
            Some(issue) => Ok(issue),
            None => self.inner.issue(repo, number).await,
        }
    }
    async fn upsert_comment(&self, req: &CommentRequest) -> Result<u64> {
        self.inner.upsert_comment(req).await
    }
    async fn set_labels(&self, req: &LabelChange) -> Result<()> {
        if let Some(issue) = self.issues.lock().unwrap().iter_mut().find(|i| i.number == req.number) {
            issue.labels.retain(|l| !req.remove.contains(l));
            for l in &req.add {
                if !issue.labels.contains(l) {
                    issue.labels.push(l.clone());
                }
            }
        }
        self.inner.set_labels(req).await
    }
    async fn find_or_create_pr(&self, req: &PrRequest) -> Result<PullRequest> {
        self.inner.find_or_create_pr(req).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_queues_each_labeled_issue_once_and_ignores_untrusted_authors() {
    let w = World::new(&[]).await;
    let forge = IssueForge::new(
        w.forge.clone(),
        vec![
            forge_issue(1, "octocat", &["paid-build"]),
            forge_issue(2, "mallory", &["paid-build"]),
            // Handled already.
            forge_issue(3, "octocat", &["paid-build", "paid-done"]),
            // Logins compare case-insensitively.
            forge_issue(4, "OctoCat", &["paid-build"]),
            // Not triggered.
            forge_issue(5, "octocat", &["bug"]),
        ],
    );
    let clock = clock();
    let worker = |id: &str| w.builder(id).config(config(id)).clock(clock.clone()).forge(forge.clone()).build().unwrap();
    let (a, b) = (worker("a"), worker("b"));
    let runs_of = |issue: u64| {
        let store = w.store.clone();
        let project = w.project.id;
        async move { store.runs(&RunFilter::all().project(project).issue(issue)).await.unwrap() }
    };

    let report = a.poll_project(w.project.id).await.unwrap();
    assert_eq!(report.queued.len(), 2, "{report:?}");
    assert_eq!((report.untrusted, report.skipped), (vec![2], vec![3]));
    assert!(forge.labels(1).contains(&"paid-in-progress".to_string()), "{:?}", forge.labels(1));

    // Polled again, by two workers at once: nothing more is queued.
    let (ra, rb) = tokio::join!(a.poll_project(w.project.id), b.poll_project(w.project.id));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.queued.is_empty() && rb.queued.is_empty(), "{ra:?} {rb:?}");
    assert_eq!((ra.untrusted, rb.untrusted), (vec![2], vec![2]));

    // A newly labeled issue seen by two polls at once is queued once.
    forge.add(forge_issue(6, "octocat", &["paid-build"]));
    let (ra, rb) = tokio::join!(a.poll_project(w.project.id), b.poll_project(w.project.id));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.queued.len() + rb.queued.len(), 1, "{ra:?} {rb:?}");
    assert_eq!(forge.polls.load(Ordering::SeqCst), 5);
    for (issue, runs) in [(1, 1), (2, 0), (3, 0), (4, 1), (5, 0), (6, 1)] {
        assert_eq!(runs_of(issue).await.len(), runs, "issue #{issue}");
    }

    // The untrusted issue is tracked without its text, audited once (not
    // at every poll), and cannot be triggered by hand either.
    let tracked = w.store.issue(w.project.id, 2).await.unwrap();
    assert!(!tracked.trusted && tracked.body.is_empty(), "{tracked:?}");
    let audit = w.store.audit_events(Some(w.project.id)).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "issue.untrusted").count(), 1, "{audit:?}");
    let err = a.enqueue(w.project.id, 2).await.unwrap_err();
    assert!(matches!(&err, Error::Untrusted { issue: 2, author, .. } if author == "mallory"), "{err}");
    assert!(runs_of(2).await.is_empty());

    // The runs end; their issues are done and are not queued again.
    let done = a.run_until_idle().await.unwrap();
    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|r| r.state == RunState::Succeeded), "{done:?}");
    assert_eq!(forge.labels(1), ["paid-done"]);
    let report = b.poll_project(w.project.id).await.unwrap();
    assert!(report.queued.is_empty(), "{report:?}");
    assert_eq!(effects(&w, EffectKind::PullRequest).await.len(), 3);
}

/// A poll of a labeled issue and an untrusted one by worker `a`, dying at
/// its `n`th store write (0: not dying), then, if it died, a poll by `b`:
/// the labeled issue has exactly one run, the untrusted one none. Returns
/// `a`'s writes.
async fn poll_crashing_at(n: usize, point: FaultPoint) -> Vec<&'static str> {
    let w = World::new(&[]).await;
    let issues = vec![forge_issue(1, "octocat", &["paid-build"]), forge_issue(2, "mallory", &["paid-build"])];
    let forge = IssueForge::new(w.forge.clone(), issues);
    let clock = clock();
    let crash = Crash::at(n, point);
    let doomed = w
        .builder("a")
        .config(config("a"))
        .clock(clock.clone())
        .store(Arc::new(CrashStore { inner: w.store.clone(), crash: crash.clone() }))
        .forge(Arc::new(DeadForge { inner: forge.clone(), crash: crash.clone() }))
        .build()
        .unwrap();
    let first = doomed.poll_project(w.project.id).await;
    let writes = crash.writes();
    let ctx = format!("poll crash {point:?} write {n} ({:?})", n.checked_sub(1).and_then(|i| writes.get(i)));
    if n == 0 {
        assert_eq!(first.unwrap().queued.len(), 1);
    } else {
        assert!(crash.dead(), "{ctx}: only {writes:?}");
        let rescuer = w.builder("b").config(config("b")).clock(clock).forge(forge.clone()).build().unwrap();
        let report = rescuer.poll_project(w.project.id).await.unwrap();
        assert_eq!(report.untrusted, [2], "{ctx}: {report:?}");
    }
    let runs = w.store.runs(&RunFilter::all().project(w.project.id)).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.issue_number).collect::<Vec<_>>(), [1], "{ctx}");
    let tracked = w.store.issue(w.project.id, 2).await.unwrap();
    assert!(!tracked.trusted && tracked.body.is_empty(), "{ctx}: {tracked:?}");
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_interrupted_at_any_store_write_still_queues_each_issue_once() {
    let boundaries = poll_crashing_at(0, FaultPoint::Before).await;
    assert!(boundaries.contains(&"create_run") && boundaries.contains(&"put_issue"), "{boundaries:?}");
    for n in 1..=boundaries.len() {
        for point in [FaultPoint::Before, FaultPoint::After] {
            poll_crashing_at(n, point).await;
        }
    }
    println!("poll: {} store-write boundaries: {boundaries:?}", boundaries.len());
}

// ---------------------------------------------------------------------------
// Step retries.

/// The world's forge, whose `find_or_create_pr` fails its first `failures`
/// calls (with a retryable error or not), or never answers.
struct FlakyPrForge {
    inner: Arc<CapturingForge>,
    failures: AtomicUsize,
    retryable: bool,
    hangs: bool,
    attempts: AtomicUsize,
}

#[async_trait]
impl Forge for FlakyPrForge {
    async fn poll_triggered(&self, req: &PollRequest) -> Result<Vec<ForgeIssue>> {
        self.inner.poll_triggered(req).await
    }
    async fn issue(&self, repo: &RepoRef, number: u64) -> Result<ForgeIssue> {
        self.inner.issue(repo, number).await
    }
    async fn upsert_comment(&self, req: &CommentRequest) -> Result<u64> {
        self.inner.upsert_comment(req).await
    }
    async fn set_labels(&self, req: &LabelChange) -> Result<()> {
        self.inner.set_labels(req).await
    }
    async fn find_or_create_pr(&self, req: &PrRequest) -> Result<PullRequest> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.hangs {
            std::future::pending::<()>().await;
        }
        let failing = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failing {
            return Err(Error::Backend {
                backend: "test-forge",
                message: "502 Bad Gateway".into(),
                retryable: self.retryable,
                source: None,
            });
        }
        self.inner.find_or_create_pr(req).await
    }
}

/// Runs issue 1 against a forge whose PR creation fails `failures` times
/// (or hangs), with three retries. Returns the world, the ended run and the
/// attempts made.
async fn with_pr_failures(failures: usize, retryable: bool, hangs: bool) -> (World, Run, usize) {
    let w = World::new(&[]).await;
    let forge = Arc::new(FlakyPrForge {
        inner: w.forge.clone(),
        failures: AtomicUsize::new(failures),
        retryable,
        hangs,
        attempts: AtomicUsize::new(0),
    });
    let config = EngineConfig {
        retry: RetryConfig { max_retries: 3, min_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) },
        timeouts: StepTimeouts { pr: Duration::from_millis(100), ..StepTimeouts::default() },
        ..config("w1")
    };
    let engine = w.builder("w1").config(config).clock(clock()).forge(forge.clone()).build().unwrap();
    engine.enqueue(w.project.id, 1).await.unwrap();
    let run = engine.run_once().await.unwrap().expect("a run");
    let attempts = forge.attempts.load(Ordering::SeqCst);
    (w, run, attempts)
}

/// The run failed at `opening_pr` with `code`, recorded on the run and in
/// the journal; it still pushed, reported the failure and cleaned up.
async fn assert_failed_opening_the_pr(w: &World, run: &Run, end: RunState, code: &str, text: &str) {
    assert_eq!(run.state, end, "{:?}", run.failure);
    let failure = run.failure.clone().expect("a failure is recorded");
    assert_eq!((failure.step, failure.code.as_str()), (RunState::OpeningPr, code), "{failure:?}");
    assert!(failure.message.contains(text), "{failure:?}");
    assert_eq!(w.store.run(run.id).await.unwrap().failure, Some(failure));
    let steps = w.store.steps(run.id).await.unwrap();
    let pr_step = steps.iter().rev().find(|s| s.step == RunState::OpeningPr).expect("opening_pr is journaled");
    assert_eq!(pr_step.status, StepStatus::Failed, "{pr_step:?}");
    assert!(pr_step.error.as_deref().is_some_and(|e| e.contains(text)), "{pr_step:?}");
    assert!(effects(w, EffectKind::PullRequest).await.is_empty(), "no PR");
    assert_eq!(effects(w, EffectKind::Push).await.len(), 1);
    let comments = w.forge.comments.lock().unwrap().clone();
    assert_eq!(comments.len(), 1, "the failure is reported on the issue");
    assert!(comments[0].body.contains(text), "{}", comments[0].body);
    assert!(w.worktrees_left().is_empty(), "{:?}", w.worktrees_left());
    assert_eq!(w.runtime.live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_side_effect_failure_is_retried_as_configured() {
    // Three failures, three retries: the fourth attempt opens the PR.
    let (w, run, attempts) = with_pr_failures(3, true, false).await;
    assert_eq!(attempts, 4);
    assert_exactly_once(&w, &run, "retried").await;
    let steps = w.store.steps(run.id).await.unwrap();
    assert_eq!(steps.iter().filter(|s| s.step == RunState::OpeningPr).count(), 1, "one journal record: {steps:#?}");

    // Four failures: the retries are spent and the run fails.
    let (w, run, attempts) = with_pr_failures(4, true, false).await;
    assert_eq!(attempts, 4, "one attempt and max_retries retries");
    assert_failed_opening_the_pr(&w, &run, RunState::Failed, "backend", "502 Bad Gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_side_effect_failure_fails_the_run_at_once_with_the_failure_recorded() {
    let (w, run, attempts) = with_pr_failures(1, false, false).await;
    assert_eq!(attempts, 1, "not retried");
    assert_failed_opening_the_pr(&w, &run, RunState::Failed, "backend", "502 Bad Gateway").await;

    // A step that runs out of time is not retried either.
    let (w, run, attempts) = with_pr_failures(0, true, true).await;
    assert_eq!(attempts, 1, "not retried");
    assert_failed_opening_the_pr(&w, &run, RunState::TimedOut, "timeout", "step opening_pr").await;
}

// ---------------------------------------------------------------------------
// Worker leases.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_run_is_claimed_by_no_other_worker_until_its_lease_expires() {
    let w = World::new(&[]).await;
    let clock = clock();
    let (a, b) = (engine(&w, "a", &clock), engine(&w, "b", &clock));
    let run = a.enqueue(w.project.id, 1).await.unwrap();
    assert_eq!(a.claim_next().await.unwrap().map(|r| r.id), Some(run.id));
    assert_eq!(a.advance(run.id).await.unwrap().state, RunState::SelectingModel);
    assert_eq!(a.advance(run.id).await.unwrap().state, RunState::Provisioning);

    // Held: another worker can neither claim nor advance it.
    assert!(b.claim_next().await.unwrap().is_none());
    assert!(matches!(b.advance(run.id).await, Err(Error::LeaseLost { .. })));
    clock.advance(chrono::Duration::from_std(LEASE).unwrap() - chrono::Duration::seconds(1));
    assert!(b.claim_next().await.unwrap().is_none(), "a second before expiry");
    let held = w.store.run(run.id).await.unwrap();
    assert_eq!((held.state, held.lease_owner.as_deref()), (RunState::Provisioning, Some("a")));

    // Expired: the first worker, still around, cannot write any more...
    clock.advance(chrono::Duration::seconds(2));
    assert!(matches!(a.advance(run.id).await, Err(Error::LeaseLost { .. })));
    assert_eq!(w.store.run(run.id).await.unwrap().state, RunState::Provisioning);
    // ...and the second takes the run over where it was.
    let taken = b.claim_next().await.unwrap().expect("an expired lease is claimable");
    assert_eq!((taken.id, taken.state, taken.lease_owner.as_deref()), (run.id, RunState::Provisioning, Some("b")));
    assert!(matches!(a.advance(run.id).await, Err(Error::LeaseLost { .. })));
    let done = b.drive(run.id).await.unwrap();
    assert_exactly_once(&w, &done, "taken over").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_lease_and_a_worker_that_loses_it_stops_its_agent() {
    // The agent of worker `a` would take a minute; `b`'s is quick.
    let slow = ("none", Behavior { delay: Some(Duration::from_secs(60)), ..Behavior::new(&["fix.txt"], true, 10) });
    let w = World::new(&[slow]).await;
    let clock = clock();
    let a = w
        .builder("a")
        .config(EngineConfig { heartbeat_interval: Duration::from_millis(50), ..config("a") })
        .clock(clock.clone())
        .build()
        .unwrap();
    let b = w.builder("b").config(config("b")).clock(clock.clone()).agent(Arc::new(ScriptedAgent::default()));
    let b = b.build().unwrap();
    let run = a.enqueue(w.project.id, 1).await.unwrap();
    a.claim_next().await.unwrap().expect("claimed");
    let driving = tokio::spawn({
        let a = a.clone();
        async move { a.drive(run.id).await }
    });
    until("the agent to start", || async { !w.agent.calls().is_empty() }).await;
    let expiry = |run: Run| run.lease_expires_at.expect("leased");
    let first_expiry = expiry(w.store.run(run.id).await.unwrap());

    // Time passes; the heartbeat renews the lease from the clock's now.
    clock.advance(chrono::Duration::seconds(40));
    until("a heartbeat", || async { expiry(w.store.run(run.id).await.unwrap()) > first_expiry }).await;
    clock.advance(chrono::Duration::seconds(40));
    assert!(clock.now() > first_expiry);
    assert!(b.claim_next().await.unwrap().is_none(), "the renewed lease holds");

    // The worker stalls past its lease (its next heartbeat is too late): it
    // learns at that heartbeat, stops its agent and gives the run up.
    clock.advance(past_the_lease());
    let stopped = tokio::time::timeout(Duration::from_secs(10), driving).await.expect("the agent was stopped");
    assert!(matches!(stopped.unwrap(), Err(Error::LeaseLost { .. })));
    assert_eq!(w.store.run(run.id).await.unwrap().state, RunState::RunningAgent);

    let done = finish(&b, run.id, None, "taken over").await;
    assert_exactly_once(&w, &done, "taken over").await;
}
