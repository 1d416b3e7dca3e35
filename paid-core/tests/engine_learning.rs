//! The engine with a learning loop: runs render the prompt version learning
//! picks, journal it, keep it when resumed, and report their outcome; a
//! broken learning store never fails a run.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use paid_core::learning::driver::Learning;
use paid_core::learning::evolution::RunScore;
use paid_core::learning::experiment::{
    self, Allocation, Arm, ArmSample, Assignment, Experiment, ExperimentStatus, Metric, PromotionRule, Variant,
};
use paid_core::learning::prompts::{CreatedBy, Prompt, PromptVersion};
use paid_core::learning::strategy::ThompsonStrategy;
use paid_core::learning::{ExperimentId, PromptVersionId};
use paid_core::ports::learning::{ExperimentFilter, LearningStore};
use paid_core::testing::learning::MemoryLearningStore;
use paid_core::{Clock, Error, RandomIds, Result, RunState, SystemClock};
use support::World;

fn version(template: &str) -> PromptVersion {
    let mut v = PromptVersion::root(
        PromptVersionId(uuid::Uuid::now_v7()),
        "task",
        template,
        ["issue.title"],
        CreatedBy::user("octocat"),
        SystemClock.now(),
    )
    .unwrap();
    // Distinct numbers, as a prompt's versions have.
    v.version = u32::from(template.as_bytes()[0]);
    v
}

/// A learning store with a `task` prompt whose active version is `active`.
async fn learning_store(versions: &[&PromptVersion], active: &PromptVersion) -> Arc<MemoryLearningStore> {
    let store = Arc::new(MemoryLearningStore::default());
    seed(&*store, versions, active).await;
    store
}

async fn seed(store: &dyn LearningStore, versions: &[&PromptVersion], active: &PromptVersion) {
    let mut prompt = Prompt {
        slug: "task".into(),
        description: "the task prompt".into(),
        active_version: None,
        last_evolved_at: None,
        created_at: SystemClock.now(),
    };
    store.put_prompt(&prompt).await.unwrap();
    for v in versions {
        store.create_version(v).await.unwrap();
    }
    prompt.active_version = Some(active.id);
    store.put_prompt(&prompt).await.unwrap();
}

fn learning(store: Arc<dyn LearningStore>) -> Learning {
    Learning::new(store, Arc::new(ThompsonStrategy), Arc::new(SystemClock), Arc::new(RandomIds))
}

#[tokio::test]
async fn a_run_renders_and_records_its_prompt_version() {
    let w = World::new(&[]).await;
    let v1 = version("A: {{ issue.title }}");
    let ls = learning_store(&[&v1], &v1).await;
    let engine = w
        .builder("w1")
        .learning(learning(ls.clone()))
        .style_guide("Keep it short.")
        .project_style_guide(w.project.id, "Use tabs.")
        .build()
        .unwrap();
    let run = engine.enqueue(w.project.id, 1).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);

    let calls = w.agent.calls();
    assert_eq!(calls.len(), 1);
    let prompt = &calls[0].prompt;
    assert!(prompt.starts_with("A: Instant issue #1"), "{prompt}");
    assert!(prompt.contains("## Style guide\n\nKeep it short.") && prompt.contains("Use tabs."), "{prompt}");

    assert_eq!(engine.prompt_version(run.id).await.unwrap(), Some(v1.id));
    let provision = w.store.steps(run.id).await.unwrap().into_iter().find(|s| s.step == RunState::Provisioning);
    assert_eq!(provision.unwrap().output["prompt"]["version"], serde_json::json!(v1.id.to_string()));
    let scores = ls.run_scores(v1.id).await.unwrap();
    assert_eq!(scores.iter().map(|s| s.run_id).collect::<Vec<_>>(), vec![run.id]);
    let first = scores[0].score;
    assert!(first > 0.0);

    // The PR is merged with green CI and a 👍: follow-up rescores the run.
    *w.forge.feedback.lock().unwrap() = Some(paid_core::PrFeedback {
        state: paid_core::PrState::Merged,
        head_sha: "abc".into(),
        failing_checks: Vec::new(),
        review_comments: Vec::new(),
        votes: paid_core::Votes { up: 1, down: 0 },
    });
    let report = engine.follow_up(w.project.id).await.unwrap();
    assert_eq!(report.outcomes, vec![run.id]);
    let scores = ls.run_scores(v1.id).await.unwrap();
    assert_eq!(scores.len(), 1, "replaced, not added");
    assert!(scores[0].score > first, "{} after merge vs {first} before", scores[0].score);
}

#[tokio::test]
async fn experiment_arms_are_sticky_per_issue_and_samples_land_on_their_arm() {
    let w = World::new(&[]).await;
    let (a, b) = (version("A: {{ issue.title }}"), version("B: {{ issue.title }}"));
    let ls = learning_store(&[&a, &b], &a).await;
    let exp = Experiment {
        id: ExperimentId(uuid::Uuid::from_u128(0x5eed)),
        subject: "task".into(),
        project_id: None,
        control: Arm { name: "control".into(), variant: Variant::Prompt { version: a.id } },
        variants: vec![Arm { name: "b".into(), variant: Variant::Prompt { version: b.id } }],
        allocation: Allocation::Fixed { weights: vec![1.0, 1.0] },
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
    let engine = w.builder("w1").learning(learning(ls.clone())).build().unwrap();

    let mut arms = Vec::new();
    for number in 1..=6 {
        let run = engine.enqueue(w.project.id, number).await.unwrap();
        let done = engine.run_until_idle().await.unwrap();
        assert_eq!(done[0].state, RunState::Succeeded);
        let assignment =
            ls.assignment(exp.id, &experiment::issue_key(w.project.id, number)).await.unwrap().expect("assigned");
        let expected = if assignment.arm == "control" { &a } else { &b };
        assert_eq!(engine.prompt_version(run.id).await.unwrap(), Some(expected.id), "issue #{number}");
        let prompt = w.agent.calls().last().unwrap().prompt.clone();
        assert!(prompt.starts_with(&expected.template[..2]), "issue #{number} got {prompt}");
        let samples = ls.samples(exp.id).await.unwrap();
        let sample = samples.iter().find(|s| s.run_id == run.id).expect("a sample for the run");
        assert_eq!(sample.arm, assignment.arm);
        arms.push(assignment.arm);
    }
    assert!(arms.contains(&"control".to_string()) && arms.contains(&"b".to_string()), "{arms:?}");

    // A second run on issue #1 keeps its arm.
    let again = engine.enqueue(w.project.id, 1).await.unwrap();
    engine.run_until_idle().await.unwrap();
    let first_arm_version = if arms[0] == "control" { a.id } else { b.id };
    assert_eq!(engine.prompt_version(again.id).await.unwrap(), Some(first_arm_version));
    assert_eq!(ls.samples(exp.id).await.unwrap().len(), 7);
}

#[tokio::test]
async fn a_resumed_run_keeps_the_version_it_picked() {
    let w = World::new(&[]).await;
    let (v1, v2) = (version("A: {{ issue.title }}"), version("B: {{ issue.title }}"));
    let ls = learning_store(&[&v1, &v2], &v1).await;
    let first = w.builder("worker-a").learning(learning(ls.clone())).build().unwrap();
    let run = first.enqueue(w.project.id, 1).await.unwrap();
    let claimed = first.claim_next().await.unwrap().unwrap();
    let mut state = claimed.state;
    while state != RunState::RunningAgent {
        state = first.advance(run.id).await.unwrap().state;
    }
    // Worker A dies after provisioning; meanwhile v2 becomes active.
    w.store.release(run.id, "worker-a").await.unwrap();
    let mut prompt = ls.prompt("task").await.unwrap();
    prompt.active_version = Some(v2.id);
    ls.put_prompt(&prompt).await.unwrap();

    let second = w.builder("worker-b").learning(learning(ls.clone())).build().unwrap();
    let done = second.run_until_idle().await.unwrap();
    assert_eq!(done[0].id, run.id);
    assert_eq!(done[0].state, RunState::Succeeded);
    assert!(w.agent.calls()[0].prompt.starts_with("A: "), "{:?}", w.agent.calls());
    assert_eq!(second.prompt_version(run.id).await.unwrap(), Some(v1.id));
    assert_eq!(ls.run_scores(v1.id).await.unwrap().len(), 1);

    // A new run does get v2.
    let fresh = second.enqueue(w.project.id, 2).await.unwrap();
    second.run_until_idle().await.unwrap();
    assert_eq!(second.prompt_version(fresh.id).await.unwrap(), Some(v2.id));
    assert!(w.agent.calls()[1].prompt.starts_with("B: "));
}

/// A learning store that fails every call while `broken` is set.
struct Flaky {
    inner: MemoryLearningStore,
    broken: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            Err(Error::Unavailable { backend: "learning", message: "down for the test".into(), source: None })
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl LearningStore for Flaky {
    async fn put_prompt(&self, prompt: &Prompt) -> Result<()> {
        self.check()?;
        self.inner.put_prompt(prompt).await
    }
    async fn prompt(&self, slug: &str) -> Result<Prompt> {
        self.check()?;
        self.inner.prompt(slug).await
    }
    async fn prompts(&self) -> Result<Vec<Prompt>> {
        self.check()?;
        self.inner.prompts().await
    }
    async fn create_version(&self, version: &PromptVersion) -> Result<()> {
        self.check()?;
        self.inner.create_version(version).await
    }
    async fn version(&self, id: PromptVersionId) -> Result<PromptVersion> {
        self.check()?;
        self.inner.version(id).await
    }
    async fn versions(&self, slug: &str) -> Result<Vec<PromptVersion>> {
        self.check()?;
        self.inner.versions(slug).await
    }
    async fn put_experiment(&self, experiment: &Experiment) -> Result<()> {
        self.check()?;
        self.inner.put_experiment(experiment).await
    }
    async fn experiment(&self, id: ExperimentId) -> Result<Experiment> {
        self.check()?;
        self.inner.experiment(id).await
    }
    async fn experiments(&self, filter: &ExperimentFilter) -> Result<Vec<Experiment>> {
        self.check()?;
        self.inner.experiments(filter).await
    }
    async fn assign(&self, assignment: &Assignment) -> Result<Assignment> {
        self.check()?;
        self.inner.assign(assignment).await
    }
    async fn assignment(&self, experiment: ExperimentId, issue_key: &str) -> Result<Option<Assignment>> {
        self.check()?;
        self.inner.assignment(experiment, issue_key).await
    }
    async fn record_sample(&self, sample: &ArmSample) -> Result<()> {
        self.check()?;
        self.inner.record_sample(sample).await
    }
    async fn samples(&self, experiment: ExperimentId) -> Result<Vec<ArmSample>> {
        self.check()?;
        self.inner.samples(experiment).await
    }
    async fn record_run_score(&self, score: &RunScore) -> Result<()> {
        self.check()?;
        self.inner.record_run_score(score).await
    }
    async fn run_scores(&self, version: PromptVersionId) -> Result<Vec<RunScore>> {
        self.check()?;
        self.inner.run_scores(version).await
    }
}

#[tokio::test]
async fn a_failing_learning_store_never_fails_a_run() {
    let w = World::new(&[]).await;
    let v1 = version("A: {{ issue.title }}");
    let flaky = Arc::new(Flaky { inner: MemoryLearningStore::default(), broken: AtomicBool::new(false) });
    seed(&*flaky, &[&v1], &v1).await;
    let engine = w.builder("w1").learning(learning(flaky.clone())).build().unwrap();

    // Down from the start: the built-in template, no recorded version.
    flaky.broken.store(true, Ordering::SeqCst);
    let run = engine.enqueue(w.project.id, 1).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);
    assert!(w.agent.calls()[0].prompt.contains("Resolve issue #1"), "{}", w.agent.calls()[0].prompt);
    assert_eq!(engine.prompt_version(run.id).await.unwrap(), None);

    // Up while provisioning, down when the outcome is scored.
    flaky.broken.store(false, Ordering::SeqCst);
    let run = engine.enqueue(w.project.id, 2).await.unwrap();
    engine.claim_next().await.unwrap().unwrap();
    let mut state = RunState::Queued;
    while state != RunState::RunningAgent {
        state = engine.advance(run.id).await.unwrap().state;
    }
    flaky.broken.store(true, Ordering::SeqCst);
    let ended = engine.drive(run.id).await.unwrap();
    assert_eq!(ended.state, RunState::Succeeded, "{:?}", ended.failure);
    assert!(w.agent.calls()[1].prompt.starts_with("A: "));
    assert_eq!(engine.prompt_version(run.id).await.unwrap(), Some(v1.id));
    assert!(flaky.inner.run_scores(v1.id).await.unwrap().is_empty(), "nothing was scored");
    assert_eq!(w.store.outcomes(w.project.id).await.unwrap().len(), 2, "the store still has both outcomes");
}
