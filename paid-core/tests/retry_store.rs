//! [`RetryStore`]: the store suite through the layer, retries on a paused
//! clock, giving up with an error that is no longer retryable, and writes
//! that committed before their answer was lost counted as done.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paid_core::store::prelude::*;
use std::sync::Arc;
use std::time::Duration;

use paid_core::layers::RetryStore;
use paid_core::testing::faults::{FaultPoint, FlakyStore};
use paid_core::testing::fixtures::{self, at};
use paid_core::testing::store as suite;
use paid_core::{ClaimRequest, Error, Project, Run, RunState, StepStatus, Store, Transition};
use paid_store_sqlite::SqliteStore;
use pretty_assertions::assert_eq;
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(10);

/// A SQLite store behind a fault injector behind the retry layer.
async fn layered() -> (Arc<FlakyStore>, RetryStore, Project) {
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let flaky = Arc::new(FlakyStore::new(sqlite));
    let store = RetryStore::new(flaky.clone(), PATIENCE);
    let project = fixtures::project("flaky");
    store.put_project(&project).await.unwrap();
    (flaky, store, project)
}

/// A run claimed by `w` and moved to `selecting_model`, its step begun.
async fn claimed(store: &RetryStore, project: &Project) -> Run {
    let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    let req = ClaimRequest { owner: "w".into(), lease: chrono::Duration::hours(1), now: at(0) };
    assert_eq!(store.claim(&req).await.unwrap().map(|r| r.id), Some(run.id));
    store.transition(&to_selecting(&run)).await.unwrap();
    store.begin_step(run.id, "w", RunState::SelectingModel, None, at(2)).await.unwrap();
    run
}

fn to_selecting(run: &Run) -> Transition {
    Transition {
        run_id: run.id,
        from: RunState::Queued,
        to: RunState::SelectingModel,
        owner: "w".into(),
        at: at(1),
        patch: Default::default(),
    }
}

fn to_provisioning(run: &Run) -> Transition {
    Transition {
        run_id: run.id,
        from: RunState::SelectingModel,
        to: RunState::Provisioning,
        owner: "w".into(),
        at: at(3),
        patch: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_layer_passes_the_store_suite() {
    suite::run_all(|| async {
        let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        Arc::new(RetryStore::new(sqlite, PATIENCE)) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_retryable_error_is_retried_until_the_call_succeeds() {
    let (flaky, store, project) = layered().await;
    flaky.fail("project", FaultPoint::Before, 3);
    let started = Instant::now();
    assert_eq!(store.project(project.id).await.unwrap(), project);
    assert_eq!(flaky.calls("project"), 4, "three failures, then the answer");
    assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn after_its_patience_the_layer_gives_up_with_an_error_that_is_not_retryable() {
    let (flaky, store, project) = layered().await;
    flaky.fail("project", FaultPoint::Before, usize::MAX);
    let started = Instant::now();
    let err = store.project(project.id).await.unwrap_err();
    let waited = started.elapsed();
    assert!(!err.is_retryable(), "{err:?}");
    let Error::RetriesExhausted { attempts, source } = &err else { panic!("{err:?}") };
    assert!(matches!(**source, Error::Unavailable { .. }), "{source:?}");
    assert_eq!(*attempts as usize, flaky.calls("project"));
    assert!(*attempts > 5, "backoff from 50 ms up to 2 s fits several attempts in 10 s: {attempts}");
    assert_eq!(err.code(), "unavailable", "the code says what went wrong");
    assert!(waited >= PATIENCE && waited < PATIENCE + Duration::from_secs(1), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn an_error_that_is_not_retryable_comes_through_at_once() {
    let (flaky, store, project) = layered().await;
    flaky.fail_with("project", FaultPoint::Before, 1, || Error::permanent("flaky", "disk image is malformed"));
    let err = store.project(project.id).await.unwrap_err();
    assert!(matches!(err, Error::Backend { retryable: false, .. }), "{err:?}");
    assert_eq!(flaky.calls("project"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_transition_that_committed_before_its_answer_was_lost_is_done() {
    let (flaky, store, project) = layered().await;
    let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    let req = ClaimRequest { owner: "w".into(), lease: chrono::Duration::hours(1), now: at(0) };
    store.claim(&req).await.unwrap();
    flaky.fail("transition", FaultPoint::After, 1);
    let moved = store.transition(&to_selecting(&run)).await.unwrap();
    assert_eq!(moved.state, RunState::SelectingModel);
    assert_eq!(flaky.calls("transition"), 2, "the retry was refused, and recognized");
}

#[tokio::test(start_paused = true)]
async fn a_refused_transition_that_never_happened_stays_refused() {
    let (flaky, store, project) = layered().await;
    let run = claimed(&store, &project).await;
    // The run is in selecting_model; this transition claims it is queued.
    let stale = Transition { to: RunState::Cleaning, at: at(3), ..to_selecting(&run) };
    flaky.fail("transition", FaultPoint::Before, 1);
    let err = store.transition(&stale).await.unwrap_err();
    assert!(matches!(err, Error::IllegalTransition { .. }), "{err:?}");
    assert_eq!(store.run(run.id).await.unwrap().state, RunState::SelectingModel);
}

#[tokio::test(start_paused = true)]
async fn a_finished_step_whose_answer_was_lost_is_done() {
    let (flaky, store, project) = layered().await;
    let run = claimed(&store, &project).await;
    flaky.fail("finish_step", FaultPoint::After, 1);
    let record = store
        .finish_step(run.id, "w", RunState::SelectingModel, Ok(serde_json::json!({ "model": "m" })), at(3))
        .await
        .unwrap();
    assert_eq!(record.status, StepStatus::Done);
    assert_eq!(record.output, serde_json::json!({ "model": "m" }));
    assert_eq!(flaky.calls("finish_step"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_finish_and_transition_whose_answer_was_lost_is_done() {
    let (flaky, store, project) = layered().await;
    let run = claimed(&store, &project).await;
    flaky.fail("finish_step_and_transition", FaultPoint::After, 1);
    let moved = store.finish_step_and_transition(&to_provisioning(&run), Ok(serde_json::json!(1))).await.unwrap();
    assert_eq!(moved.state, RunState::Provisioning);
    let steps = store.steps(run.id).await.unwrap();
    assert_eq!(
        steps.iter().map(|s| (s.step, s.status)).collect::<Vec<_>>(),
        [(RunState::SelectingModel, StepStatus::Done)]
    );
    assert_eq!(flaky.calls("finish_step_and_transition"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_created_run_whose_answer_was_lost_is_read_back() {
    let (flaky, store, project) = layered().await;
    let new = fixtures::new_run(project.id, 1);
    flaky.fail("create_run", FaultPoint::After, 1);
    let run = store.create_run(&new).await.unwrap();
    assert_eq!((run.id, run.state), (new.id, RunState::Queued));
    assert_eq!(store.runs(&Default::default()).await.unwrap().len(), 1, "created once");
    assert_eq!(flaky.calls("create_run"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_claim_whose_answer_was_lost_is_picked_up() {
    let (flaky, store, project) = layered().await;
    let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    flaky.fail("claim", FaultPoint::After, 1);
    let req = ClaimRequest { owner: "w".into(), lease: chrono::Duration::hours(1), now: at(0) };
    let claimed = store.claim(&req).await.unwrap();
    assert_eq!(claimed.map(|r| r.id), Some(run.id), "the lease granted before the error is ours");
    assert_eq!(flaky.calls("claim"), 2);

    // Another worker's lost answer is not ours to pick up.
    let other = store.create_run(&fixtures::new_run(project.id, 2)).await.unwrap();
    flaky.fail("claim", FaultPoint::After, 1);
    let req = ClaimRequest { owner: "v".into(), ..req };
    assert_eq!(store.claim(&req).await.unwrap().map(|r| r.id), Some(other.id));
    let req = ClaimRequest { owner: "u".into(), ..req };
    assert_eq!(store.claim(&req).await.unwrap(), None, "nothing runnable, nothing leased to u");
}
