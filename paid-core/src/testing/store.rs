//! The conformance suite of the [`Store`] port.
//!
//! A backend is done when every function here passes against it. Each test
//! takes a fresh, empty store; [`run_all`] runs them all with a factory, and
//! [`concurrent_writers`] takes two handles on one database. Failures name the
//! test and the broken expectation.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use paid_core::{Store, testing::store};
//!
//! # fn open_store() -> Arc<dyn Store> { unimplemented!() }
//! # async fn example() {
//! store::run_all(|| async { open_store() }).await;
//! # }
//! ```
//!
//! # The contract the suite pins
//!
//! - **Lists** of a missing parent are empty; every other call naming a
//!   missing project, issue, run or step fails with [`Error::NotFound`].
//! - **Projects**: `put_project` replaces the whole value; `projects` is
//!   oldest first. `delete_project` fails with [`Error::InvalidInput`] while
//!   the project has an active run, and otherwise deletes its issues and runs
//!   with everything recorded about them. Audit events outlive it.
//! - **Runs**: `create_run` needs the project (not the tracked issue) and
//!   fails with [`Error::AlreadyExists`] on a duplicate id or a second active
//!   run of the same issue and kind. `runs` is newest first.
//! - **Transitions** are checked in this order: the run exists; the state
//!   machine allows `from -> to` ([`Error::IllegalTransition`]); the owner
//!   holds the lease ([`Error::LeaseLost`]); the run is in `from`
//!   ([`Error::IllegalTransition`]). A transition sets `updated_at`, and
//!   `finished_at` when the new state is an end state. It keeps the lease,
//!   but for **parked** states ([`RunState::is_parked`]): a transition into
//!   one clears the lease in the same write, and one out of one needs no
//!   lease (any `owner`; the compare-and-set on `from` still applies) and
//!   leaves the run unleased.
//! - **Leases** are held while `now < lease_expires_at`. `claim` takes the
//!   runnable run with the highest priority, then the oldest, then the lowest
//!   id, never a parked one, skipping projects at their
//!   `max_concurrent_runs`: a project's load
//!   is its active runs holding an unexpired lease (an expired lease counts
//!   for nothing, so its run is claimable again), and the limit holds under
//!   concurrent claimers. `claim` and `heartbeat` set
//!   `lease_expires_at = now + lease`. Lease
//!   operations do not change `updated_at`. `heartbeat` needs an unexpired
//!   lease. `release` by the recorded owner always succeeds (even after
//!   expiry); releasing an unleased run is a no-op; releasing someone else's
//!   lease fails with [`Error::LeaseLost`].
//! - **Cancellation**: an unleased (or lease-expired) run goes to `cancelled`
//!   at once, its lease cleared; a leased run, or one in `cleaning`, only
//!   gets the flag; a parked run gets the flag and goes to `cleaning` with
//!   [`Failure::cancelled`]`(its state)`, unleased, for a worker to claim; an
//!   ended run is left alone and gets no flag.
//! - **Step journal**: `seq` counts from 1 per run; `finish_step` marks the
//!   latest record of the step that is still `started`.
//!   `finish_step_and_transition` does both or neither, failing as
//!   `finish_step` would, then as `transition` would. `resume_or_begin_step`
//!   returns the last record when it is the step and `done`, and otherwise
//!   begins the step.
//! - **Logs**: `seq` counts from 1 per run. The cap counts chunk bytes, not
//!   the marker. An append that would cross the cap stores the part that fits
//!   (cut on a character boundary), then [`TRUNCATION_MARKER`] as a `system`
//!   chunk, once; later appends store nothing. Logs are not lease-checked.
//!   `prune_logs(cutoff)` deletes the chunks of runs whose `finished_at` is
//!   before `cutoff`, and nothing else, and returns how many it deleted.
//! - **Usage** and **audit events** come back oldest first, ties in insertion
//!   order; **outcomes** newest first. Decisions and outcomes are one per run,
//!   replaced on record.
//! - **Usage aggregates**: `spend` and `daily_costs` answer what summing the
//!   records of `usage` with [`UsageTotals::add`] gives, for every
//!   combination of their filters (`since` is inclusive; filters combine).
//!   A group without a selected record has no row; days are UTC; rows come
//!   ordered by their keys (ids, then models bytewise). Sums saturate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: panicking with the unexpected value is how it reports"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::Duration;
use futures::FutureExt;
use futures::future::BoxFuture;
use pretty_assertions::assert_eq;

use super::fixtures::{self, at, at_millis};
use crate::{
    AppendLog, AuditEvent, ClaimRequest, CostQuery, DailyCost, Error, Failure, IssueState, LabelConfig, LogAppend,
    LogChunk, LogStream, ModelDecision, NewRun, Outcome, Project, Run, RunFilter, RunKind, RunPatch, RunState, Spend,
    SpendGroup, SpendQuery, StepRecord, StepStatus, Store, TRUNCATION_MARKER, Timestamp, TrackedIssue, Transition,
    Usage, UsageRecord, UsageTotals,
};

/// One test of the suite. It gets a fresh, empty store.
pub type TestFn = fn(Arc<dyn Store>) -> BoxFuture<'static, ()>;

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        /// Every test that needs one fresh store, with its name, in the order
        /// [`run_all`] runs them. [`concurrent_writers`] is not among them: it
        /// needs two handles on one database.
        pub const TESTS: &[(&str, TestFn)] = &[
            $((stringify!($name), |store| -> BoxFuture<'static, ()> { Box::pin($name(store)) })),*
        ];
    };
}

suite!(
    projects_crud,
    project_delete_needs_no_active_run,
    issues_crud,
    runs_create_and_read,
    runs_one_active_per_issue_and_kind,
    runs_list_newest_first,
    transitions_follow_the_pipeline,
    transitions_reject_illegal,
    transitions_compare_and_set,
    transitions_need_the_lease,
    patch_run_sets_given_fields,
    run_context_is_written_with_the_run,
    claim_order,
    claim_honours_project_limits,
    parked_runs_free_their_slot,
    parked_runs_are_never_claimed,
    runs_moved_on_from_parked_are_claimed,
    parking_through_finish_step_and_transition,
    cancelling_a_parked_run_sends_it_to_cleanup,
    project_limits_hold_under_concurrent_claimers,
    leases_expire_and_are_reclaimed,
    heartbeat_and_release,
    ended_runs_are_never_claimed,
    cancellation,
    step_journal,
    finish_step_and_transition_is_atomic,
    resume_or_begin_step,
    logs_are_bounded,
    logs_cap_edges,
    logs_page_by_seq,
    logs_are_pruned,
    usage_records,
    usage_aggregates_equal_the_sums_of_usage,
    usage_aggregates_of_nothing_are_empty,
    usage_aggregates_saturate,
    model_decisions,
    outcomes,
    audit_events,
    missing_entities,
);

/// A run's context is created in the same write as the run, read back with
/// it everywhere (`run`, `runs`, `claim`, transitions), replaced whole by a
/// patch or a transition that carries one, and kept by those that do not.
pub async fn run_context_is_written_with_the_run(store: Arc<dyn Store>) {
    use crate::RunContext;
    use crate::engine::CompareSpec;
    let s = &*store;
    let p = seed(s, "widgets").await;
    let plain = queue(s, &fixtures::new_run(p.id, 1)).await;
    assert_eq!(plain.context, RunContext::new(), "no context is an empty one");
    let spec = CompareSpec::models(["a", "b"]);
    let new = NewRun { context: RunContext::compare(spec.clone()), ..fixtures::new_run(p.id, 2) };
    let compared = queue(s, &new).await;
    assert_eq!(compared.context.compare.as_ref(), Some(&spec));
    assert_eq!(s.run(compared.id).await.unwrap().context, new.context, "read back by id");
    let listed = s.runs(&RunFilter { issue_number: Some(2), ..RunFilter::default() }).await.unwrap();
    assert_eq!(listed[0].context, new.context, "read back by list");

    // Claimed and walked: transitions without a context keep it.
    let got = s.claim(&claim_req(OWNER, hour(), at(1))).await.unwrap().unwrap();
    assert_eq!(got.id, plain.id, "the older run first");
    let got = s.claim(&claim_req(OWNER, hour(), at(1))).await.unwrap().unwrap();
    assert_eq!(got.context, new.context, "claim reads the context");
    let walked = walk(s, got, OWNER, &path_to(RunState::RunningAgent), at(2)).await;
    assert_eq!(walked.context, new.context, "transitions without a context keep it");

    // A patch replaces it whole; a patch without one keeps it.
    let picked = new.context.clone().with_pick("c1-a");
    let patch = RunPatch { context: Some(picked.clone()), ..RunPatch::default() };
    assert_eq!(s.patch_run(walked.id, OWNER, &patch, at(3)).await.unwrap().context, picked);
    let other = RunPatch { model: Some("m".into()), ..RunPatch::default() };
    assert_eq!(s.patch_run(walked.id, OWNER, &other, at(3)).await.unwrap().context, picked);
    assert_eq!(s.run(walked.id).await.unwrap().context, picked);

    // A transition that carries one sets it in the same write; a refused
    // transition sets nothing.
    let cleared = RunContext::new();
    let refused = Transition {
        run_id: walked.id,
        from: RunState::Queued,
        to: RunState::SelectingModel,
        owner: OWNER.into(),
        at: at(4),
        context: Some(cleared.clone()),
    };
    assert!(matches!(s.transition(&refused).await, Err(Error::IllegalTransition { .. })), "a stale `from` is refused");
    assert_eq!(s.run(walked.id).await.unwrap().context, picked, "a refused transition changes nothing");
    let moved = Transition { from: RunState::RunningAgent, to: RunState::Verifying, ..refused };
    assert_eq!(s.transition(&moved).await.unwrap().context, cleared);
    assert_eq!(s.run(walked.id).await.unwrap().context, cleared);
    assert_eq!(s.run(plain.id).await.unwrap().context, RunContext::new(), "other runs are untouched");
}

/// Runs every test in [`TESTS`], each on a store from `new_store`, which must
/// return a fresh, empty one each time. Panics at the end, naming every
/// failed test.
pub async fn run_all<F, Fut>(mut new_store: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let mut failed = Vec::new();
    for (name, test) in TESTS {
        eprintln!("store conformance: {name}");
        let store = new_store().await;
        if let Err(panic) = AssertUnwindSafe(test(store)).catch_unwind().await {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {message}"));
        }
    }
    assert!(failed.is_empty(), "{} store conformance test(s) failed:\n{}", failed.len(), failed.join("\n"));
}

/// Fails unless `$result` is an `Err` matching `$pattern`.
macro_rules! expect_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected Err({}), got {other:?}", stringify!($pattern)),
        }
    };
}

const OWNER: &str = "worker-a";
const OTHER: &str = "worker-b";

const HAPPY_PATH: [RunState; 11] = [
    RunState::SelectingModel,
    RunState::Provisioning,
    RunState::RunningAgent,
    RunState::Verifying,
    RunState::Committing,
    RunState::PolicyCheck,
    RunState::Pushing,
    RunState::OpeningPr,
    RunState::Reporting,
    RunState::Cleaning,
    RunState::Succeeded,
];

/// The states a queued run goes through to reach `target`.
fn path_to(target: RunState) -> Vec<RunState> {
    match HAPPY_PATH.iter().position(|s| *s == target) {
        Some(i) => HAPPY_PATH[..=i].to_vec(),
        None if target == RunState::Queued => Vec::new(),
        None if target == RunState::AwaitingChoice => {
            let mut path = path_to(RunState::RunningAgent);
            path.push(target);
            path
        }
        None => vec![target],
    }
}

fn hour() -> Duration {
    Duration::hours(1)
}

fn claim_req(owner: &str, lease: Duration, now: Timestamp) -> ClaimRequest {
    ClaimRequest { owner: owner.into(), lease, now }
}

fn leased(run: &Run, owner: &str, until: Timestamp) -> Run {
    Run { lease_owner: Some(owner.into()), lease_expires_at: Some(until), ..run.clone() }
}

async fn seed(store: &dyn Store, name: &str) -> Project {
    let project = fixtures::project(name);
    store.put_project(&project).await.unwrap();
    project
}

/// A project whose `max_concurrent_runs` no test reaches, for tests that
/// lease more runs of one project than [`fixtures::project`] allows.
async fn seed_roomy(store: &dyn Store, name: &str) -> Project {
    let project = Project { max_concurrent_runs: 1_000, ..fixtures::project(name) };
    store.put_project(&project).await.unwrap();
    project
}

/// A project that may lease at most `limit` runs at once.
async fn seed_limited(store: &dyn Store, name: &str, limit: u32) -> Project {
    let project = Project { max_concurrent_runs: limit, ..fixtures::project(name) };
    store.put_project(&project).await.unwrap();
    project
}

async fn queue(store: &dyn Store, new: &NewRun) -> Run {
    let run = store.create_run(new).await.unwrap();
    assert_eq!(run, Run::from_new(new), "create_run returns the queued run");
    run
}

/// Queues `new` and claims it for `owner` for an hour from `now`. The run
/// must be the only claimable one.
async fn claimed(store: &dyn Store, new: &NewRun, owner: &str, now: Timestamp) -> Run {
    let run = queue(store, new).await;
    let got = store.claim(&claim_req(owner, hour(), now)).await.unwrap();
    let want = leased(&run, owner, now + hour());
    assert_eq!(got, Some(want.clone()), "claim of the only runnable run");
    want
}

/// Moves `run` through `states`, each at `when`, checking every result.
async fn walk(store: &dyn Store, mut run: Run, owner: &str, states: &[RunState], when: Timestamp) -> Run {
    for &to in states {
        let got = store
            .transition(&Transition {
                run_id: run.id,
                from: run.state,
                to,
                owner: owner.into(),
                at: when,
                context: None,
            })
            .await
            .unwrap();
        if to.is_parked() || run.state.is_parked() {
            // Parked runs hold no lease.
            run.lease_owner = None;
            run.lease_expires_at = None;
        }
        run.state = to;
        run.updated_at = when;
        if to.is_terminal() {
            run.finished_at = Some(when);
        }
        assert_eq!(got, run, "transition to {to}");
    }
    run
}

async fn append(store: &dyn Store, run: &Run, stream: LogStream, text: &str, cap: usize, when: Timestamp) -> LogAppend {
    store.append_log(&AppendLog { run_id: run.id, stream, text, cap_bytes: cap, at: when }).await.unwrap()
}

fn chunk(run: &Run, seq: u64, stream: LogStream, text: &str, when: Timestamp) -> LogChunk {
    LogChunk { run_id: run.id, seq, stream, text: text.into(), at: when }
}

/// Create, read, update, list and delete projects.
pub async fn projects_crud(store: Arc<dyn Store>) {
    let s = &*store;
    assert_eq!(s.projects().await.unwrap(), Vec::<Project>::new());

    let newer = Project { created_at: at(60), ..fixtures::project("newer") };
    let older = fixtures::project("older");
    s.put_project(&newer).await.unwrap();
    s.put_project(&older).await.unwrap();
    assert_eq!(s.project(older.id).await.unwrap(), older);
    assert_eq!(s.project(newer.id).await.unwrap(), newer);
    assert_eq!(s.projects().await.unwrap(), vec![older.clone(), newer.clone()], "oldest first");

    let updated = Project {
        clone_url: "/srv/git/older.git".into(),
        default_branch: "main".into(),
        trigger_labels: vec!["only-this".into()],
        allowed_authors: Vec::new(),
        verify: Vec::new(),
        allowed_paths: Vec::new(),
        labels: LabelConfig::default(),
        max_concurrent_runs: 1,
        ..older.clone()
    };
    s.put_project(&updated).await.unwrap();
    assert_eq!(s.project(older.id).await.unwrap(), updated, "put_project replaces the whole value");
    assert_eq!(s.projects().await.unwrap(), vec![updated.clone(), newer.clone()]);

    s.delete_project(newer.id).await.unwrap();
    expect_err!(s.project(newer.id).await, Error::NotFound { entity: "project", .. });
    assert_eq!(s.projects().await.unwrap(), vec![updated]);
}

/// A project with an active run cannot be deleted; without one, deleting it
/// deletes its issues and runs with everything recorded about them, but not
/// its audit trail.
pub async fn project_delete_needs_no_active_run(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "doomed").await;
    let keep = seed(s, "kept").await;
    s.put_issue(&fixtures::issue(project.id, 1)).await.unwrap();
    s.put_issue(&fixtures::issue(keep.id, 1)).await.unwrap();
    let event = fixtures::audit_event(Some(project.id), "run.cancelled", "issue#1", at(9));
    s.audit(&event).await.unwrap();

    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    s.begin_step(run.id, OWNER, RunState::SelectingModel, None, at(1)).await.unwrap();
    append(s, &run, LogStream::Stdout, "output\n", 1024, at(1)).await;
    s.record_usage(&fixtures::usage_record(run.id, at(1))).await.unwrap();
    s.record_decision(&fixtures::decision(run.id)).await.unwrap();
    s.record_outcome(&fixtures::outcome(project.id, run.id, at(2))).await.unwrap();
    let kept_run = queue(s, &fixtures::new_run(keep.id, 1)).await;

    expect_err!(s.delete_project(project.id).await, Error::InvalidInput { .. });
    assert_eq!(s.project(project.id).await.unwrap(), project, "a refused delete changes nothing");
    assert_eq!(s.run(run.id).await.unwrap(), run);

    walk(s, run.clone(), OWNER, &[RunState::Failed], at(3)).await;
    s.delete_project(project.id).await.unwrap();

    expect_err!(s.project(project.id).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.run(run.id).await, Error::NotFound { entity: "run", .. });
    assert_eq!(s.issues(project.id).await.unwrap(), Vec::<TrackedIssue>::new());
    let filter = RunFilter { project_id: Some(project.id), ..RunFilter::default() };
    assert_eq!(s.runs(&filter).await.unwrap(), Vec::<Run>::new());
    assert_eq!(s.steps(run.id).await.unwrap(), Vec::<StepRecord>::new());
    assert_eq!(s.logs(run.id, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.usage(run.id).await.unwrap(), Vec::<UsageRecord>::new());
    assert_eq!(s.decision(run.id).await.unwrap(), None);
    assert_eq!(s.outcomes(project.id).await.unwrap(), Vec::<Outcome>::new());
    assert_eq!(s.audit_events(Some(project.id)).await.unwrap(), vec![event], "the audit trail outlives the project");

    assert_eq!(s.projects().await.unwrap(), vec![keep.clone()], "other projects are untouched");
    assert_eq!(s.issues(keep.id).await.unwrap(), vec![fixtures::issue(keep.id, 1)]);
    assert_eq!(s.run(kept_run.id).await.unwrap(), kept_run);
}

/// Create, read, update and list tracked issues.
pub async fn issues_crud(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let other = seed(s, "gadgets").await;
    assert_eq!(s.issues(project.id).await.unwrap(), Vec::<TrackedIssue>::new());

    let i1 = TrackedIssue {
        state: IssueState::Closed,
        trusted: false,
        labels: Vec::new(),
        body: String::new(),
        ..fixtures::issue(project.id, 1)
    };
    let i2 = fixtures::issue(project.id, 2);
    let i10 = fixtures::issue(project.id, 10);
    for issue in [&i10, &i1, &i2] {
        s.put_issue(issue).await.unwrap();
    }
    assert_eq!(s.issue(project.id, 2).await.unwrap(), i2);
    assert_eq!(s.issues(project.id).await.unwrap(), vec![i1.clone(), i2.clone(), i10.clone()], "by number");

    let i2_changed = TrackedIssue {
        title: "Retitled".into(),
        labels: vec!["paid-plan".into()],
        state: IssueState::Closed,
        updated_at: at_millis(5_005),
        ..i2.clone()
    };
    s.put_issue(&i2_changed).await.unwrap();
    assert_eq!(s.issue(project.id, 2).await.unwrap(), i2_changed, "put_issue updates");

    let same_number = fixtures::issue(other.id, 2);
    s.put_issue(&same_number).await.unwrap();
    assert_eq!(s.issues(other.id).await.unwrap(), vec![same_number], "issue numbers are per project");
    assert_eq!(s.issues(project.id).await.unwrap(), vec![i1, i2_changed, i10]);
}

/// A queued run reads back as queued; ids are unique.
pub async fn runs_create_and_read(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;

    let new = NewRun { priority: 7, created_at: at_millis(1_001), ..fixtures::new_run(project.id, 1) };
    let run = queue(s, &new).await;
    assert_eq!(s.run(new.id).await.unwrap(), run);
    assert!(!s.cancel_requested(new.id).await.unwrap());

    let plan = NewRun {
        kind: RunKind::Plan,
        priority: -3,
        issue_number: 1 << 40,
        created_at: at_millis(2_002),
        ..fixtures::new_run(project.id, 0)
    };
    let plan_run = queue(s, &plan).await;
    assert_eq!(s.run(plan.id).await.unwrap(), plan_run);

    let same_id = NewRun { issue_number: 2, ..new.clone() };
    expect_err!(s.create_run(&same_id).await, Error::AlreadyExists { .. });
    assert_eq!(s.run(new.id).await.unwrap(), run, "a refused create changes nothing");
}

/// One active run per issue and kind; a new one once the first has ended.
pub async fn runs_one_active_per_issue_and_kind(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let other = seed(s, "gadgets").await;

    let first = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    expect_err!(s.create_run(&fixtures::new_run(project.id, 1)).await, Error::AlreadyExists { .. });

    queue(s, &NewRun { kind: RunKind::Plan, ..fixtures::new_run(project.id, 1) }).await;
    queue(s, &fixtures::new_run(project.id, 2)).await;
    queue(s, &fixtures::new_run(other.id, 1)).await;

    let ended = walk(s, first, OWNER, &[RunState::Failed], at(1)).await;
    let second = queue(s, &fixtures::new_run(ended.project_id, ended.issue_number)).await;
    expect_err!(s.create_run(&fixtures::new_run(project.id, 1)).await, Error::AlreadyExists { .. });

    s.request_cancel(second.id, at(2)).await.unwrap();
    queue(s, &fixtures::new_run(project.id, 1)).await;
}

/// `runs` is newest first and honours every filter.
pub async fn runs_list_newest_first(store: Arc<dyn Store>) {
    let s = &*store;
    let p1 = seed(s, "widgets").await;
    let p2 = seed(s, "gadgets").await;
    let new = |p: &Project, issue, kind, secs| NewRun { kind, created_at: at(secs), ..fixtures::new_run(p.id, issue) };

    let a = queue(s, &new(&p1, 1, RunKind::Build, 1)).await;
    let d = queue(s, &new(&p1, 1, RunKind::Plan, 4)).await;
    let b = queue(s, &new(&p1, 2, RunKind::Build, 2)).await;
    let c = queue(s, &new(&p2, 1, RunKind::Build, 3)).await;
    let b = s.request_cancel(b.id, at(5)).await.unwrap();
    assert_eq!(b.state, RunState::Cancelled);

    let list = |filter: RunFilter| async move { s.runs(&filter).await.unwrap() };
    assert_eq!(list(RunFilter::default()).await, vec![d.clone(), c.clone(), b.clone(), a.clone()]);
    let in_p1 = RunFilter { project_id: Some(p1.id), ..RunFilter::default() };
    assert_eq!(list(in_p1.clone()).await, vec![d.clone(), b.clone(), a.clone()]);
    assert_eq!(list(RunFilter { issue_number: Some(1), ..in_p1.clone() }).await, vec![d.clone(), a.clone()]);
    assert_eq!(list(RunFilter { active_only: true, ..in_p1.clone() }).await, vec![d.clone(), a.clone()]);
    assert_eq!(list(RunFilter { limit: Some(2), ..RunFilter::default() }).await, vec![d.clone(), c.clone()]);
    // Pages: each starts after the previous page's last run.
    let page2 = RunFilter { limit: Some(2), before: Some(c.id), ..RunFilter::default() };
    assert_eq!(list(page2).await, vec![b.clone(), a.clone()]);
    assert_eq!(list(RunFilter { before: Some(a.id), ..RunFilter::default() }).await, Vec::<Run>::new());
    assert_eq!(list(RunFilter { before: Some(d.id), ..in_p1.clone() }).await, vec![b.clone(), a.clone()]);
    assert_eq!(list(RunFilter { active_only: true, limit: Some(1), ..RunFilter::default() }).await, vec![d]);
    assert_eq!(list(RunFilter { issue_number: Some(3), ..in_p1 }).await, Vec::<Run>::new());
}

/// A run walks the whole pipeline, looping between agent and verify.
pub async fn transitions_follow_the_pipeline(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let mut run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let path = [
        RunState::SelectingModel,
        RunState::Provisioning,
        RunState::RunningAgent,
        RunState::Verifying,
        RunState::RunningAgent,
        RunState::Verifying,
        RunState::Committing,
        RunState::PolicyCheck,
        RunState::Pushing,
        RunState::OpeningPr,
        RunState::Reporting,
        RunState::Cleaning,
        RunState::Succeeded,
    ];
    for (i, to) in path.into_iter().enumerate() {
        let when = at_millis(1_000 * (i as i64 + 1) + 7);
        run = walk(s, run, OWNER, &[to], when).await;
        assert_eq!(s.run(run.id).await.unwrap(), run, "read back after {to}");
    }
    assert_eq!(run.finished_at, Some(at_millis(13_007)));
    assert_eq!(run.lease_owner.as_deref(), Some(OWNER), "a transition keeps the lease");

    // Failures clean up, then end.
    let run = claimed(s, &fixtures::new_run(project.id, 2), OWNER, at(20)).await;
    let run = walk(s, run, OWNER, &path_to(RunState::RunningAgent), at(21)).await;
    let run = walk(s, run, OWNER, &[RunState::Cleaning, RunState::TimedOut], at(22)).await;
    assert_eq!(s.run(run.id).await.unwrap(), run);
}

/// Every transition the state machine forbids is refused and changes nothing.
pub async fn transitions_reject_illegal(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed_roomy(s, "widgets").await;
    for (i, from) in RunState::ALL.into_iter().enumerate() {
        let new = fixtures::new_run(project.id, i as u64 + 1);
        let run = claimed(s, &new, OWNER, at(0)).await;
        let run = walk(s, run, OWNER, &path_to(from), at(1)).await;
        assert_eq!(run.state, from);
        for to in RunState::ALL {
            if from.can_transition_to(to) {
                continue;
            }
            let t = Transition { run_id: run.id, from, to, owner: OWNER.into(), at: at(2), context: None };
            expect_err!(s.transition(&t).await, Error::IllegalTransition { .. });
        }
        assert_eq!(s.run(run.id).await.unwrap(), run, "refused transitions from {from} change nothing");
    }
}

/// A transition applies only if the run is in `from`.
pub async fn transitions_compare_and_set(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let run = walk(s, run, OWNER, &[RunState::SelectingModel], at(1)).await;

    for (from, to) in [
        (RunState::Queued, RunState::SelectingModel),
        (RunState::Queued, RunState::Failed),
        (RunState::Provisioning, RunState::RunningAgent),
        (RunState::Provisioning, RunState::Cleaning),
    ] {
        let stale = Transition { run_id: run.id, from, to, owner: OWNER.into(), at: at(2), context: None };
        expect_err!(s.transition(&stale).await, Error::IllegalTransition { .. });
    }
    assert_eq!(s.run(run.id).await.unwrap(), run);
    walk(s, run, OWNER, &[RunState::Provisioning], at(3)).await;
}

/// Transitions, patches and journal writes need an unexpired lease.
pub async fn transitions_need_the_lease(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let t = |owner: &str, when| Transition {
        run_id: run.id,
        from: RunState::Queued,
        to: RunState::SelectingModel,
        owner: owner.into(),
        at: when,
        context: None,
    };
    let patch = RunPatch { branch: Some("paid/1-x-abcdef".into()), ..RunPatch::default() };

    expect_err!(s.transition(&t(OWNER, at(1))).await, Error::LeaseLost { .. });
    expect_err!(s.patch_run(run.id, OWNER, &patch, at(1)).await, Error::LeaseLost { .. });
    expect_err!(s.begin_step(run.id, OWNER, RunState::Queued, None, at(1)).await, Error::LeaseLost { .. });

    let lease = Duration::seconds(60);
    let got = s.claim(&claim_req(OWNER, lease, at(10))).await.unwrap();
    assert_eq!(got, Some(leased(&run, OWNER, at(70))));

    expect_err!(s.transition(&t(OTHER, at(11))).await, Error::LeaseLost { .. });
    expect_err!(s.patch_run(run.id, OTHER, &patch, at(11)).await, Error::LeaseLost { .. });
    expect_err!(s.begin_step(run.id, OTHER, RunState::Queued, None, at(11)).await, Error::LeaseLost { .. });
    expect_err!(
        s.finish_step(run.id, OTHER, RunState::Queued, Ok(serde_json::Value::Null), at(11)).await,
        Error::LeaseLost { .. }
    );

    // The lease ends at its expiry instant, not a millisecond later.
    expect_err!(s.transition(&t(OWNER, at(70))).await, Error::LeaseLost { .. });
    expect_err!(s.patch_run(run.id, OWNER, &patch, at(70)).await, Error::LeaseLost { .. });
    assert_eq!(s.run(run.id).await.unwrap(), leased(&run, OWNER, at(70)), "refused writes change nothing");

    let moved = s.transition(&t(OWNER, at_millis(69_999))).await.unwrap();
    assert_eq!(moved.state, RunState::SelectingModel);
}

/// `patch_run` sets the fields given and leaves the rest.
pub async fn patch_run_sets_given_fields(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;

    let first = RunPatch {
        branch: Some("paid/1-fix-the-flaky-test-a1b2c3".into()),
        model: Some("claude-sonnet".into()),
        ..RunPatch::default()
    };
    let want =
        Run { branch: first.branch.clone(), model: first.model.clone(), updated_at: at_millis(5_005), ..run.clone() };
    assert_eq!(s.patch_run(run.id, OWNER, &first, at_millis(5_005)).await.unwrap(), want);

    let failure =
        Failure { step: RunState::Verifying, code: "agent_failed".into(), message: "tests still fail".into() };
    let second = RunPatch {
        pr_url: Some("https://forge.example/acme/widgets/pull/9".into()),
        iterations: Some(3),
        failure: Some(failure.clone()),
        ..RunPatch::default()
    };
    let want = Run { pr_url: second.pr_url.clone(), iterations: 3, failure: Some(failure), updated_at: at(6), ..want };
    assert_eq!(s.patch_run(run.id, OWNER, &second, at(6)).await.unwrap(), want);
    assert_eq!(s.run(run.id).await.unwrap(), want);
}

/// `claim` takes the highest priority first, then the oldest.
pub async fn claim_order(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed_roomy(s, "widgets").await;
    let now = at(100);
    assert_eq!(s.claim(&claim_req(OWNER, hour(), now)).await.unwrap(), None, "nothing to claim");

    let new = |issue, priority, secs| NewRun { priority, created_at: at(secs), ..fixtures::new_run(project.id, issue) };
    let low_old = new(1, 0, 1);
    let high_new = new(2, 5, 3);
    let high_old = new(3, 5, 2);
    let low_new = new(4, 0, 4);
    let negative = new(5, -1, 0);
    for run in [&low_new, &high_new, &negative, &low_old, &high_old] {
        queue(s, run).await;
    }

    for (i, want) in [&high_old, &high_new, &low_old, &low_new, &negative].into_iter().enumerate() {
        let owner = format!("worker-{i}");
        let got = s.claim(&claim_req(&owner, hour(), now)).await.unwrap();
        let want = leased(&Run::from_new(want), &owner, now + hour());
        assert_eq!(got, Some(want.clone()), "claim #{i}");
        assert_eq!(s.run(want.id).await.unwrap(), want);
    }
    assert_eq!(s.claim(&claim_req(OWNER, hour(), now)).await.unwrap(), None, "all runs are leased");
}

/// `claim` skips projects at their `max_concurrent_runs` (other projects
/// are not blocked, priorities still order the rest); ending or releasing a
/// run frees its slot, and so does an expired lease, whose run is then
/// claimable again, even in a project whose limit is one.
pub async fn claim_honours_project_limits(store: Arc<dyn Store>) {
    let s = &*store;
    let widgets = seed_limited(s, "widgets", 2).await;
    let gadgets = seed_limited(s, "gadgets", 1).await;
    let lease = Duration::seconds(30);
    let new = |p: &Project, issue, priority, secs| NewRun {
        priority,
        created_at: at(secs),
        ..fixtures::new_run(p.id, issue)
    };
    let mut w = Vec::new();
    for i in 1..=4 {
        w.push(queue(s, &new(&widgets, i, 5, i as i64)).await);
    }
    let g1 = queue(s, &new(&gadgets, 1, 0, 0)).await;
    let g2 = queue(s, &new(&gadgets, 2, 0, 1)).await;
    let claim = |owner: &'static str, now| async move { s.claim(&claim_req(owner, lease, now)).await.unwrap() };

    assert_eq!(claim("w-1", at(100)).await, Some(leased(&w[0], "w-1", at(130))), "highest priority first");
    assert_eq!(claim("w-2", at(100)).await, Some(leased(&w[1], "w-2", at(130))));
    assert_eq!(
        claim("g-1", at(100)).await,
        Some(leased(&g1, "g-1", at(130))),
        "widgets is full: a lower-priority run of another project is next"
    );
    assert_eq!(claim("x", at(100)).await, None, "every project is at its limit");
    assert_eq!(s.run(w[2].id).await.unwrap(), w[2], "a refused claim changes nothing");

    let w0 = walk(s, leased(&w[0], "w-1", at(130)), "w-1", &[RunState::Failed], at(101)).await;
    assert_eq!(w0.lease_owner.as_deref(), Some("w-1"));
    assert_eq!(claim("w-3", at(101)).await, Some(leased(&w[2], "w-3", at(131))), "an ended run frees its slot");
    assert_eq!(claim("x", at(101)).await, None);

    s.release(w[1].id, "w-2").await.unwrap();
    assert_eq!(claim("w-2b", at(102)).await, Some(leased(&w[1], "w-2b", at(132))), "a release frees its slot");
    assert_eq!(claim("x", at(102)).await, None);

    // At 131 the leases of w[2] (widgets) and g1 (gadgets) have expired.
    assert_eq!(
        claim("w-3b", at(131)).await,
        Some(leased(&w[2], "w-3b", at(161))),
        "an expired lease frees its slot, and its run is claimable again"
    );
    assert_eq!(
        claim("g-1", at(131)).await,
        Some(leased(&g1, "g-1", at(161))),
        "a run is re-claimable by the owner of its expired lease in a project whose limit is one"
    );
    assert_eq!(claim("x", at(131)).await, None);
    assert_eq!(s.run(g2.id).await.unwrap(), g2);
    assert_eq!(s.run(w[3].id).await.unwrap(), w[3]);
}

/// Parks `new` (claimed by [`OWNER`] at `now`, walked to `awaiting_choice`
/// a second later): the run must be the only claimable one.
async fn parked(store: &dyn Store, new: &NewRun, now: Timestamp) -> Run {
    let run = claimed(store, new, OWNER, now).await;
    let run = walk(store, run, OWNER, &path_to(RunState::AwaitingChoice), now + Duration::seconds(1)).await;
    assert!(run.state.is_parked());
    assert_eq!((run.lease_owner.as_deref(), run.lease_expires_at), (None, None), "parking gives the lease up");
    assert_eq!(store.run(run.id).await.unwrap(), run);
    run
}

/// A run parked in `awaiting_choice` (a comparison waiting for a human
/// pick) uses no worker and holds no lease: it does not count against its
/// project's limit, while the same run working did.
pub async fn parked_runs_free_their_slot(store: Arc<dyn Store>) {
    let s = &*store;
    let solo = seed_limited(s, "solo", 1).await;
    let working = claimed(s, &fixtures::new_run(solo.id, 1), OWNER, at(0)).await;
    let working = walk(s, working, OWNER, &path_to(RunState::RunningAgent), at(1)).await;
    let next = queue(s, &fixtures::new_run(solo.id, 2)).await;
    assert_eq!(s.claim(&claim_req(OTHER, hour(), at(2))).await.unwrap(), None, "the working run holds the only slot");

    let parked = walk(s, working, OWNER, &[RunState::AwaitingChoice], at(3)).await;
    assert_eq!(parked.lease_owner, None, "parking gives the lease up");
    let got = s.claim(&claim_req(OTHER, hour(), at(4))).await.unwrap();
    assert_eq!(got.map(|r| r.id), Some(next.id), "the parked run leaves its project's only slot free");
    assert_eq!(s.claim(&claim_req(OTHER, hour(), at(4))).await.unwrap(), None, "the parked run is not claimed");
    assert_eq!(s.run(parked.id).await.unwrap(), parked);
}

/// No claim takes a parked run, however late, while a run of the same
/// project queued after it is claimed (the control). A parked run has no
/// lease to heartbeat and none to release.
pub async fn parked_runs_are_never_claimed(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed_roomy(s, "widgets").await;
    let run = parked(s, &NewRun { priority: 100, ..fixtures::new_run(project.id, 1) }, at(0)).await;
    let control = queue(s, &fixtures::new_run(project.id, 2)).await;

    let got = s.claim(&claim_req(OTHER, hour(), at(2))).await.unwrap();
    assert_eq!(got, Some(leased(&control, OTHER, at(2) + hour())), "the lower-priority queued run, not the parked one");
    walk(s, leased(&control, OTHER, at(2) + hour()), OTHER, &[RunState::Failed], at(3)).await;
    for later in [at(3), at(2) + hour() * 24, at(2) + Duration::days(365)] {
        assert_eq!(s.claim(&claim_req(OTHER, hour(), later)).await.unwrap(), None, "nothing at {later}");
    }
    expect_err!(s.heartbeat(run.id, OWNER, hour(), at(4)).await, Error::LeaseLost { .. });
    expect_err!(
        s.patch_run(run.id, OWNER, &RunPatch { iterations: Some(9), ..RunPatch::default() }, at(4)).await,
        Error::LeaseLost { .. }
    );
    expect_err!(s.begin_step(run.id, OWNER, RunState::AwaitingChoice, None, at(4)).await, Error::LeaseLost { .. });
    s.release(run.id, OWNER).await.unwrap();
    assert_eq!(s.run(run.id).await.unwrap(), run, "refused writes and a no-op release change nothing");
}

/// A transition out of a parked state needs no lease (a pick comes from
/// anywhere) and leaves the run unleased, so it is claimed as usual. The
/// compare-and-set still holds: a stale `from` is refused.
pub async fn runs_moved_on_from_parked_are_claimed(store: Arc<dyn Store>) {
    let s = &*store;
    let solo = seed_limited(s, "solo", 1).await;
    let run = parked(s, &fixtures::new_run(solo.id, 1), at(0)).await;
    assert_eq!(s.claim(&claim_req(OTHER, hour(), at(2))).await.unwrap(), None, "parked: nothing to claim");

    let stale = Transition {
        run_id: run.id,
        from: RunState::RunningAgent,
        to: RunState::Committing,
        owner: OWNER.into(),
        at: at(3),
        context: None,
    };
    expect_err!(s.transition(&stale).await, Error::LeaseLost { .. } | Error::IllegalTransition { .. });
    let pick = Transition { from: RunState::AwaitingChoice, owner: "api".into(), ..stale };
    let moved = s.transition(&pick).await.unwrap();
    let want = Run { state: RunState::Committing, updated_at: at(3), ..run.clone() };
    assert_eq!(moved, want, "moved on, still unleased");
    assert_eq!(s.run(run.id).await.unwrap(), want);
    expect_err!(s.transition(&pick).await, Error::IllegalTransition { .. });

    let got = s.claim(&claim_req(OTHER, hour(), at(4))).await.unwrap();
    assert_eq!(got, Some(leased(&want, OTHER, at(4) + hour())), "a run moved on is claimed as usual");
    let next = queue(s, &fixtures::new_run(solo.id, 2)).await;
    assert_eq!(s.claim(&claim_req(OWNER, hour(), at(5))).await.unwrap(), None, "and holds its project's slot again");
    walk(s, leased(&want, OTHER, at(4) + hour()), OTHER, &[RunState::PolicyCheck], at(6)).await;
    assert_eq!(s.run(next.id).await.unwrap(), next);
}

/// Parking through `finish_step_and_transition` (the engine's usual write)
/// also gives the lease up, in the same write that journals the step.
pub async fn parking_through_finish_step_and_transition(store: Arc<dyn Store>) {
    let s = &*store;
    let solo = seed_limited(s, "solo", 1).await;
    let run = claimed(s, &fixtures::new_run(solo.id, 1), OWNER, at(0)).await;
    let run = walk(s, run, OWNER, &path_to(RunState::RunningAgent), at(1)).await;
    s.begin_step(run.id, OWNER, RunState::RunningAgent, None, at(2)).await.unwrap();
    let t = Transition {
        run_id: run.id,
        from: RunState::RunningAgent,
        to: RunState::AwaitingChoice,
        owner: OWNER.into(),
        at: at(3),
        context: None,
    };
    let moved = s.finish_step_and_transition(&t, Ok(serde_json::json!({ "candidates": 2 }))).await.unwrap();
    let want = Run {
        state: RunState::AwaitingChoice,
        updated_at: at(3),
        lease_owner: None,
        lease_expires_at: None,
        ..run.clone()
    };
    assert_eq!(moved, want);
    assert_eq!(s.run(run.id).await.unwrap(), want);
    assert_eq!(s.steps(run.id).await.unwrap().last().map(|r| r.status), Some(StepStatus::Done));
    let next = queue(s, &fixtures::new_run(solo.id, 2)).await;
    let got = s.claim(&claim_req(OTHER, hour(), at(4))).await.unwrap();
    assert_eq!(got.map(|r| r.id), Some(next.id), "the parked run's slot is free, and it is not claimed");
}

/// Cancelling a parked run sends it to cleanup (nobody works on it to see
/// the flag), with the failure the engine records for a cancellation, and
/// unleased: a worker claims it there.
pub async fn cancelling_a_parked_run_sends_it_to_cleanup(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = parked(s, &fixtures::new_run(project.id, 1), at(0)).await;
    assert!(!s.cancel_requested(run.id).await.unwrap());

    let got = s.request_cancel(run.id, at(5)).await.unwrap();
    let want = Run {
        state: RunState::Cleaning,
        failure: Some(Failure::cancelled(RunState::AwaitingChoice)),
        updated_at: at(5),
        ..run.clone()
    };
    assert_eq!(got, want);
    assert_eq!(s.run(run.id).await.unwrap(), want);
    assert!(s.cancel_requested(run.id).await.unwrap());
    assert_eq!(s.request_cancel(run.id, at(6)).await.unwrap(), want, "in cleanup already: only flagged");

    let claimed = s.claim(&claim_req(OTHER, hour(), at(7))).await.unwrap();
    assert_eq!(claimed, Some(leased(&want, OTHER, at(7) + hour())), "a worker cleans it up");
    walk(s, leased(&want, OTHER, at(7) + hour()), OTHER, &[RunState::Cancelled], at(8)).await;
}

/// Eight claimers race on a project whose limit is 2 and one whose limit is
/// 3: exactly 2 and 3 runs are leased. After one run of each ends, a second
/// race leases exactly one more of each.
pub async fn project_limits_hold_under_concurrent_claimers(store: Arc<dyn Store>) {
    const CLAIMERS: usize = 8;
    let s = &*store;
    let two = seed_limited(s, "widgets", 2).await;
    let three = seed_limited(s, "gadgets", 3).await;
    for i in 1..=10 {
        queue(s, &fixtures::new_run(two.id, i)).await;
        queue(s, &NewRun { priority: -1, ..fixtures::new_run(three.id, i) }).await;
    }
    let race = |round: usize, now: Timestamp| {
        let barrier = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
        let tasks: Vec<_> = (0..CLAIMERS)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    let owner = format!("racer-{round}-{i}");
                    barrier.wait().await;
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        if let Some(run) = store.claim(&claim_req(&owner, hour(), now)).await.unwrap() {
                            got.push(run);
                        }
                    }
                    got
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        }
    };
    let of = |runs: &[Run], p: &Project| runs.iter().filter(|r| r.project_id == p.id).cloned().collect::<Vec<_>>();

    let first = race(1, at(0)).await;
    let ids: BTreeSet<_> = first.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), first.len(), "no run was claimed twice");
    assert_eq!(of(&first, &two).len(), 2, "limit 2 holds under {CLAIMERS} claimers: {first:#?}");
    assert_eq!(of(&first, &three).len(), 3, "limit 3 holds, and the full project did not block this one");

    for run in [&of(&first, &two)[0], &of(&first, &three)[0]] {
        let owner = run.lease_owner.clone().unwrap();
        walk(s, run.clone(), &owner, &[RunState::Failed], at(1)).await;
    }
    let second = race(2, at(2)).await;
    assert_eq!(of(&second, &two).len(), 1, "one slot freed, one run claimed: {second:#?}");
    assert_eq!(of(&second, &three).len(), 1, "one slot freed, one run claimed: {second:#?}");
    let leased_now = s.runs(&RunFilter { active_only: true, ..RunFilter::default() }).await.unwrap();
    let holding = |p: &Project| leased_now.iter().filter(|r| r.project_id == p.id && r.lease_owner.is_some()).count();
    assert_eq!((holding(&two), holding(&three)), (2, 3), "the store agrees");
}

/// A claimed run is not claimable until its lease expires; then another
/// worker takes it over, and the first loses it.
pub async fn leases_expire_and_are_reclaimed(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let lease = Duration::seconds(30);

    let got = s.claim(&claim_req(OWNER, lease, at(100))).await.unwrap();
    assert_eq!(got, Some(leased(&run, OWNER, at(130))));
    let run = walk(s, got.unwrap(), OWNER, &[RunState::SelectingModel], at(101)).await;

    assert_eq!(s.claim(&claim_req(OTHER, lease, at(101))).await.unwrap(), None);
    assert_eq!(s.claim(&claim_req(OTHER, lease, at_millis(129_999))).await.unwrap(), None);

    let taken = s.claim(&claim_req(OTHER, lease, at(130))).await.unwrap();
    let want = leased(&run, OTHER, at(160));
    assert_eq!(taken, Some(want.clone()), "an expired lease is re-claimable, state kept");

    expect_err!(s.heartbeat(run.id, OWNER, lease, at(131)).await, Error::LeaseLost { .. });
    expect_err!(s.release(run.id, OWNER).await, Error::LeaseLost { .. });
    let stale = Transition {
        run_id: run.id,
        from: RunState::SelectingModel,
        to: RunState::Provisioning,
        owner: OWNER.into(),
        at: at(131),
        context: None,
    };
    expect_err!(s.transition(&stale).await, Error::LeaseLost { .. });
    assert_eq!(s.run(run.id).await.unwrap(), want);

    walk(s, want, OTHER, &[RunState::Provisioning], at(132)).await;
}

/// Heartbeats extend a lease; release makes the run claimable.
pub async fn heartbeat_and_release(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let lease = Duration::seconds(30);

    s.claim(&claim_req(OWNER, lease, at(0))).await.unwrap();
    s.heartbeat(run.id, OWNER, lease, at(20)).await.unwrap();
    assert_eq!(s.run(run.id).await.unwrap(), leased(&run, OWNER, at(50)), "heartbeat sets now + lease");
    assert_eq!(s.claim(&claim_req(OTHER, lease, at(40))).await.unwrap(), None, "extended past the first expiry");

    expect_err!(s.heartbeat(run.id, OTHER, lease, at(41)).await, Error::LeaseLost { .. });
    expect_err!(s.release(run.id, OTHER).await, Error::LeaseLost { .. });
    assert_eq!(s.run(run.id).await.unwrap(), leased(&run, OWNER, at(50)));

    s.release(run.id, OWNER).await.unwrap();
    assert_eq!(s.run(run.id).await.unwrap(), run, "release clears the lease");
    s.release(run.id, OWNER).await.unwrap();

    let got = s.claim(&claim_req(OTHER, lease, at(42))).await.unwrap();
    assert_eq!(got, Some(leased(&run, OTHER, at(72))), "a released run is claimable at once");

    expect_err!(s.heartbeat(run.id, OTHER, lease, at(72)).await, Error::LeaseLost { .. });
    assert_eq!(s.run(run.id).await.unwrap(), leased(&run, OTHER, at(72)), "an expired lease is not renewed");
    s.release(run.id, OTHER).await.unwrap();
    assert_eq!(s.run(run.id).await.unwrap(), run, "the holder may release an expired lease");
}

/// Runs in an end state are never claimed, leased or not.
pub async fn ended_runs_are_never_claimed(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    for (i, end) in RunState::ALL.into_iter().filter(|s| s.is_terminal()).enumerate() {
        let new = NewRun { priority: 100, ..fixtures::new_run(project.id, i as u64 + 1) };
        let run = claimed(s, &new, OWNER, at(0)).await;
        let run = walk(s, run, OWNER, &path_to(end), at(1)).await;
        if i % 2 == 0 {
            s.release(run.id, OWNER).await.unwrap();
        }
    }
    let cancelled = queue(s, &NewRun { priority: 100, ..fixtures::new_run(project.id, 99) }).await;
    s.request_cancel(cancelled.id, at(1)).await.unwrap();

    let waiting = queue(s, &fixtures::new_run(project.id, 100)).await;
    let later = at(10) + hour();
    let got = s.claim(&claim_req(OTHER, hour(), later)).await.unwrap();
    assert_eq!(got, Some(leased(&waiting, OTHER, later + hour())), "only the unfinished run is claimable");
    assert_eq!(s.claim(&claim_req(OTHER, hour(), later)).await.unwrap(), None);
}

/// Cancelling an unleased run ends it; a leased run gets a flag its worker
/// acts on; an ended run is left alone.
pub async fn cancellation(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;

    let queued = queue(s, &fixtures::new_run(project.id, 1)).await;
    let cancelled = Run { state: RunState::Cancelled, updated_at: at(5), finished_at: Some(at(5)), ..queued.clone() };
    assert_eq!(s.request_cancel(queued.id, at(5)).await.unwrap(), cancelled, "unleased: cancelled at once");
    assert_eq!(s.run(queued.id).await.unwrap(), cancelled);
    assert!(s.cancel_requested(queued.id).await.unwrap());
    assert_eq!(s.request_cancel(queued.id, at(6)).await.unwrap(), cancelled, "a second request changes nothing");

    let busy = claimed(s, &fixtures::new_run(project.id, 2), OWNER, at(0)).await;
    let busy = walk(s, busy, OWNER, &path_to(RunState::RunningAgent), at(1)).await;
    assert!(!s.cancel_requested(busy.id).await.unwrap());
    assert_eq!(s.request_cancel(busy.id, at(6)).await.unwrap(), busy, "leased: only flagged");
    assert_eq!(s.run(busy.id).await.unwrap(), busy);
    assert!(s.cancel_requested(busy.id).await.unwrap());
    walk(s, busy, OWNER, &[RunState::Cleaning, RunState::Cancelled], at(7)).await;

    let orphan = queue(s, &fixtures::new_run(project.id, 3)).await;
    s.claim(&claim_req(OWNER, Duration::seconds(10), at(0))).await.unwrap();
    let got = s.request_cancel(orphan.id, at(10)).await.unwrap();
    let want = Run { state: RunState::Cancelled, updated_at: at(10), finished_at: Some(at(10)), ..orphan };
    assert_eq!(got, want, "an expired lease does not hold off cancellation");
    assert_eq!(s.run(want.id).await.unwrap(), want);

    let done = claimed(s, &fixtures::new_run(project.id, 4), OWNER, at(20)).await;
    let done = walk(s, done, OWNER, &[RunState::Failed], at(21)).await;
    assert_eq!(s.request_cancel(done.id, at(22)).await.unwrap(), done, "an ended run is left alone");
    assert!(!s.cancel_requested(done.id).await.unwrap());
}

/// Steps are journaled in order; `finish_step` marks the latest started
/// record of its step.
pub async fn step_journal(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let key = "paid/1-fix-the-flaky-test-a1b2c3";
    assert_eq!(s.steps(run.id).await.unwrap(), Vec::<StepRecord>::new());

    let begun = |seq, step, key: Option<&str>, when| StepRecord {
        run_id: run.id,
        seq,
        step,
        idempotency_key: key.map(Into::into),
        status: StepStatus::Started,
        output: serde_json::Value::Null,
        error: None,
        started_at: when,
        finished_at: None,
    };

    let s1 = s.begin_step(run.id, OWNER, RunState::Provisioning, None, at(1)).await.unwrap();
    assert_eq!(s1, begun(1, RunState::Provisioning, None, at(1)));
    let f1 = s.finish_step(run.id, OWNER, RunState::Provisioning, Err("docker is down".into()), at(2)).await.unwrap();
    let f1_want =
        StepRecord { status: StepStatus::Failed, error: Some("docker is down".into()), finished_at: Some(at(2)), ..s1 };
    assert_eq!(f1, f1_want);

    let s2 = s.begin_step(run.id, OWNER, RunState::Provisioning, None, at(3)).await.unwrap();
    assert_eq!(s2, begun(2, RunState::Provisioning, None, at(3)));
    let s3 = s.begin_step(run.id, OWNER, RunState::Pushing, Some(key), at_millis(4_004)).await.unwrap();
    assert_eq!(s3, begun(3, RunState::Pushing, Some(key), at_millis(4_004)));

    let output = serde_json::json!({ "container": "c1", "ports": [1, 2], "nested": { "ok": true } });
    let d2 = s.finish_step(run.id, OWNER, RunState::Provisioning, Ok(output.clone()), at(5)).await.unwrap();
    let d2_want = StepRecord { status: StepStatus::Done, output, finished_at: Some(at(5)), ..s2 };
    assert_eq!(d2, d2_want, "the retry is marked, not the failed attempt");

    // A worker died after journaling `pushing`; its successor journals it again.
    let s4 = s.begin_step(run.id, OWNER, RunState::Pushing, Some(key), at(6)).await.unwrap();
    let d4 = s.finish_step(run.id, OWNER, RunState::Pushing, Ok(serde_json::json!("pushed")), at(7)).await.unwrap();
    let d4_want =
        StepRecord { status: StepStatus::Done, output: serde_json::json!("pushed"), finished_at: Some(at(7)), ..s4 };
    assert_eq!(d4, d4_want);
    assert_eq!(d4.seq, 4);

    assert_eq!(s.steps(run.id).await.unwrap(), vec![f1_want, d2_want, s3, d4_want]);

    let none_started = s.finish_step(run.id, OWNER, RunState::Provisioning, Ok(serde_json::Value::Null), at(8)).await;
    expect_err!(none_started, Error::NotFound { entity: "step", .. });
    let never_begun = s.finish_step(run.id, OWNER, RunState::OpeningPr, Ok(serde_json::Value::Null), at(8)).await;
    expect_err!(never_begun, Error::NotFound { entity: "step", .. });

    let other = claimed(s, &fixtures::new_run(project.id, 2), OTHER, at(0)).await;
    let first = s.begin_step(other.id, OTHER, RunState::SelectingModel, None, at(9)).await.unwrap();
    assert_eq!(first.seq, 1, "seq counts per run");
}

/// `finish_step_and_transition` marks the step and moves the run together;
/// when either part is refused, neither is applied.
pub async fn finish_step_and_transition_is_atomic(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let run = walk(s, run, OWNER, &[RunState::SelectingModel, RunState::Provisioning], at(1)).await;
    let begun = s.begin_step(run.id, OWNER, RunState::Provisioning, Some("paid/1-x"), at(2)).await.unwrap();
    let t = |from, to, owner: &str, when| Transition {
        run_id: run.id,
        from,
        to,
        owner: owner.into(),
        at: when,
        context: None,
    };
    let output = serde_json::json!({ "sandbox": "s1" });

    // Refused by the transition: the run is not in `from`, or the move is illegal.
    for (from, to) in [(RunState::Provisioning, RunState::Succeeded), (RunState::Provisioning, RunState::Queued)] {
        let refused = s.finish_step_and_transition(&t(from, to, OWNER, at(3)), Ok(output.clone())).await;
        expect_err!(refused, Error::IllegalTransition { .. });
    }
    // Refused by the finish: another owner, or no started record of the step.
    let other = t(RunState::Provisioning, RunState::RunningAgent, OTHER, at(3));
    expect_err!(s.finish_step_and_transition(&other, Ok(output.clone())).await, Error::LeaseLost { .. });
    let wrong_step = t(RunState::SelectingModel, RunState::Provisioning, OWNER, at(3));
    expect_err!(
        s.finish_step_and_transition(&wrong_step, Ok(output.clone())).await,
        Error::NotFound { entity: "step", .. }
    );
    assert_eq!(s.run(run.id).await.unwrap(), run, "refused: the run did not move");
    assert_eq!(s.steps(run.id).await.unwrap(), vec![begun.clone()], "refused: the step is still started");

    let moved = s
        .finish_step_and_transition(
            &t(RunState::Provisioning, RunState::RunningAgent, OWNER, at(4)),
            Ok(output.clone()),
        )
        .await
        .unwrap();
    let want = Run { state: RunState::RunningAgent, updated_at: at(4), ..run.clone() };
    assert_eq!(moved, want);
    assert_eq!(s.run(run.id).await.unwrap(), want);
    let done = StepRecord { status: StepStatus::Done, output, finished_at: Some(at(4)), ..begun };
    assert_eq!(s.steps(run.id).await.unwrap(), vec![done.clone()]);

    // A failed step, straight to an end state.
    s.begin_step(run.id, OWNER, RunState::RunningAgent, None, at(5)).await.unwrap();
    let ended = s
        .finish_step_and_transition(
            &t(RunState::RunningAgent, RunState::Failed, OWNER, at(6)),
            Err("agent crashed".into()),
        )
        .await
        .unwrap();
    assert_eq!(ended, Run { state: RunState::Failed, updated_at: at(6), finished_at: Some(at(6)), ..want });
    let steps = s.steps(run.id).await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!((steps[1].status, steps[1].error.as_deref()), (StepStatus::Failed, Some("agent crashed")));
}

/// `resume_or_begin_step` returns the last record when it is the step and
/// done, and otherwise journals the step like `begin_step`.
pub async fn resume_or_begin_step(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let key = Some("paid/1-x");

    let first = s.resume_or_begin_step(run.id, OWNER, RunState::Pushing, key, at(1)).await.unwrap();
    assert_eq!((first.seq, first.status, first.idempotency_key.as_deref()), (1, StepStatus::Started, key));
    let again = s.resume_or_begin_step(run.id, OWNER, RunState::Pushing, key, at(2)).await.unwrap();
    assert_eq!((again.seq, again.status), (2, StepStatus::Started), "a started record is not resumed");
    let done = s.finish_step(run.id, OWNER, RunState::Pushing, Ok(serde_json::json!("pushed")), at(3)).await.unwrap();

    let resumed = s.resume_or_begin_step(run.id, OWNER, RunState::Pushing, key, at(4)).await.unwrap();
    assert_eq!(resumed, done, "the last record is this step, done: resumed");
    assert_eq!(s.steps(run.id).await.unwrap().len(), 2, "resuming writes nothing");
    expect_err!(s.resume_or_begin_step(run.id, OTHER, RunState::OpeningPr, None, at(4)).await, Error::LeaseLost { .. });
    let next = s.resume_or_begin_step(run.id, OWNER, RunState::OpeningPr, None, at(5)).await.unwrap();
    assert_eq!((next.seq, next.step, next.status), (3, RunState::OpeningPr, StepStatus::Started));
    s.finish_step(run.id, OWNER, RunState::OpeningPr, Err("forge down".into()), at(6)).await.unwrap();
    let retried = s.resume_or_begin_step(run.id, OWNER, RunState::OpeningPr, None, at(7)).await.unwrap();
    assert_eq!((retried.seq, retried.status), (4, StepStatus::Started), "a failed record is not resumed");
    let pushing = s.resume_or_begin_step(run.id, OWNER, RunState::Pushing, key, at(8)).await.unwrap();
    assert_eq!((pushing.seq, pushing.status), (5, StepStatus::Started), "only the last record is resumed");
    expect_err!(
        s.resume_or_begin_step(fixtures::run_id(), OWNER, RunState::Pushing, None, at(8)).await,
        Error::NotFound { entity: "run", .. }
    );
}

/// Appends stop at the cap: the part that fits is kept, the marker is stored
/// once, and later appends store nothing.
pub async fn logs_are_bounded(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let cap = 64;
    let errors = "e".repeat(50);

    assert_eq!(
        append(s, &run, LogStream::Stdout, "hello\n", cap, at(1)).await,
        LogAppend { stored: 6, truncated: false }
    );
    assert_eq!(
        append(s, &run, LogStream::Stderr, &errors, cap, at(2)).await,
        LogAppend { stored: 50, truncated: false }
    );
    assert_eq!(
        append(s, &run, LogStream::Stdout, "0123456789", cap, at_millis(3_003)).await,
        LogAppend { stored: 8, truncated: true }
    );
    assert_eq!(append(s, &run, LogStream::Stdout, "more", cap, at(4)).await, LogAppend { stored: 0, truncated: true });
    assert_eq!(
        append(s, &run, LogStream::System, "[exit 1]", cap, at(5)).await,
        LogAppend { stored: 0, truncated: true }
    );

    let logs = s.logs(run.id, 0).await.unwrap();
    assert_eq!(
        logs,
        vec![
            chunk(&run, 1, LogStream::Stdout, "hello\n", at(1)),
            chunk(&run, 2, LogStream::Stderr, &errors, at(2)),
            chunk(&run, 3, LogStream::Stdout, "01234567", at_millis(3_003)),
            chunk(&run, 4, LogStream::System, TRUNCATION_MARKER, at_millis(3_003)),
        ]
    );
    let kept: usize = logs.iter().filter(|c| c.text != TRUNCATION_MARKER).map(|c| c.text.len()).sum();
    assert_eq!(kept, cap);

    let other = queue(s, &fixtures::new_run(project.id, 2)).await;
    assert_eq!(
        append(s, &other, LogStream::Stdout, "fresh", cap, at(6)).await,
        LogAppend { stored: 5, truncated: false }
    );
    assert_eq!(s.logs(other.id, 0).await.unwrap(), vec![chunk(&other, 1, LogStream::Stdout, "fresh", at(6))]);
}

/// The cap's edge cases: an exact fill, a zero cap, a cut inside a
/// multi-byte character.
pub async fn logs_cap_edges(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let mut issue = 0;
    let mut fresh = async || {
        issue += 1;
        queue(s, &fixtures::new_run(project.id, issue)).await
    };

    let exact = fresh().await;
    let full = append(s, &exact, LogStream::Stdout, "0123456789", 10, at(1)).await;
    assert_eq!(full, LogAppend { stored: 10, truncated: false }, "filling the cap exactly is not a cut");
    let over = append(s, &exact, LogStream::Stdout, "x", 10, at(2)).await;
    assert_eq!(over, LogAppend { stored: 0, truncated: true });
    assert_eq!(
        s.logs(exact.id, 0).await.unwrap(),
        vec![
            chunk(&exact, 1, LogStream::Stdout, "0123456789", at(1)),
            chunk(&exact, 2, LogStream::System, TRUNCATION_MARKER, at(2)),
        ]
    );

    let zero = fresh().await;
    assert_eq!(append(s, &zero, LogStream::Stderr, "x", 0, at(1)).await, LogAppend { stored: 0, truncated: true });
    assert_eq!(s.logs(zero.id, 0).await.unwrap(), vec![chunk(&zero, 1, LogStream::System, TRUNCATION_MARKER, at(1))]);

    // "é" is two bytes: a cap of 5 keeps two of three, a cap of 3 keeps one.
    for (cap, kept) in [(5, "éé"), (3, "é")] {
        let run = fresh().await;
        let got = append(s, &run, LogStream::Stdout, "ééé", cap, at(1)).await;
        assert_eq!(got, LogAppend { stored: kept.len(), truncated: true });
        assert_eq!(
            s.logs(run.id, 0).await.unwrap(),
            vec![
                chunk(&run, 1, LogStream::Stdout, kept, at(1)),
                chunk(&run, 2, LogStream::System, TRUNCATION_MARKER, at(1)),
            ]
        );
    }
}

/// `logs(id, after)` returns the chunks after `after`, in order.
pub async fn logs_page_by_seq(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let mut all = Vec::new();
    for i in 1..=5u64 {
        let text = format!("line {i}\n");
        append(s, &run, LogStream::Stdout, &text, 1 << 20, at(i as i64)).await;
        all.push(chunk(&run, i, LogStream::Stdout, &text, at(i as i64)));
    }
    assert_eq!(s.logs(run.id, 0).await.unwrap(), all);
    assert_eq!(s.logs(run.id, 2).await.unwrap(), all[2..].to_vec());
    assert_eq!(s.logs(run.id, 4).await.unwrap(), all[4..].to_vec());
    assert_eq!(s.logs(run.id, 5).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.logs(run.id, 99).await.unwrap(), Vec::<LogChunk>::new());
}

/// `prune_logs` deletes the chunks of runs that ended before the cutoff,
/// counts them, and keeps everything else: active runs' logs, logs of runs
/// that ended at or after the cutoff, and every other record of a pruned run.
pub async fn logs_are_pruned(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let other_project = seed(s, "gadgets").await;
    let cap = 1 << 20;
    assert_eq!(s.prune_logs(at(1_000)).await.unwrap(), 0, "nothing to prune in an empty store");

    // Ended at 10 s with three chunks, and with a journal, usage and an outcome.
    let old = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    s.begin_step(old.id, OWNER, RunState::SelectingModel, None, at(1)).await.unwrap();
    for i in 0..3 {
        append(s, &old, LogStream::Stdout, &format!("old {i}\n"), cap, at(2)).await;
    }
    s.record_usage(&fixtures::usage_record(old.id, at(3))).await.unwrap();
    s.record_outcome(&fixtures::outcome(project.id, old.id, at(10))).await.unwrap();
    let old = walk(s, old, OWNER, &[RunState::Failed], at(10)).await;
    let old_steps = s.steps(old.id).await.unwrap();
    assert_eq!(old_steps.len(), 1);

    // Ended in another project at 15 s, one chunk.
    let elsewhere = claimed(s, &fixtures::new_run(other_project.id, 1), OWNER, at(0)).await;
    append(s, &elsewhere, LogStream::Stderr, "elsewhere\n", cap, at(11)).await;
    walk(s, elsewhere.clone(), OWNER, &[RunState::Failed], at(15)).await;

    // Ended exactly at the cutoff (20 s): kept.
    let at_cutoff = claimed(s, &fixtures::new_run(project.id, 2), OWNER, at(0)).await;
    append(s, &at_cutoff, LogStream::Stdout, "at cutoff\n", cap, at(19)).await;
    walk(s, at_cutoff.clone(), OWNER, &[RunState::Failed], at(20)).await;

    // Active: one leased and running, one queued. Their logs are older than the cutoff.
    let running = claimed(s, &fixtures::new_run(project.id, 3), OWNER, at(0)).await;
    let running = walk(s, running, OWNER, &path_to(RunState::RunningAgent), at(1)).await;
    append(s, &running, LogStream::Stdout, "running\n", cap, at(1)).await;
    let queued = queue(s, &fixtures::new_run(project.id, 4)).await;
    append(s, &queued, LogStream::System, "queued\n", cap, at(1)).await;

    let kept = |run: &Run, text: &str, stream, when| vec![chunk(run, 1, stream, text, when)];
    let running_logs = kept(&running, "running\n", LogStream::Stdout, at(1));
    let queued_logs = kept(&queued, "queued\n", LogStream::System, at(1));
    let cutoff_logs = kept(&at_cutoff, "at cutoff\n", LogStream::Stdout, at(19));

    assert_eq!(s.prune_logs(at(20)).await.unwrap(), 4, "three chunks of one run, one of another");
    assert_eq!(s.logs(old.id, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.logs(elsewhere.id, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.logs(at_cutoff.id, 0).await.unwrap(), cutoff_logs, "ended at the cutoff: kept");
    assert_eq!(s.logs(running.id, 0).await.unwrap(), running_logs, "a running run keeps its logs");
    assert_eq!(s.logs(queued.id, 0).await.unwrap(), queued_logs, "a queued run keeps its logs");

    assert_eq!(s.run(old.id).await.unwrap(), old, "the run itself is kept");
    assert_eq!(s.steps(old.id).await.unwrap(), old_steps, "its journal is kept");
    assert_eq!(s.usage(old.id).await.unwrap(), vec![fixtures::usage_record(old.id, at(3))], "its usage is kept");
    assert_eq!(s.outcomes(project.id).await.unwrap(), vec![fixtures::outcome(project.id, old.id, at(10))]);

    assert_eq!(s.prune_logs(at(20)).await.unwrap(), 0, "pruning again deletes nothing");
    assert_eq!(s.prune_logs(at_millis(20_001)).await.unwrap(), 1, "a later cutoff takes the next run");
    assert_eq!(s.logs(at_cutoff.id, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.logs(running.id, 0).await.unwrap(), running_logs);
    assert_eq!(s.logs(queued.id, 0).await.unwrap(), queued_logs);
}

/// Usage records read back whole, per run, in order.
pub async fn usage_records(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let other = queue(s, &fixtures::new_run(project.id, 2)).await;

    let u1 = fixtures::usage_record(run.id, at(1));
    let u2 = UsageRecord {
        usage: Usage::default(),
        cost_micros: None,
        status: "529".into(),
        ..fixtures::usage_record(run.id, at(1))
    };
    let u3 = UsageRecord {
        provider: "openai".into(),
        model: "gpt".into(),
        usage: Usage { input: 1 << 40, ..Usage::default() },
        ..fixtures::usage_record(run.id, at_millis(2_002))
    };
    let o1 = fixtures::usage_record(other.id, at(0));
    for u in [&u1, &u2, &o1, &u3] {
        s.record_usage(u).await.unwrap();
    }
    assert_eq!(s.usage(run.id).await.unwrap(), vec![u1, u2, u3]);
    assert_eq!(s.usage(other.id).await.unwrap(), vec![o1]);
}

/// Every usage record of every run, read one run at a time with `usage`:
/// the reference the aggregates are checked against.
async fn all_usage(store: &dyn Store) -> Vec<(Run, Vec<UsageRecord>)> {
    let mut all = Vec::new();
    for run in store.runs(&RunFilter::default()).await.unwrap() {
        let usage = store.usage(run.id).await.unwrap();
        all.push((run, usage));
    }
    all
}

/// What `spend(q)` must answer, summed from `all` record by record.
fn spend_of(all: &[(Run, Vec<UsageRecord>)], q: &SpendQuery) -> Vec<Spend> {
    let mut groups: BTreeMap<_, UsageTotals> = BTreeMap::new();
    for (run, records) in all {
        if q.project_id.is_some_and(|p| p != run.project_id) || q.run_id.is_some_and(|r| r != run.id) {
            continue;
        }
        let key = match q.group {
            SpendGroup::Project => (run.project_id, None),
            SpendGroup::Run => (run.project_id, Some(run.id)),
        };
        for r in records.iter().filter(|r| q.since.is_none_or(|since| r.at >= since)) {
            groups.entry(key).or_default().add(r);
        }
    }
    groups.into_iter().map(|((project_id, run_id), totals)| Spend { project_id, run_id, totals }).collect()
}

/// What `daily_costs(q)` must answer, summed from `all` record by record.
fn daily_costs_of(all: &[(Run, Vec<UsageRecord>)], q: &CostQuery) -> Vec<DailyCost> {
    let mut groups: BTreeMap<_, UsageTotals> = BTreeMap::new();
    for (run, records) in all {
        if q.project_id.is_some_and(|p| p != run.project_id) {
            continue;
        }
        for r in records.iter().filter(|r| q.since.is_none_or(|since| r.at >= since)) {
            groups.entry((r.at.date_naive(), run.project_id, r.model.clone())).or_default().add(r);
        }
    }
    groups.into_iter().map(|((day, project_id, model), totals)| DailyCost { day, project_id, model, totals }).collect()
}

/// `spend` and `daily_costs` equal the sums of what `usage` returns, over
/// two projects, several runs, days and models, priced and unpriced
/// records, for every combination of filters; `since` is inclusive.
pub async fn usage_aggregates_equal_the_sums_of_usage(store: Arc<dyn Store>) {
    const DAY: i64 = 86_400;
    let s = &*store;
    let p1 = seed(s, "widgets").await;
    let p2 = seed(s, "gadgets").await;
    let r1 = queue(s, &fixtures::new_run(p1.id, 1)).await;
    let r2 = queue(s, &fixtures::new_run(p1.id, 2)).await;
    let idle = queue(s, &fixtures::new_run(p1.id, 3)).await;
    let r3 = queue(s, &fixtures::new_run(p2.id, 1)).await;

    let priced = |run: &Run, model: &str, cost: i64, at: Timestamp| UsageRecord {
        model: model.into(),
        cost_micros: Some(cost),
        ..fixtures::usage_record(run.id, at)
    };
    let unpriced = |run: &Run, model: &str, at: Timestamp| UsageRecord {
        model: model.into(),
        cost_micros: None,
        usage: Usage { input: 7, cache_read: 0, cache_write: 3, output: 11, reasoning: 5 },
        status: "529".into(),
        ..fixtures::usage_record(run.id, at)
    };
    let records = [
        priced(&r1, "claude-sonnet", 12_345, at(0)),
        unpriced(&r1, "claude-sonnet", at(10)),
        // The last millisecond of day 1, then the first of day 2.
        priced(&r1, "gpt", 7, at_millis(DAY * 1_000 - 1)),
        priced(&r2, "gpt", 1_000, at(DAY)),
        // Bytewise, "Zeta" sorts before "claude-sonnet".
        unpriced(&r2, "Zeta", at(DAY + 60)),
        priced(&r2, "claude-sonnet", 0, at(2 * DAY + 5)),
        priced(&r3, "claude-sonnet", 12_345, at(0)),
        unpriced(&r3, "gpt", at(DAY + 1)),
    ];
    for r in &records {
        s.record_usage(r).await.unwrap();
    }
    let all = all_usage(s).await;
    assert_eq!(all.iter().map(|(_, u)| u.len()).sum::<usize>(), records.len(), "usage reads every record back");

    // The reference itself, by hand, so that it cannot be vacuous.
    let fixture_usage = fixtures::usage_record(r1.id, at(0)).usage;
    let p2_total = UsageTotals {
        records: 2,
        unpriced_records: 1,
        cost_micros: 12_345,
        usage: Usage {
            input: fixture_usage.input + 7,
            cache_read: fixture_usage.cache_read,
            cache_write: fixture_usage.cache_write + 3,
            output: fixture_usage.output + 11,
            reasoning: fixture_usage.reasoning + 5,
        },
    };
    let per_p2 = SpendQuery::per_project().project(p2.id);
    assert_eq!(spend_of(&all, &per_p2), vec![Spend { project_id: p2.id, run_id: None, totals: p2_total }]);
    assert_eq!(s.spend(&per_p2).await.unwrap(), vec![Spend { project_id: p2.id, run_id: None, totals: p2_total }]);

    let day2 = at(DAY);
    let gone_project = fixtures::project_id();
    let gone_run = fixtures::run_id();
    let sinces = [None, Some(at(5)), Some(at_millis(DAY * 1_000 - 1)), Some(day2), Some(at(3 * DAY))];
    let projects = [None, Some(p1.id), Some(p2.id), Some(gone_project)];
    let runs = [None, Some(r1.id), Some(r3.id), Some(idle.id), Some(gone_run)];
    for group in [SpendGroup::Project, SpendGroup::Run] {
        for since in sinces {
            for project in projects {
                for run in runs {
                    let q = SpendQuery { group, since, project_id: project, run_id: run };
                    assert_eq!(s.spend(&q).await.unwrap(), spend_of(&all, &q), "spend({q:?})");
                }
            }
        }
    }
    for since in sinces {
        for project in projects {
            let q = CostQuery { since, project_id: project };
            assert_eq!(s.daily_costs(&q).await.unwrap(), daily_costs_of(&all, &q), "daily_costs({q:?})");
        }
    }

    // Negative controls: what a filter leaves out is really gone.
    let per_run = s.spend(&SpendQuery::per_run()).await.unwrap();
    let runs_seen: Vec<_> = per_run.iter().map(|g| g.run_id).collect();
    assert_eq!(runs_seen.len(), 3, "one row per run with usage: {runs_seen:?}");
    assert!(!runs_seen.contains(&Some(idle.id)), "a run without usage has no row");
    let since_day2 = s.spend(&SpendQuery::per_run().since(day2)).await.unwrap();
    assert!(since_day2.iter().all(|g| g.run_id != Some(r1.id)), "r1 spent nothing from day 2: {since_day2:?}");
    let p1_since_day2 = s.spend(&SpendQuery::per_project().project(p1.id).since(day2)).await.unwrap();
    assert_eq!(p1_since_day2.len(), 1);
    assert_eq!(
        (
            p1_since_day2[0].totals.records,
            p1_since_day2[0].totals.unpriced_records,
            p1_since_day2[0].totals.cost_micros
        ),
        (3, 1, 1_000),
        "since is inclusive and excludes the millisecond before"
    );
    assert_eq!(s.spend(&SpendQuery::per_project().project(p2.id).run(r1.id)).await.unwrap(), vec![], "filters combine");

    let days = s.daily_costs(&CostQuery::all()).await.unwrap();
    let of = |project: crate::ProjectId, model: &str| -> Vec<(String, u64)> {
        let rows = days.iter().filter(|d| d.project_id == project && d.model == model);
        rows.map(|d| (d.day.to_string(), d.totals.records)).collect()
    };
    assert_eq!(
        of(p1.id, "gpt"),
        vec![("2024-01-01".to_string(), 1), ("2024-01-02".to_string(), 1)],
        "a UTC day ends at its last millisecond"
    );
    let p1_day2: Vec<&str> =
        days.iter().filter(|d| d.project_id == p1.id && d.day.to_string() == "2024-01-02").map(|d| &*d.model).collect();
    assert_eq!(p1_day2, vec!["Zeta", "gpt"], "models in bytewise order");
    assert_eq!(days.len(), 7, "{days:#?}");
}

/// Aggregates over no record are empty, not rows of zeros.
pub async fn usage_aggregates_of_nothing_are_empty(store: Arc<dyn Store>) {
    let s = &*store;
    for group in [SpendGroup::Project, SpendGroup::Run] {
        let q = SpendQuery { group, ..SpendQuery::default() };
        assert_eq!(s.spend(&q).await.unwrap(), Vec::<Spend>::new(), "an empty store");
    }
    assert_eq!(s.daily_costs(&CostQuery::all()).await.unwrap(), Vec::<DailyCost>::new(), "an empty store");

    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    assert_eq!(s.spend(&SpendQuery::per_run()).await.unwrap(), vec![], "runs without usage");
    assert_eq!(s.spend(&SpendQuery::per_project().project(project.id)).await.unwrap(), vec![]);
    assert_eq!(s.daily_costs(&CostQuery::all().project(project.id)).await.unwrap(), vec![]);

    s.record_usage(&fixtures::usage_record(run.id, at(10))).await.unwrap();
    assert_eq!(s.spend(&SpendQuery::per_run().since(at(11))).await.unwrap(), vec![], "everything is older");
    assert_eq!(s.daily_costs(&CostQuery::all().since(at(11))).await.unwrap(), vec![], "everything is older");
    assert_eq!(s.spend(&SpendQuery::per_run().since(at(10))).await.unwrap().len(), 1, "the positive control");
}

/// Sums beyond their type saturate instead of wrapping or failing.
pub async fn usage_aggregates_saturate(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let big = u64::try_from(i64::MAX).unwrap();
    let huge = UsageRecord {
        usage: Usage { input: big, cache_read: big, cache_write: 0, output: 1, reasoning: 0 },
        cost_micros: Some(i64::MAX),
        ..fixtures::usage_record(run.id, at(1))
    };
    for i in 0..3 {
        // Two records: the token sums still fit a u64; the third overflows it.
        let record =
            UsageRecord { usage: Usage { cache_read: if i < 2 { big } else { 0 }, ..huge.usage }, ..huge.clone() };
        s.record_usage(&record).await.unwrap();
    }
    let want = UsageTotals {
        records: 3,
        unpriced_records: 0,
        cost_micros: i64::MAX,
        usage: Usage { input: u64::MAX, cache_read: 2 * big, cache_write: 0, output: 3, reasoning: 0 },
    };
    assert_eq!(UsageTotals::of(&s.usage(run.id).await.unwrap()), want, "the reference saturates");
    let spend = s.spend(&SpendQuery::per_run()).await.unwrap();
    assert_eq!(spend, vec![Spend { project_id: project.id, run_id: Some(run.id), totals: want }]);
    let days = s.daily_costs(&CostQuery::all()).await.unwrap();
    assert_eq!(days.iter().map(|d| d.totals).collect::<Vec<_>>(), vec![want]);
}

/// A run has at most one model decision; recording replaces it.
pub async fn model_decisions(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let other = queue(s, &fixtures::new_run(project.id, 2)).await;
    assert_eq!(s.decision(run.id).await.unwrap(), None);

    let first = fixtures::decision(run.id);
    s.record_decision(&first).await.unwrap();
    assert_eq!(s.decision(run.id).await.unwrap(), Some(first));

    let second = ModelDecision {
        model: "tiny".into(),
        selector: "fixed".into(),
        candidates: Vec::new(),
        budget_micros: None,
        complexity: None,
        at: at(9),
        ..fixtures::decision(run.id)
    };
    s.record_decision(&second).await.unwrap();
    assert_eq!(s.decision(run.id).await.unwrap(), Some(second));
    assert_eq!(s.decision(other.id).await.unwrap(), None);
}

/// Outcomes read back whole, per project, newest first; one per run.
pub async fn outcomes(store: Arc<dyn Store>) {
    let s = &*store;
    let p1 = seed(s, "widgets").await;
    let p2 = seed(s, "gadgets").await;
    let a = queue(s, &fixtures::new_run(p1.id, 1)).await;
    let b = queue(s, &fixtures::new_run(p1.id, 2)).await;
    let c = queue(s, &fixtures::new_run(p2.id, 1)).await;
    assert_eq!(s.outcomes(p1.id).await.unwrap(), Vec::<Outcome>::new());

    let oa = fixtures::outcome(p1.id, a.id, at(10));
    let ob = Outcome {
        pr_merged: None,
        ci_passed: None,
        lint_clean: None,
        tests_passing: None,
        human_vote: Some(-1),
        iterations: 0,
        cost_micros: None,
        quality_score: None,
        ..fixtures::outcome(p1.id, b.id, at_millis(20_020))
    };
    let oc = fixtures::outcome(p2.id, c.id, at(15));
    for o in [&oa, &ob, &oc] {
        s.record_outcome(o).await.unwrap();
    }
    assert_eq!(s.outcomes(p1.id).await.unwrap(), vec![ob.clone(), oa.clone()]);
    assert_eq!(s.outcomes(p2.id).await.unwrap(), vec![oc]);

    let oa2 = Outcome { pr_merged: Some(false), quality_score: Some(0.1), recorded_at: at(30), ..oa };
    s.record_outcome(&oa2).await.unwrap();
    assert_eq!(s.outcomes(p1.id).await.unwrap(), vec![oa2, ob], "recording again replaces");
}

/// Audit events read back whole, oldest first, all or per project.
pub async fn audit_events(store: Arc<dyn Store>) {
    let s = &*store;
    let p1 = seed(s, "widgets").await;
    let p2 = seed(s, "gadgets").await;
    assert_eq!(s.audit_events(None).await.unwrap(), Vec::<AuditEvent>::new());

    let e1 = fixtures::audit_event(Some(p1.id), "issue.untrusted", "issue#3", at(1));
    let e2 = fixtures::audit_event(None, "engine.started", "engine", at(2));
    let e3 = fixtures::audit_event(Some(p2.id), "policy.refused", "run", at(2));
    let e4 = fixtures::audit_event(Some(p1.id), "run.cancelled", "issue#4", at_millis(4_004));
    for e in [&e1, &e2, &e3, &e4] {
        s.audit(e).await.unwrap();
    }
    assert_eq!(s.audit_events(None).await.unwrap(), vec![e1.clone(), e2, e3.clone(), e4.clone()]);
    assert_eq!(s.audit_events(Some(p1.id)).await.unwrap(), vec![e1, e4]);
    assert_eq!(s.audit_events(Some(p2.id)).await.unwrap(), vec![e3]);
    assert_eq!(s.audit_events(Some(fixtures::project_id())).await.unwrap(), Vec::<AuditEvent>::new());
}

/// Every call naming a missing entity fails with `NotFound`; lists of a
/// missing parent are empty.
pub async fn missing_entities(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let gone_project = fixtures::project_id();
    let gone = fixtures::run_id();
    let null = || Ok(serde_json::Value::Null);

    expect_err!(s.project(gone_project).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.delete_project(gone_project).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.put_issue(&fixtures::issue(gone_project, 1)).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.issue(project.id, 404).await, Error::NotFound { entity: "issue", .. });
    expect_err!(s.create_run(&fixtures::new_run(gone_project, 1)).await, Error::NotFound { entity: "project", .. });

    expect_err!(s.run(gone).await, Error::NotFound { entity: "run", .. });
    let t = Transition {
        run_id: gone,
        from: RunState::Queued,
        to: RunState::SelectingModel,
        owner: OWNER.into(),
        at: at(1),
        context: None,
    };
    expect_err!(s.transition(&t).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.patch_run(gone, OWNER, &RunPatch::default(), at(1)).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.request_cancel(gone, at(1)).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.cancel_requested(gone).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.heartbeat(gone, OWNER, hour(), at(1)).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.release(gone, OWNER).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.begin_step(gone, OWNER, RunState::Queued, None, at(1)).await, Error::NotFound { entity: "run", .. });
    expect_err!(
        s.finish_step(gone, OWNER, RunState::Queued, null(), at(1)).await,
        Error::NotFound { entity: "run", .. }
    );
    let log = AppendLog { run_id: gone, stream: LogStream::Stdout, text: "x", cap_bytes: 10, at: at(1) };
    expect_err!(s.append_log(&log).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.record_usage(&fixtures::usage_record(gone, at(1))).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.record_decision(&fixtures::decision(gone)).await, Error::NotFound { entity: "run", .. });
    let outcome = fixtures::outcome(project.id, gone, at(1));
    expect_err!(s.record_outcome(&outcome).await, Error::NotFound { entity: "run", .. });

    assert_eq!(s.issues(gone_project).await.unwrap(), Vec::<TrackedIssue>::new());
    assert_eq!(s.outcomes(gone_project).await.unwrap(), Vec::<Outcome>::new());
    assert_eq!(s.steps(gone).await.unwrap(), Vec::<StepRecord>::new());
    assert_eq!(s.logs(gone, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.usage(gone).await.unwrap(), Vec::<UsageRecord>::new());
    assert_eq!(s.decision(gone).await.unwrap(), None);
}

/// Two handles on one database (`a` and `b`, e.g. two connections to one
/// file) write at once from two tasks; nothing is lost, counted twice, or
/// claimed twice. Needs a tokio runtime; a multi-threaded one makes the race
/// real.
pub async fn concurrent_writers(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const N: u64 = 200;
    let project = seed_roomy(&*a, "widgets").await;
    let log_run = queue(&*a, &NewRun { priority: -1, ..fixtures::new_run(project.id, 0) }).await;
    let capped_run = queue(&*b, &NewRun { priority: -1, ..fixtures::new_run(project.id, 1) }).await;
    assert_eq!(b.run(log_run.id).await.unwrap(), log_run, "both handles see one database");

    let writer = |store: Arc<dyn Store>, name: &'static str, first_issue: u64| {
        let (log_run, capped_run) = (log_run.id, capped_run.id);
        let project = project.id;
        tokio::spawn(async move {
            for i in 0..N {
                let text = format!("{name}{i:03}\n");
                let log = AppendLog {
                    run_id: log_run,
                    stream: LogStream::Stdout,
                    text: &text,
                    cap_bytes: 1 << 20,
                    at: at(1),
                };
                assert_eq!(store.append_log(&log).await.unwrap(), LogAppend { stored: 5, truncated: false });
                let capped = AppendLog { run_id: capped_run, cap_bytes: 500, ..log };
                store.append_log(&capped).await.unwrap();
                if i % 4 == 0 {
                    store.create_run(&fixtures::new_run(project, first_issue + i)).await.unwrap();
                }
            }
        })
    };
    let (ra, rb) = tokio::join!(writer(a.clone(), "a", 1_000), writer(b.clone(), "b", 2_000));
    ra.unwrap();
    rb.unwrap();

    let logs = a.logs(log_run.id, 0).await.unwrap();
    assert_eq!(logs.iter().map(|c| c.seq).collect::<Vec<_>>(), (1..=2 * N).collect::<Vec<_>>(), "seq has no gaps");
    for name in ["a", "b"] {
        let mine: Vec<String> = logs.iter().filter(|c| c.text.starts_with(name)).map(|c| c.text.clone()).collect();
        let want: Vec<String> = (0..N).map(|i| format!("{name}{i:03}\n")).collect();
        assert_eq!(mine, want, "every append of {name}, in its order");
    }

    let capped = b.logs(capped_run.id, 0).await.unwrap();
    let kept: usize = capped.iter().filter(|c| c.text != TRUNCATION_MARKER).map(|c| c.text.len()).sum();
    assert_eq!(kept, 500, "the cap holds under concurrent appends");
    assert_eq!(capped.iter().filter(|c| c.text == TRUNCATION_MARKER).count(), 1, "one marker");
    assert_eq!(capped.last().map(|c| c.text.as_str()), Some(TRUNCATION_MARKER));

    let all = a.runs(&RunFilter { project_id: Some(project.id), ..RunFilter::default() }).await.unwrap();
    assert_eq!(all.len() as u64, 2 + 2 * N / 4);

    // Both handles claim until nothing is left: each run exactly once.
    let claimer = |store: Arc<dyn Store>, owner: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(run) = store.claim(&claim_req(owner, hour(), at(10))).await.unwrap() {
                assert_eq!(run.lease_owner.as_deref(), Some(owner));
                got.push(run.id);
            }
            got
        })
    };
    let (ca, cb) = tokio::join!(claimer(a.clone(), OWNER), claimer(b.clone(), OTHER));
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let claimed: BTreeSet<_> = ca.iter().chain(&cb).copied().collect();
    assert_eq!(claimed.len(), ca.len() + cb.len(), "no run was claimed twice");
    assert_eq!(claimed, all.iter().map(|r| r.id).collect::<BTreeSet<_>>(), "every run was claimed");
}
