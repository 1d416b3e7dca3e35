//! `Engine::sweep`: what no active run owns is removed, what an active run
//! owns (a comparison's candidates included) stays, young things stay, and
//! an unreadable store removes nothing.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use paid_core::engine::{CompareSpec, SelectionRule, SweepOptions};
use paid_core::testing::faults::{FaultPoint, FlakyStore};
use paid_core::testing::{fixtures, sandbox as suite};
use paid_core::{
    Clock, ManualClock, RunId, RunState, SandboxHandle, SandboxRuntime, SandboxSpec, SequentialIds, SystemClock,
    Workspaces, WorktreeRequest,
};
use pretty_assertions::assert_eq;
use support::{Behavior, World};

/// Removes whatever is old enough to be an orphan at all.
fn eager() -> SweepOptions {
    SweepOptions {
        worktree_min_age: Duration::ZERO,
        sandbox_min_age: Duration::ZERO,
        unknown_sandbox_min_age: Duration::ZERO,
    }
}

/// A worktree and a sandbox for `run`, as a step would have made them.
async fn leftovers(w: &World, run: RunId) -> (PathBuf, SandboxHandle) {
    let worktree = w
        .workspaces
        .create_worktree(&WorktreeRequest { project: &w.project, run_id: run, branch: "paid/9-leftover" })
        .await
        .unwrap();
    let spec = SandboxSpec {
        run_id: run,
        project_id: w.project.id,
        image: w.project.image.clone(),
        worktree: worktree.path.clone(),
        mount_at: SandboxSpec::DEFAULT_MOUNT.into(),
        env: Default::default(),
        limits: Default::default(),
    };
    (worktree.path, w.runtime.create(&spec).await.unwrap())
}

/// A run of issue `issue` that was cancelled before it started: ended.
async fn ended_run(w: &World, issue: u64) -> RunId {
    let run = w.store.create_run(&fixtures::new_run(w.project.id, issue)).await.unwrap();
    let cancelled = w.store.request_cancel(run.id, SystemClock.now()).await.unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);
    run.id
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[tokio::test]
async fn a_sweep_removes_the_worktrees_and_sandboxes_of_ended_and_unknown_runs() {
    let w = World::new(&[]).await;
    let engine = w.builder("w1").build().unwrap();
    let ended = ended_run(&w, 1).await;
    let (ended_tree, ended_box) = leftovers(&w, ended).await;
    let (unknown_tree, unknown_box) = leftovers(&w, RunId(uuid::Uuid::now_v7())).await;

    let report = engine.sweep(&eager()).await.unwrap();
    assert_eq!(sorted(report.worktrees.clone()), sorted(vec![ended_tree, unknown_tree]));
    assert_eq!(sorted(report.runtime.sandboxes.clone()), sorted(vec![ended_box.id, unknown_box.id]));
    assert_eq!((report.active_runs, report.notes.clone()), (0, Vec::<String>::new()));
    assert!(w.worktrees_left().is_empty(), "{:?}", w.worktrees_left());
    assert_eq!(w.runtime.live(), 0);

    let again = engine.sweep(&eager()).await.unwrap();
    assert!(again.is_empty(), "nothing left to remove: {again:?}");
}

#[tokio::test]
async fn a_sweep_keeps_every_worktree_and_sandbox_of_active_runs_comparison_candidates_included() {
    let w =
        World::new(&[("lean", Behavior::new(&["a.txt"], true, 300)), ("big", Behavior::new(&["b.txt"], true, 900))])
            .await;
    // Sequential ids: the parked run's id, and so its candidates' worktree
    // ids, are known in advance and written out below by hand.
    let engine = w.builder("w1").ids(Arc::new(SequentialIds::default())).build().unwrap();
    // A comparison parked until a human picks: its candidates' worktrees stay.
    let spec = CompareSpec::models(["lean", "big"]).rule(SelectionRule::Human);
    let parked = engine.enqueue_compare(w.project.id, 1, spec).await.unwrap();
    assert_eq!(parked.id.to_string(), "01900000-0000-7000-8000-000000000001");
    assert_eq!(engine.run_until_idle().await.unwrap()[0].state, RunState::AwaitingChoice);
    // Candidate worktrees carry the run's id with version 8 and the index
    // plus one in byte 7.
    let worktrees = w.dir.path().join("worktrees");
    let candidates = sorted(vec![
        worktrees.join("01900000-0000-8001-8000-000000000001"),
        worktrees.join("01900000-0000-8002-8000-000000000001"),
    ]);
    assert_eq!(sorted(w.worktrees_left()), candidates, "the candidates' worktrees, and nothing else");
    let (_, parked_box) = leftovers(&w, parked.id).await;
    let parked_tree = w.dir.path().join("worktrees").join(parked.id.to_string());
    // A queued run whose worktree is being made.
    let queued = w.store.create_run(&fixtures::new_run(w.project.id, 2)).await.unwrap();
    let (queued_tree, queued_box) = leftovers(&w, queued.id).await;
    // The positive control: an ended run's leftovers in the same sweep.
    let (ended_tree, ended_box) = leftovers(&w, ended_run(&w, 3).await).await;

    let report = engine.sweep(&eager()).await.unwrap();
    assert_eq!(report.worktrees, vec![ended_tree]);
    assert_eq!(report.runtime.sandboxes, vec![ended_box.id]);
    assert_eq!(report.active_runs, 2);
    let mut kept = candidates.clone();
    kept.extend([parked_tree, queued_tree]);
    assert_eq!(sorted(w.worktrees_left()), sorted(kept), "the run's, its candidates' and the queued run's stay");
    assert_eq!(w.runtime.live_runs(), sorted(vec![parked.id, queued.id]));
    assert!(w.runtime.is_running(&parked_box).await.unwrap() && w.runtime.is_running(&queued_box).await.unwrap());

    // Once the parked run ends, its candidates' worktrees are orphans too.
    engine.cancel(parked.id).await.unwrap();
    let _ = w.store.request_cancel(queued.id, SystemClock.now()).await.unwrap();
    engine.run_until_idle().await.unwrap();
    engine.sweep(&eager()).await.unwrap();
    assert!(w.worktrees_left().is_empty(), "{:?}", w.worktrees_left());
    assert_eq!(w.runtime.live(), 0);
}

#[tokio::test]
async fn young_leftovers_stay_and_unknown_runs_get_longer() {
    let w = World::new(&[]).await;
    let engine = w.builder("w1").build().unwrap();
    let (ended_tree, ended_box) = leftovers(&w, ended_run(&w, 1).await).await;
    let (unknown_tree, unknown_box) = leftovers(&w, RunId(uuid::Uuid::now_v7())).await;

    let report = engine.sweep(&SweepOptions::default()).await.unwrap();
    assert!(report.is_empty(), "everything is younger than the defaults: {report:?}");
    assert_eq!(w.runtime.live(), 2);

    // No grace for ended runs: only the unknown run's sandbox stays.
    let opts = SweepOptions { sandbox_min_age: Duration::ZERO, ..SweepOptions::default() };
    let report = engine.sweep(&opts).await.unwrap();
    assert_eq!(report.runtime.sandboxes, vec![ended_box.id]);
    assert!(report.worktrees.is_empty(), "worktrees are a day from being orphans");

    // Forty minutes later (by the engine's clock), the unknown run's too.
    let later = Arc::new(ManualClock::new(SystemClock.now() + chrono::Duration::minutes(40)));
    let engine = w.builder("w1").clock(later).build().unwrap();
    let report = engine.sweep(&SweepOptions::default()).await.unwrap();
    assert_eq!(report.runtime.sandboxes, vec![unknown_box.id]);
    assert_eq!(sorted(w.worktrees_left()), sorted(vec![ended_tree, unknown_tree]));
}

#[tokio::test]
async fn when_the_store_cannot_be_read_a_sweep_removes_nothing() {
    let w = World::new(&[]).await;
    let flaky = Arc::new(FlakyStore::new(w.store.clone()));
    let engine = w.builder("w1").store(flaky.clone()).build().unwrap();
    let (tree, _) = leftovers(&w, RunId(uuid::Uuid::now_v7())).await;
    flaky.fail("runs", FaultPoint::Before, 1);
    assert!(engine.sweep(&eager()).await.is_err());
    assert_eq!(w.worktrees_left(), vec![tree]);
    assert_eq!(w.runtime.live(), 1);
}

#[tokio::test]
async fn the_default_reap_passes_the_sandbox_suite() {
    let w = World::new(&[]).await;
    suite::reap_removes_sandboxes_of_runs_not_kept(&*w.runtime, "any", w.dir.path()).await;
}
