//! Comparison runs: one issue on several candidates in parallel, the best
//! (or a human's pick) becomes the PR, the others are never pushed, every
//! candidate is an experiment sample.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use paid_core::engine::{CompareSpec, Criterion, Ranking, SelectionRule};
use paid_core::learning::driver::Learning;
use paid_core::learning::experiment::{Allocation, Arm, Experiment, ExperimentStatus, Metric, PromotionRule, Variant};
use paid_core::learning::prompts::{CreatedBy, Prompt, PromptVersion};
use paid_core::learning::strategy::ThompsonStrategy;
use paid_core::learning::{ExperimentId, PromptVersionId};
use paid_core::ports::learning::LearningStore;
use paid_core::testing::learning::MemoryLearningStore;
use paid_core::{Clock, Error, RandomIds, RunState, SystemClock};
use support::{Behavior, World};

/// Fails verify; cheapest; smallest.
fn weak() -> (&'static str, Behavior) {
    ("weak", Behavior::new(&["a.txt"], false, 100))
}
/// Passes; expensive; three files.
fn big() -> (&'static str, Behavior) {
    ("big", Behavior::new(&["a.txt", "b.txt", "c.txt"], true, 900))
}
/// Passes; cheaper than `big`.
fn lean() -> (&'static str, Behavior) {
    ("lean", Behavior::new(&["a.txt"], true, 300))
}
/// The agent gives up.
fn broken() -> (&'static str, Behavior) {
    ("broken", Behavior { fails: true, ..Behavior::new(&[], false, 50) })
}

#[tokio::test]
async fn the_passing_cheapest_candidate_becomes_the_pr_and_the_others_are_never_pushed() {
    let w = World::new(&[weak(), big(), lean()]).await;
    let engine = w.builder("w1").build().unwrap();
    let run = engine.enqueue_compare(w.project.id, 1, CompareSpec::models(["weak", "big", "lean"])).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done.len(), 1);
    let ended = &done[0];
    assert_eq!(ended.state, RunState::Succeeded, "{:?}", ended.failure);
    assert_eq!(ended.model.as_deref(), Some("lean"));
    let branch = ended.branch.clone().unwrap();
    assert!(branch.ends_with("-c3"), "{branch}");
    assert_eq!(w.pushed().await, vec![branch.clone()], "only the winner is pushed");

    // Every candidate ran; the failing one got its verify digest back.
    let calls = w.agent.calls();
    let count = |m: &str| calls.iter().filter(|c| c.model == m).count();
    assert_eq!((count("weak"), count("big"), count("lean")), (2, 1, 1));
    assert!(calls.iter().any(|c| c.model == "weak" && c.iteration == 2 && c.prompt.contains("FAIL: no PASS file")));

    let reports = engine.candidates(run.id).await.unwrap();
    let summary: Vec<_> =
        reports.iter().map(|r| (r.name.as_str(), r.verify_passed, r.cost_micros, r.files_changed)).collect();
    assert_eq!(
        summary,
        vec![("c1-weak", false, Some(200), 1), ("c2-big", true, Some(900), 4), ("c3-lean", true, Some(300), 2)]
    );

    // The PR is the winner's, with the side-by-side table.
    let prs = w.forge.prs.lock().unwrap().clone();
    assert_eq!(prs.len(), 1);
    assert_eq!(prs[0].head, branch);
    let body = &prs[0].body;
    assert!(body.starts_with("lean made a change."), "{body}");
    assert!(body.contains("| **winner** | c3-lean | `lean` | passed | 1 | $0.0003 |"), "{body}");
    assert!(body.contains("| c1-weak | `weak` | failed | 2 | $0.0002 |"), "{body}");
    let comment = &w.forge.comments.lock().unwrap()[0].body;
    assert!(comment.contains("c2-big"), "{comment}");

    // Nothing is left behind.
    assert_eq!(w.runtime.live(), 0, "sandboxes left");
    assert!(w.worktrees_left().is_empty(), "{:?}", w.worktrees_left());
    assert_eq!(w.runtime.created.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_ranking_is_configurable() {
    // Passes; cheaper than `lean`, but two files.
    let wide = ("wide", Behavior::new(&["a.txt", "b.txt"], true, 150));
    let w = World::new(&[weak(), wide, lean()]).await;
    let engine = w.builder("w1").build().unwrap();
    let models = ["wide", "lean", "weak"];
    // The default ranking: verify passed, then cost.
    engine.enqueue_compare(w.project.id, 1, CompareSpec::models(models)).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].model.as_deref(), Some("wide"), "{:?}", done[0].failure);

    // Fewest files first: `weak` wrote the fewest but failed verify, and
    // with verify commands only a passing candidate may open the PR,
    // whatever the criteria; of the passing ones `lean` wrote fewer.
    let spec =
        CompareSpec::models(models).rule(SelectionRule::Best(Ranking { criteria: vec![Criterion::FilesChanged] }));
    engine.enqueue_compare(w.project.id, 2, spec).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);
    assert_eq!(done[0].model.as_deref(), Some("lean"));
}

#[tokio::test]
async fn a_failed_candidate_never_wins_and_nothing_passing_fails_the_run() {
    let w = World::new(&[broken(), weak(), lean()]).await;
    let engine = w.builder("w1").build().unwrap();
    let run = engine.enqueue_compare(w.project.id, 1, CompareSpec::models(["broken", "lean"])).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);
    assert_eq!(done[0].model.as_deref(), Some("lean"));
    let reports = engine.candidates(run.id).await.unwrap();
    assert!(reports[0].error.as_deref().unwrap().contains("gave up"), "{reports:?}");

    // Finished, but nothing passed verify: no PR, like a single run.
    engine.enqueue_compare(w.project.id, 2, CompareSpec::models(["broken", "weak"])).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Failed);
    let failure = done[0].failure.clone().unwrap();
    assert_eq!(failure.code, "verify_failed", "{failure:?}");
    assert!(failure.message.contains("c2-weak"), "{failure:?}");

    // Nothing finished at all.
    engine.enqueue_compare(w.project.id, 3, CompareSpec::models(["broken", "broken"])).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Failed);
    assert!(done[0].failure.as_ref().unwrap().message.contains("no candidate finished"), "{:?}", done[0].failure);

    assert_eq!(w.pushed().await.len(), 1, "only the first run pushed");
    assert!(w.worktrees_left().is_empty());
    assert_eq!(w.runtime.live(), 0);
    assert!(matches!(
        engine.enqueue_compare(w.project.id, 4, CompareSpec::models(["alone"])).await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn a_human_picks_the_winner_of_a_parked_run() {
    let w = World::new(&[weak(), big(), lean(), broken()]).await;
    let engine = w.builder("w1").build().unwrap();
    let spec = CompareSpec::models(["lean", "big", "broken"]).rule(SelectionRule::Human);
    let run = engine.enqueue_compare(w.project.id, 1, spec).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, RunState::AwaitingChoice);

    // Parked: it holds no lease and nobody can claim it, so no worker
    // spins on it and it holds no slot of its project.
    let parked = w.store.run(run.id).await.unwrap();
    assert_eq!((parked.lease_owner.as_deref(), parked.lease_expires_at), (None, None), "parking leaves no lease");
    let other = w.builder("w2").build().unwrap();
    assert!(other.claim_next().await.unwrap().is_none());
    assert!(engine.run_until_idle().await.unwrap().is_empty());
    assert!(w.pushed().await.is_empty());
    assert_eq!(w.runtime.live(), 0, "a parked run holds no sandbox");
    assert_eq!(engine.candidates(run.id).await.unwrap().len(), 3);

    // Bad picks are refused and change nothing.
    assert!(matches!(other.pick(run.id, "nope").await, Err(Error::InvalidInput { .. })));
    let err = other.pick(run.id, "c3-broken").await.unwrap_err();
    assert!(err.to_string().contains("did not finish"), "{err}");
    assert_eq!(w.store.run(run.id).await.unwrap(), parked);

    // Another process (the API) picks by model: the run moves on, unleased,
    // and any worker goes on.
    let picked = other.pick(run.id, "big").await.unwrap();
    assert_eq!((picked.state, picked.lease_owner.as_deref()), (RunState::Committing, None));
    let second = engine.pick(run.id, "lean").await.unwrap_err();
    assert!(second.to_string().contains("already picked"), "the first pick wins: {second}");
    let done = other.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);
    assert_eq!(done[0].model.as_deref(), Some("big"));
    let branch = done[0].branch.clone().unwrap();
    assert!(branch.ends_with("-c2"));
    assert_eq!(w.pushed().await, vec![branch]);
    assert!(w.worktrees_left().is_empty());
    assert!(matches!(other.pick(run.id, "lean").await, Err(Error::InvalidInput { .. })), "only while awaiting");
}

#[tokio::test]
async fn a_parked_run_can_be_cancelled() {
    let w = World::new(&[big(), lean()]).await;
    let engine = w.builder("w1").build().unwrap();
    let spec = CompareSpec::models(["lean", "big"]).rule(SelectionRule::Human);
    let run = engine.enqueue_compare(w.project.id, 1, spec).await.unwrap();
    assert_eq!(engine.run_until_idle().await.unwrap()[0].state, RunState::AwaitingChoice);
    assert_eq!(w.worktrees_left().len(), 2);

    let other = w.builder("w2").build().unwrap();
    let cancelled = other.cancel(run.id).await.unwrap();
    assert_eq!(cancelled.state, RunState::Cleaning, "the workers clean it up");
    assert_eq!(cancelled.lease_owner, None);
    let done = other.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Cancelled);
    assert!(w.pushed().await.is_empty());
    assert!(w.worktrees_left().is_empty(), "{:?}", w.worktrees_left());
    assert_eq!(w.runtime.live(), 0);
}

/// Parking gives the lease up in the same write: the parked run holds no
/// slot of its project (another run is claimed while it waits), and once
/// picked it needs one again like any run.
#[tokio::test]
async fn a_parked_run_holds_no_lease_and_no_project_slot() {
    let w = World::new(&[big(), lean()]).await;
    w.store.put_project(&paid_core::Project { max_concurrent_runs: 1, ..w.project.clone() }).await.unwrap();
    let engine = w.builder("w1").build().unwrap();
    let spec = CompareSpec::models(["lean", "big"]).rule(SelectionRule::Human);
    let run = engine.enqueue_compare(w.project.id, 1, spec).await.unwrap();
    assert_eq!(engine.run_once().await.unwrap().unwrap().state, RunState::AwaitingChoice);
    let parked = w.store.run(run.id).await.unwrap();
    assert_eq!((parked.lease_owner, parked.lease_expires_at), (None, None), "parked with no lease at all");

    // The project's only slot is free: another run of it is claimed.
    let other = w.builder("w2").build().unwrap();
    let next = other.enqueue(w.project.id, 2).await.unwrap();
    let claimed = other.claim_next().await.unwrap().expect("the queued run takes the free slot");
    assert_eq!(claimed.id, next.id);
    assert!(other.claim_next().await.unwrap().is_none(), "the parked run is never claimed");

    // Picked, it moves on unleased and waits for the slot like any run.
    let picked = other.pick(run.id, "lean").await.unwrap();
    assert_eq!((picked.state, picked.lease_owner), (RunState::Committing, None));
    assert!(engine.claim_next().await.unwrap().is_none(), "the slot is taken by the other run");
    w.store.release(next.id, "w2").await.unwrap();
    let done = engine.drive(engine.claim_next().await.unwrap().expect("the picked run is claimable").id).await;
    let done = done.unwrap();
    assert_eq!((done.id, done.state), (run.id, RunState::Succeeded), "{:?}", done.failure);
    assert_eq!(done.model.as_deref(), Some("lean"));
    assert_eq!(w.pushed().await, vec![done.branch.unwrap()]);
}

/// The pick lives in the run's context, written in the same store write
/// that moves the run on: an audit event (written for people) picks
/// nothing, the first pick wins and a later one is refused.
#[tokio::test]
async fn the_pick_is_part_of_the_run_not_of_the_audit_log() {
    let w = World::new(&[big(), lean()]).await;
    let engine = w.builder("w1").build().unwrap();
    let spec = CompareSpec::models(["lean", "big"]).rule(SelectionRule::Human);
    let run = engine.enqueue_compare(w.project.id, 1, spec).await.unwrap();
    assert_eq!(engine.run_until_idle().await.unwrap()[0].state, RunState::AwaitingChoice);
    w.store
        .audit(&paid_core::AuditEvent {
            at: SystemClock.now(),
            project_id: Some(w.project.id),
            actor: "api".into(),
            action: "run.pick".into(),
            subject: format!("run:{}", run.id),
            details: serde_json::json!({ "run_id": run.id, "candidate": "c2-big" }),
        })
        .await
        .unwrap();
    assert!(engine.run_until_idle().await.unwrap().is_empty(), "still parked");
    assert_eq!(w.store.run(run.id).await.unwrap().context.pick, None);

    let picked = engine.pick(run.id, "lean").await.unwrap();
    assert_eq!(picked.state, RunState::Committing);
    assert_eq!(picked.context.pick.as_deref(), Some("c1-lean"));
    let err = engine.pick(run.id, "big").await.unwrap_err();
    assert!(err.to_string().contains("already picked"), "{err}");
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);
    assert_eq!(done[0].model.as_deref(), Some("lean"));
    assert_eq!(engine.candidates(run.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn every_candidate_is_an_experiment_sample_of_its_arm() {
    let w = World::new(&[weak(), big(), lean()]).await;
    let ls = Arc::new(MemoryLearningStore::default());
    let v1 = PromptVersion::root(
        PromptVersionId(uuid::Uuid::now_v7()),
        "task",
        "Fix {{ issue.title }}",
        ["issue.title"],
        CreatedBy::user("octocat"),
        SystemClock.now(),
    )
    .unwrap();
    let mut prompt = Prompt {
        slug: "task".into(),
        description: String::new(),
        active_version: None,
        last_evolved_at: None,
        created_at: SystemClock.now(),
    };
    ls.put_prompt(&prompt).await.unwrap();
    ls.create_version(&v1).await.unwrap();
    prompt.active_version = Some(v1.id);
    ls.put_prompt(&prompt).await.unwrap();
    let arm = |name: &str| Arm {
        name: name.into(),
        variant: Variant::Model { provider: "scripted".into(), model: name.into() },
    };
    let exp = Experiment {
        id: ExperimentId(uuid::Uuid::now_v7()),
        subject: "model".into(),
        project_id: Some(w.project.id),
        control: arm("weak"),
        variants: vec![arm("big"), arm("lean")],
        allocation: Allocation::Fixed { weights: vec![1.0, 1.0, 1.0] },
        metric: Metric::Score,
        success_threshold: 0.5,
        rule: PromotionRule::default(),
        max_samples: 0,
        require_approval: false,
        status: ExperimentStatus::Running,
        created_at: SystemClock.now(),
        concluded_at: None,
    };
    ls.put_experiment(&exp).await.unwrap();
    let learning = Learning::new(ls.clone(), Arc::new(ThompsonStrategy), Arc::new(SystemClock), Arc::new(RandomIds));
    let engine = w.builder("w1").learning(learning).build().unwrap();
    let spec = CompareSpec { experiment: Some(exp.id), ..CompareSpec::models(["weak", "big", "lean"]) };
    let run = engine.enqueue_compare(w.project.id, 1, spec).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);

    let samples = ls.samples(exp.id).await.unwrap();
    let mut arms: Vec<&str> = samples.iter().map(|s| s.arm.as_str()).collect();
    arms.sort();
    assert_eq!(arms, ["big", "lean", "weak"]);
    let ids: std::collections::BTreeSet<_> = samples.iter().map(|s| s.run_id).collect();
    assert_eq!(ids.len(), 3, "one fresh id per candidate");
    assert!(!ids.contains(&run.id));
    let score = |arm: &str| samples.iter().find(|s| s.arm == arm).unwrap().score;
    assert!(score("lean") > score("weak"), "{samples:?}");

    // The run itself is scored under its prompt version, once.
    assert_eq!(engine.prompt_version(run.id).await.unwrap(), Some(v1.id));
    let scores = ls.run_scores(v1.id).await.unwrap();
    assert_eq!(scores.iter().filter(|s| s.run_id == run.id).count(), 1);
}

#[tokio::test]
async fn a_comparison_resumed_after_the_fan_out_does_not_run_candidates_again() {
    let w = World::new(&[weak(), lean()]).await;
    let first = w.builder("worker-a").build().unwrap();
    let run = first.enqueue_compare(w.project.id, 1, CompareSpec::models(["weak", "lean"])).await.unwrap();
    first.claim_next().await.unwrap().unwrap();
    let mut state = RunState::Queued;
    while state != RunState::Pushing {
        state = first.advance(run.id).await.unwrap().state;
    }
    // Worker A dies before pushing.
    w.store.release(run.id, "worker-a").await.unwrap();
    let calls = w.agent.calls().len();
    assert_eq!(calls, 3);

    let second = w.builder("worker-b").build().unwrap();
    let done = second.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);
    assert_eq!(done[0].model.as_deref(), Some("lean"));
    assert_eq!(w.agent.calls().len(), calls, "no candidate ran again");
    assert_eq!(w.pushed().await, vec![done[0].branch.clone().unwrap()]);
    assert!(w.worktrees_left().is_empty());
    assert_eq!(w.runtime.live(), 0);
}

#[tokio::test]
async fn a_worker_lost_during_the_fan_out_is_replaced_without_leaks() {
    let slow =
        ("slow", Behavior { delay: Some(std::time::Duration::from_secs(30)), ..Behavior::new(&["s.txt"], true, 10) });
    let w = World::new(&[lean(), slow]).await;
    let first = w.builder("worker-a").build().unwrap();
    let run = first.enqueue_compare(w.project.id, 1, CompareSpec::models(["lean", "slow"])).await.unwrap();
    first.claim_next().await.unwrap().unwrap();
    // Worker A vanishes while `slow` is still working.
    let lost = tokio::time::timeout(std::time::Duration::from_millis(300), first.drive(run.id)).await;
    assert!(lost.is_err(), "the drive should still be running");
    assert_eq!(w.store.run(run.id).await.unwrap().state, RunState::RunningAgent);
    w.store.release(run.id, "worker-a").await.unwrap();

    // Worker B reruns the fan-out on the same worktrees; `slow` is now fast.
    assert!(!w.agent.calls().is_empty());
    let w2_agent = {
        let mut behaviors = w.agent.behaviors.clone();
        behaviors.insert("slow".into(), Behavior::new(&["s.txt"], true, 10));
        Arc::new(support::ScriptedAgent { behaviors, calls: Default::default() })
    };
    let second = w.builder("worker-b").agent(w2_agent.clone()).build().unwrap();
    let done = second.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);
    assert_eq!(w2_agent.calls().len(), 2, "both candidates ran again");
    assert_eq!(done[0].model.as_deref(), Some("slow"), "cheaper and passing");
    assert_eq!(w.pushed().await.len(), 1);
    assert!(w.worktrees_left().is_empty(), "{:?}", w.worktrees_left());
    assert_eq!(w.runtime.live(), 0, "sandboxes left");
    // `lean` had finished and removed its sandbox, so it got a new one;
    // `slow` reused its slot's.
    assert_eq!(w.runtime.created.load(std::sync::atomic::Ordering::SeqCst), 3);
}
