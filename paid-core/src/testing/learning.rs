//! The conformance suite of the [`LearningStore`] port, an in-memory
//! implementation, and a scripted [`LlmProvider`] for learning tests.
//!
//! ```
//! use std::sync::Arc;
//!
//! use paid_core::testing::learning::{self, MemoryLearningStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! learning::run_all(|| async { Arc::new(MemoryLearningStore::default()) as _ }).await;
//! # }
//! ```
//!
//! The contract is the one documented on [`LearningStore`]; each test below
//! pins a part of it and takes a fresh, empty store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: panicking with the unexpected value is how it reports"
)]

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use pretty_assertions::assert_eq;
use uuid::Uuid;

use super::fixtures::at;
use crate::learning::evolution::{RunFeedback, RunScore};
use crate::learning::experiment::{
    Allocation, Arm, ArmSample, Assignment, Experiment, ExperimentStatus, Metric, PromotionRule, Variant,
};
use crate::learning::prompts::{CreatedBy, Prompt, PromptVersion};
use crate::learning::{ExperimentId, PromptVersionId};
use crate::ports::learning::{ExperimentFilter, LearningStore};
use crate::{ChatEvent, ChatRequest, ChatResponse, Error, LlmProvider, ProjectId, Result, RunId, Usage};

/// One test of the suite. It gets a fresh, empty store.
pub type TestFn = fn(Arc<dyn LearningStore>) -> BoxFuture<'static, ()>;

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        /// Every test, with its name, in the order [`run_all`] runs them.
        pub const TESTS: &[(&str, TestFn)] = &[
            $((stringify!($name), |store| -> BoxFuture<'static, ()> { Box::pin($name(store)) })),*
        ];
    };
}

suite!(
    prompts_crud,
    versions_are_immutable,
    versions_need_prompt_and_parent,
    experiments_crud_and_filter,
    assignments_first_write_wins,
    samples_one_per_run,
    run_scores_one_per_run,
    missing_entities,
);

/// Runs every test in [`TESTS`], each on a fresh store from `new_store`.
/// Panics at the end, naming every failed test.
pub async fn run_all<F, Fut>(mut new_store: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn LearningStore>>,
{
    let mut failed = Vec::new();
    for (name, test) in TESTS {
        eprintln!("learning store conformance: {name}");
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
    assert!(failed.is_empty(), "{} learning store test(s) failed:\n{}", failed.len(), failed.join("\n"));
}

macro_rules! expect_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected Err({}), got {other:?}", stringify!($pattern)),
        }
    };
}

/// A prompt `slug` created at `T0 + secs`, with no active version.
pub fn prompt(slug: &str, secs: i64) -> Prompt {
    Prompt {
        slug: slug.into(),
        description: format!("the {slug} prompt"),
        active_version: None,
        last_evolved_at: Some(at(secs + 1)),
        created_at: at(secs),
    }
}

/// Version `number` of `slug` with a fresh id, child of `parent`.
pub fn version(slug: &str, number: u32, parent: Option<PromptVersionId>) -> PromptVersion {
    PromptVersion {
        id: PromptVersionId(Uuid::now_v7()),
        slug: slug.into(),
        version: number,
        template: format!("v{number}: {{{{ issue.title }}}}"),
        variables: vec!["issue.title".into()],
        parent,
        created_by: if parent.is_some() {
            CreatedBy::Evolution { reasoning: "clearer".into(), expected_improvement: "+5%".into() }
        } else {
            CreatedBy::user("octocat")
        },
        created_at: at(i64::from(number) * 10),
    }
}

/// A running experiment on `subject` with two arms.
pub fn experiment(subject: &str, control: PromptVersionId, secs: i64) -> Experiment {
    Experiment {
        id: ExperimentId(Uuid::now_v7()),
        subject: subject.into(),
        project_id: Some(ProjectId(Uuid::now_v7())),
        control: Arm { name: "control".into(), variant: Variant::Prompt { version: control } },
        variants: vec![Arm {
            name: "model-b".into(),
            variant: Variant::Model { provider: "anthropic".into(), model: "claude".into() },
        }],
        allocation: Allocation::Fixed { weights: vec![2.0, 1.0] },
        metric: Metric::Score,
        success_threshold: 0.65,
        rule: PromotionRule::default(),
        max_samples: 500,
        require_approval: true,
        status: ExperimentStatus::Running,
        created_at: at(secs),
        concluded_at: None,
    }
}

fn run_id() -> RunId {
    RunId(Uuid::now_v7())
}

fn score(version: PromptVersionId, run: RunId, value: f64, secs: i64) -> RunScore {
    RunScore {
        run_id: run,
        project_id: ProjectId(Uuid::from_u64_pair(3, 3)),
        prompt_version_id: version,
        score: value,
        feedback: RunFeedback {
            review_comments: vec!["please add a test".into(), "nit: naming".into()],
            ci_failure_digest: Some("tests::it_works failed".into()),
            iterations: 3,
        },
        scored_at: at(secs),
    }
}

/// Prompts are replaced whole and listed oldest first.
pub async fn prompts_crud(store: Arc<dyn LearningStore>) {
    let b = prompt("b", 20);
    let a = prompt("a", 10);
    store.put_prompt(&b).await.unwrap();
    store.put_prompt(&a).await.unwrap();
    assert_eq!(store.prompt("a").await.unwrap(), a);
    assert_eq!(store.prompts().await.unwrap(), vec![a.clone(), b.clone()]);

    let v = version("a", 1, None);
    store.create_version(&v).await.unwrap();
    let replaced = Prompt { active_version: Some(v.id), last_evolved_at: None, description: "new".into(), ..a };
    store.put_prompt(&replaced).await.unwrap();
    assert_eq!(store.prompt("a").await.unwrap(), replaced);
    assert_eq!(store.prompts().await.unwrap(), vec![replaced, b]);
}

/// A version is stored once: its id and its `(slug, version)` are taken.
pub async fn versions_are_immutable(store: Arc<dyn LearningStore>) {
    store.put_prompt(&prompt("task", 0)).await.unwrap();
    let v1 = version("task", 1, None);
    let v3 = version("task", 3, Some(v1.id));
    let v2 = version("task", 2, Some(v1.id));
    for v in [&v1, &v3, &v2] {
        store.create_version(v).await.unwrap();
    }
    assert_eq!(store.version(v3.id).await.unwrap(), v3);
    assert_eq!(store.versions("task").await.unwrap(), vec![v1.clone(), v2.clone(), v3.clone()]);

    let same_id = PromptVersion { version: 9, template: "changed".into(), ..v2.clone() };
    expect_err!(store.create_version(&same_id).await, Error::AlreadyExists { .. });
    let same_number = version("task", 2, Some(v1.id));
    expect_err!(store.create_version(&same_number).await, Error::AlreadyExists { .. });
    assert_eq!(store.version(v2.id).await.unwrap(), v2, "a version never changes");
    assert_eq!(store.versions("task").await.unwrap().len(), 3);
    assert_eq!(store.versions("other").await.unwrap(), Vec::<PromptVersion>::new());
}

/// A version needs its prompt, and its parent when it names one.
pub async fn versions_need_prompt_and_parent(store: Arc<dyn LearningStore>) {
    expect_err!(store.create_version(&version("ghost", 1, None)).await, Error::NotFound { .. });
    store.put_prompt(&prompt("task", 0)).await.unwrap();
    let orphan = version("task", 2, Some(PromptVersionId(Uuid::now_v7())));
    expect_err!(store.create_version(&orphan).await, Error::NotFound { .. });
    assert_eq!(store.versions("task").await.unwrap(), Vec::<PromptVersion>::new());
}

/// Experiments are replaced whole and filtered by subject and activity.
pub async fn experiments_crud_and_filter(store: Arc<dyn LearningStore>) {
    let control = PromptVersionId(Uuid::now_v7());
    let e1 = experiment("task", control, 10);
    let e2 = experiment("model", control, 20);
    let mut e3 = experiment("task", control, 30);
    for e in [&e1, &e2, &e3] {
        store.put_experiment(e).await.unwrap();
    }
    assert_eq!(store.experiment(e2.id).await.unwrap(), e2);
    let all = store.experiments(&ExperimentFilter::default()).await.unwrap();
    assert_eq!(all, vec![e1.clone(), e2.clone(), e3.clone()]);

    e3.status = ExperimentStatus::Concluded { winner: "control".into(), promoted: false };
    e3.concluded_at = Some(at(40));
    store.put_experiment(&e3).await.unwrap();
    assert_eq!(store.experiment(e3.id).await.unwrap(), e3);
    let task = ExperimentFilter { subject: Some("task".into()), active_only: false };
    assert_eq!(store.experiments(&task).await.unwrap(), vec![e1.clone(), e3.clone()]);
    let active = ExperimentFilter { subject: Some("task".into()), active_only: true };
    assert_eq!(store.experiments(&active).await.unwrap(), vec![e1.clone()]);

    let mut waiting = e1.clone();
    waiting.status = ExperimentStatus::AwaitingApproval { arm: "model-b".into() };
    store.put_experiment(&waiting).await.unwrap();
    assert_eq!(store.experiments(&active).await.unwrap(), vec![waiting], "awaiting approval counts as active");
    let none = ExperimentFilter { subject: Some("nothing".into()), active_only: false };
    assert_eq!(store.experiments(&none).await.unwrap(), Vec::<Experiment>::new());
}

/// The first assignment of an issue stays.
pub async fn assignments_first_write_wins(store: Arc<dyn LearningStore>) {
    let e = experiment("task", PromptVersionId(Uuid::now_v7()), 0);
    store.put_experiment(&e).await.unwrap();
    assert_eq!(store.assignment(e.id, "p#1").await.unwrap(), None);
    let first = Assignment {
        experiment_id: e.id,
        issue_key: "p#1".into(),
        arm: "model-b".into(),
        run_id: run_id(),
        assigned_at: at(1),
    };
    assert_eq!(store.assign(&first).await.unwrap(), first);
    let second = Assignment { arm: "control".into(), run_id: run_id(), assigned_at: at(2), ..first.clone() };
    assert_eq!(store.assign(&second).await.unwrap(), first, "the stored assignment wins");
    assert_eq!(store.assignment(e.id, "p#1").await.unwrap(), Some(first.clone()));
    let other = Assignment { issue_key: "p#2".into(), ..second };
    assert_eq!(store.assign(&other).await.unwrap(), other);
    let ghost = Assignment { experiment_id: ExperimentId(Uuid::now_v7()), ..first };
    expect_err!(store.assign(&ghost).await, Error::NotFound { .. });
}

/// One sample per run and experiment, replaced on record, oldest first.
pub async fn samples_one_per_run(store: Arc<dyn LearningStore>) {
    let e = experiment("task", PromptVersionId(Uuid::now_v7()), 0);
    let other = experiment("task", PromptVersionId(Uuid::now_v7()), 0);
    store.put_experiment(&e).await.unwrap();
    store.put_experiment(&other).await.unwrap();
    let (r1, r2) = (run_id(), run_id());
    let s1 = ArmSample { experiment_id: e.id, arm: "control".into(), run_id: r1, score: 0.25, recorded_at: at(5) };
    let s2 = ArmSample { experiment_id: e.id, arm: "model-b".into(), run_id: r2, score: 0.875, recorded_at: at(5) };
    store.record_sample(&s1).await.unwrap();
    store.record_sample(&s2).await.unwrap();
    store.record_sample(&ArmSample { experiment_id: other.id, ..s1.clone() }).await.unwrap();
    assert_eq!(store.samples(e.id).await.unwrap(), vec![s1.clone(), s2.clone()]);
    let rescored = ArmSample { score: 0.5, recorded_at: at(9), ..s1.clone() };
    store.record_sample(&rescored).await.unwrap();
    assert_eq!(store.samples(e.id).await.unwrap(), vec![s2, rescored]);
    assert_eq!(store.samples(other.id).await.unwrap().len(), 1);
    let ghost = ArmSample { experiment_id: ExperimentId(Uuid::now_v7()), ..s1 };
    expect_err!(store.record_sample(&ghost).await, Error::NotFound { .. });
}

/// One scored run per run, with its feedback, listed per version.
pub async fn run_scores_one_per_run(store: Arc<dyn LearningStore>) {
    store.put_prompt(&prompt("task", 0)).await.unwrap();
    let v1 = version("task", 1, None);
    let v2 = version("task", 2, Some(v1.id));
    store.create_version(&v1).await.unwrap();
    store.create_version(&v2).await.unwrap();
    let (r1, r2, r3) = (run_id(), run_id(), run_id());
    let a = score(v1.id, r1, 0.5, 1);
    let b = score(v1.id, r2, 0.75, 2);
    let c = score(v2.id, r3, 1.0, 3);
    for s in [&a, &b, &c] {
        store.record_run_score(s).await.unwrap();
    }
    assert_eq!(store.run_scores(v1.id).await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(store.run_scores(v2.id).await.unwrap(), vec![c]);
    let again = RunScore { score: 0.125, feedback: RunFeedback::default(), scored_at: at(4), ..a.clone() };
    store.record_run_score(&again).await.unwrap();
    assert_eq!(store.run_scores(v1.id).await.unwrap(), vec![b, again]);
    let ghost = score(PromptVersionId(Uuid::now_v7()), run_id(), 0.5, 5);
    expect_err!(store.record_run_score(&ghost).await, Error::NotFound { .. });
    assert_eq!(store.run_scores(ghost.prompt_version_id).await.unwrap(), Vec::<RunScore>::new());
}

/// Reads of missing entities fail with `NotFound`; lists are empty. The
/// positive control: a prompt that was put is found, and is all there is.
pub async fn missing_entities(store: Arc<dyn LearningStore>) {
    expect_err!(store.prompt("nothing").await, Error::NotFound { .. });
    expect_err!(store.version(PromptVersionId(Uuid::now_v7())).await, Error::NotFound { .. });
    expect_err!(store.experiment(ExperimentId(Uuid::now_v7())).await, Error::NotFound { .. });
    assert_eq!(store.prompts().await.unwrap(), Vec::<Prompt>::new());
    let present = prompt("present", 10);
    store.put_prompt(&present).await.unwrap();
    assert_eq!(store.prompt("present").await.unwrap(), present, "missing_entities: a prompt that exists is found");
    expect_err!(store.prompt("nothing").await, Error::NotFound { .. });
    assert_eq!(store.prompts().await.unwrap(), vec![present]);
    assert_eq!(store.samples(ExperimentId(Uuid::now_v7())).await.unwrap(), Vec::<ArmSample>::new());
    assert_eq!(store.assignment(ExperimentId(Uuid::now_v7()), "p#1").await.unwrap(), None);
}

#[derive(Debug, Default)]
struct Memory {
    prompts: Vec<Prompt>,
    versions: Vec<PromptVersion>,
    experiments: Vec<Experiment>,
    assignments: Vec<Assignment>,
    samples: Vec<ArmSample>,
    scores: Vec<RunScore>,
}

/// A [`LearningStore`] in memory: for tests and for trying the learning loop
/// without a database. Passes the suite above.
#[derive(Debug, Default)]
pub struct MemoryLearningStore {
    inner: Mutex<Memory>,
}

impl MemoryLearningStore {
    fn with<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound { entity, id: id.to_string() }
}

fn is_active(e: &Experiment) -> bool {
    matches!(e.status, ExperimentStatus::Running | ExperimentStatus::AwaitingApproval { .. })
}

#[async_trait]
impl LearningStore for MemoryLearningStore {
    async fn put_prompt(&self, prompt: &Prompt) -> Result<()> {
        self.with(|m| match m.prompts.iter_mut().find(|p| p.slug == prompt.slug) {
            Some(p) => *p = prompt.clone(),
            None => m.prompts.push(prompt.clone()),
        });
        Ok(())
    }

    async fn prompt(&self, slug: &str) -> Result<Prompt> {
        self.with(|m| m.prompts.iter().find(|p| p.slug == slug).cloned()).ok_or_else(|| not_found("prompt", slug))
    }

    async fn prompts(&self) -> Result<Vec<Prompt>> {
        let mut all = self.with(|m| m.prompts.clone());
        all.sort_by_key(|p| p.created_at);
        Ok(all)
    }

    async fn create_version(&self, version: &PromptVersion) -> Result<()> {
        self.with(|m| {
            if !m.prompts.iter().any(|p| p.slug == version.slug) {
                return Err(not_found("prompt", &version.slug));
            }
            if let Some(parent) = version.parent
                && !m.versions.iter().any(|v| v.id == parent)
            {
                return Err(not_found("prompt version", parent));
            }
            if m.versions.iter().any(|v| v.id == version.id || (v.slug == version.slug && v.version == version.version))
            {
                return Err(Error::AlreadyExists {
                    entity: "prompt version",
                    id: format!("{} ({} v{})", version.id, version.slug, version.version),
                });
            }
            m.versions.push(version.clone());
            Ok(())
        })
    }

    async fn version(&self, id: PromptVersionId) -> Result<PromptVersion> {
        self.with(|m| m.versions.iter().find(|v| v.id == id).cloned()).ok_or_else(|| not_found("prompt version", id))
    }

    async fn versions(&self, slug: &str) -> Result<Vec<PromptVersion>> {
        let mut all: Vec<PromptVersion> =
            self.with(|m| m.versions.iter().filter(|v| v.slug == slug).cloned().collect());
        all.sort_by_key(|v| v.version);
        Ok(all)
    }

    async fn put_experiment(&self, experiment: &Experiment) -> Result<()> {
        self.with(|m| match m.experiments.iter_mut().find(|e| e.id == experiment.id) {
            Some(e) => *e = experiment.clone(),
            None => m.experiments.push(experiment.clone()),
        });
        Ok(())
    }

    async fn experiment(&self, id: ExperimentId) -> Result<Experiment> {
        self.with(|m| m.experiments.iter().find(|e| e.id == id).cloned()).ok_or_else(|| not_found("experiment", id))
    }

    async fn experiments(&self, filter: &ExperimentFilter) -> Result<Vec<Experiment>> {
        let mut all: Vec<Experiment> = self.with(|m| {
            m.experiments
                .iter()
                .filter(|e| filter.subject.as_ref().is_none_or(|s| &e.subject == s))
                .filter(|e| !filter.active_only || is_active(e))
                .cloned()
                .collect()
        });
        all.sort_by_key(|e| e.created_at);
        Ok(all)
    }

    async fn assign(&self, assignment: &Assignment) -> Result<Assignment> {
        self.with(|m| {
            if !m.experiments.iter().any(|e| e.id == assignment.experiment_id) {
                return Err(not_found("experiment", assignment.experiment_id));
            }
            if let Some(a) = m
                .assignments
                .iter()
                .find(|a| a.experiment_id == assignment.experiment_id && a.issue_key == assignment.issue_key)
            {
                return Ok(a.clone());
            }
            m.assignments.push(assignment.clone());
            Ok(assignment.clone())
        })
    }

    async fn assignment(&self, experiment: ExperimentId, issue_key: &str) -> Result<Option<Assignment>> {
        Ok(self.with(|m| {
            m.assignments.iter().find(|a| a.experiment_id == experiment && a.issue_key == issue_key).cloned()
        }))
    }

    async fn record_sample(&self, sample: &ArmSample) -> Result<()> {
        self.with(|m| {
            if !m.experiments.iter().any(|e| e.id == sample.experiment_id) {
                return Err(not_found("experiment", sample.experiment_id));
            }
            m.samples.retain(|s| !(s.experiment_id == sample.experiment_id && s.run_id == sample.run_id));
            m.samples.push(sample.clone());
            Ok(())
        })
    }

    async fn samples(&self, experiment: ExperimentId) -> Result<Vec<ArmSample>> {
        let mut all: Vec<ArmSample> =
            self.with(|m| m.samples.iter().filter(|s| s.experiment_id == experiment).cloned().collect());
        all.sort_by_key(|s| s.recorded_at);
        Ok(all)
    }

    async fn record_run_score(&self, score: &RunScore) -> Result<()> {
        self.with(|m| {
            if !m.versions.iter().any(|v| v.id == score.prompt_version_id) {
                return Err(not_found("prompt version", score.prompt_version_id));
            }
            m.scores.retain(|s| s.run_id != score.run_id);
            m.scores.push(score.clone());
            Ok(())
        })
    }

    async fn run_scores(&self, version: PromptVersionId) -> Result<Vec<RunScore>> {
        let mut all: Vec<RunScore> =
            self.with(|m| m.scores.iter().filter(|s| s.prompt_version_id == version).cloned().collect());
        all.sort_by_key(|s| s.scored_at);
        Ok(all)
    }
}

/// An [`LlmProvider`] that answers from a script, in order, and records the
/// requests it got. When the script runs out it fails.
#[derive(Debug, Default)]
pub struct ScriptedLlm {
    answers: Mutex<VecDeque<String>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl ScriptedLlm {
    /// A provider that will answer with `answers`, one per call.
    pub fn new<I, S>(answers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { answers: Mutex::new(answers.into_iter().map(Into::into).collect()), requests: Mutex::default() }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn next(&self, req: &ChatRequest) -> Result<String> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).push(req.clone());
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).pop_front().ok_or_else(|| Error::Backend {
            backend: "scripted llm",
            message: "the script has no more answers".into(),
            retryable: false,
            source: None,
        })
    }
}

#[async_trait]
impl LlmProvider for ScriptedLlm {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse> {
        let content = self.next(req)?;
        Ok(ChatResponse {
            usage: Usage { input: 100, output: content.len() as u64, ..Usage::default() },
            content,
            tool_calls: Vec::new(),
            stop_reason: "end_turn".into(),
        })
    }

    async fn stream(&self, req: &ChatRequest) -> Result<BoxStream<'static, Result<ChatEvent>>> {
        let content = self.next(req)?;
        let usage = Usage { input: 100, output: content.len() as u64, ..Usage::default() };
        let events =
            vec![Ok(ChatEvent::TextDelta(content)), Ok(ChatEvent::Done { stop_reason: "end_turn".into(), usage })];
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_suite() {
        run_all(|| async { Arc::new(MemoryLearningStore::default()) as Arc<dyn LearningStore> }).await;
    }

    #[tokio::test]
    async fn scripted_llm_answers_in_order_then_fails() {
        let llm = ScriptedLlm::new(["one"]);
        let req =
            ChatRequest { model: "m".into(), system: None, messages: Vec::new(), tools: Vec::new(), max_tokens: 1 };
        assert_eq!(llm.complete(&req).await.unwrap().content, "one");
        assert!(llm.complete(&req).await.is_err());
        assert_eq!(llm.requests().len(), 2);
    }
}
