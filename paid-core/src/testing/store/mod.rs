//! The conformance suite of the [`Store`] port.
//!
//! A backend is done when every function here passes against it. Each test
//! takes a fresh, empty store; [`run_all`] runs them all with a factory, and
//! [`concurrent_writers`] takes two handles on one database. Failures name the
//! test and the broken expectation.
//!
//! The tests are split by concern, one file per sub-trait of the port
//! (`catalog`, `runs` and `leases` for [`crate::Runs`], `journal`, `logs`,
//! `ledger`, `audit`), plus `errors` (missing entities, across all of them)
//! and `concurrency` ([`concurrent_writers`]). Every test is re-exported
//! here: callers name `store::projects_crud`, never the file.
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
//! - **Author pins**: `pin_author(project, login, id)` returns the id
//!   first pinned for the login (compared case-insensitively, stored
//!   lowercase) in that project; `author_pins` lists them by login. Of
//!   concurrent first pins, from any handle, exactly one wins. Pins go with
//!   their project.
//! - **Deliveries**: `record_delivery(key, at, forget_before)` is `true`
//!   for a key not recorded at or after `forget_before`, and records it at
//!   `at`; otherwise `false`, writing nothing. The call drops every other
//!   key recorded before `forget_before`. Concurrent calls with one key,
//!   from any handle: exactly one `true`.
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
    authors_are_pinned_once,
    deliveries_are_recorded_once,
    poll_leases_have_one_holder,
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
                patch: Default::default(),
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

// The tests, by concern. They see the helpers above through `use super::*`;
// `expect_err!` is defined above them, so it is in scope in each.
mod audit;
mod catalog;
mod concurrency;
mod errors;
mod journal;
mod leases;
mod ledger;
mod logs;
mod runs;

pub use audit::*;
pub use catalog::*;
pub use concurrency::*;
pub use errors::*;
pub use journal::*;
pub use leases::*;
pub use ledger::*;
pub use logs::*;
pub use runs::*;
