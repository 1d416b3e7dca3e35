//! [`Learning`]: the learning loop over its ports, for the engine (or an
//! operator's tool) to call at the points of a run's life:
//!
//! - before the agent runs, [`Learning::prompt_for_run`] picks the prompt
//!   version (the issue's sticky arm of a running experiment, or the active
//!   version) and records the assignment;
//! - when the outcome is known, [`Learning::record_outcome`] scores it,
//!   stores the scored run with its feedback, adds the experiment sample,
//!   and reviews the experiment;
//! - on a schedule, [`Learning::evolve`] runs the evolution workflow;
//! - a human calls [`Learning::approve`] or [`Learning::reject`] on a
//!   promotion that waits for approval.

use std::sync::Arc;

use super::evolution::{self, EvolutionConfig, EvolutionPorts, EvolutionReport, RunFeedback, RunScore};
use super::experiment::{self, ArmSample, Assignment, Decision, Experiment, Variant};
use super::prompts::{self, PromptVersion};
use super::score::{QualitySummary, ScoreWeights, export_metrics};
use super::strategy::{EvolutionStrategy, check_verdict};
use super::{ExperimentId, PromptVersionId};
use crate::metrics::Metrics;
use crate::ports::learning::{ExperimentFilter, LearningStore};
use crate::{Clock, Error, Ids, LlmProvider, Outcome, ProjectId, Result, RunId};

/// The prompt version a run uses, and the experiment arm it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptChoice {
    /// The version to render.
    pub version: PromptVersion,
    /// The experiment and arm, when the run is part of one.
    pub experiment: Option<(ExperimentId, String)>,
}

/// The learning loop over a [`LearningStore`], an [`EvolutionStrategy`], a
/// clock and ids.
#[derive(Clone)]
pub struct Learning {
    store: Arc<dyn LearningStore>,
    strategy: Arc<dyn EvolutionStrategy>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    weights: ScoreWeights,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Learning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learning")
            .field("strategy", &self.strategy.name())
            .field("weights", &self.weights)
            .finish_non_exhaustive()
    }
}

impl Learning {
    /// A loop with the default score weights.
    pub fn new(
        store: Arc<dyn LearningStore>,
        strategy: Arc<dyn EvolutionStrategy>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
    ) -> Self {
        Self { store, strategy, clock, ids, weights: ScoreWeights::default(), metrics: None }
    }

    /// Records `paid_quality_score{project_id,prompt_slug}` in `metrics`:
    /// after each outcome, the mean score of the version's runs in the
    /// project.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Uses these score weights.
    pub fn with_weights(mut self, weights: ScoreWeights) -> Self {
        self.weights = weights;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn LearningStore> {
        &self.store
    }

    /// The issue's arm in a running experiment: the stored assignment, or a
    /// new one chosen by the strategy (seeded by experiment and issue) and
    /// stored first-write-wins.
    pub async fn assign(&self, experiment: &Experiment, issue_key: &str, run_id: RunId) -> Result<Assignment> {
        if let Some(existing) = self.store.assignment(experiment.id, issue_key).await? {
            return Ok(existing);
        }
        let samples = self.store.samples(experiment.id).await?;
        let stats = experiment::arm_stats(experiment, &samples);
        let seed = experiment::assignment_seed(experiment.id, issue_key);
        let choice = experiment::choose_arm(experiment, &stats, issue_key, seed, self.strategy.as_ref())?;
        tracing::debug!(experiment = %experiment.id, issue = issue_key, arm = %choice.arm, reason = %choice.reason, "assigned");
        self.store
            .assign(&Assignment {
                experiment_id: experiment.id,
                issue_key: issue_key.to_string(),
                arm: choice.arm,
                run_id,
                assigned_at: self.clock.now(),
            })
            .await
    }

    /// The prompt version for a run on issue `number` of `project`: the arm
    /// of the oldest running experiment on the prompt that covers the
    /// project, or the prompt's active version.
    pub async fn prompt_for_run(
        &self,
        slug: &str,
        project: ProjectId,
        number: u64,
        run_id: RunId,
    ) -> Result<PromptChoice> {
        let running =
            self.store.experiments(&ExperimentFilter { subject: Some(slug.into()), active_only: true }).await?;
        let experiment = running.into_iter().find(|e| e.is_running() && e.project_id.is_none_or(|p| p == project));
        if let Some(exp) = experiment {
            let assignment = self.assign(&exp, &experiment::issue_key(project, number), run_id).await?;
            if let Some(Variant::Prompt { version }) = exp.arm(&assignment.arm).map(|a| &a.variant) {
                let version = self.store.version(*version).await?;
                return Ok(PromptChoice { version, experiment: Some((exp.id, assignment.arm)) });
            }
        }
        let prompt = self.store.prompt(slug).await?;
        let id = prompt.active_version.ok_or_else(|| Error::InvalidInput {
            what: format!("prompt {slug}"),
            message: "has no active version; create one and set it active".into(),
        })?;
        Ok(PromptChoice { version: self.store.version(id).await?, experiment: None })
    }

    /// Scores a run's outcome, stores it with its feedback under the prompt
    /// version it used, and, when the run was part of an experiment, records
    /// the sample and reviews the experiment. Returns the score and the
    /// review's decision.
    pub async fn record_outcome(
        &self,
        outcome: &Outcome,
        version: PromptVersionId,
        feedback: RunFeedback,
        experiment: Option<(ExperimentId, String)>,
    ) -> Result<(f64, Option<Decision>)> {
        let score = outcome.quality_score.unwrap_or_else(|| self.weights.score(outcome).value);
        let now = self.clock.now();
        self.store
            .record_run_score(&RunScore {
                run_id: outcome.run_id,
                project_id: outcome.project_id,
                prompt_version_id: version,
                score,
                feedback,
                scored_at: now,
            })
            .await?;
        if let Some(metrics) = &self.metrics {
            let slug = self.store.version(version).await?.slug;
            let scores: Vec<f64> = self
                .store
                .run_scores(version)
                .await?
                .iter()
                .filter(|s| s.project_id == outcome.project_id)
                .map(|s| s.score)
                .collect();
            let summary = QualitySummary {
                outcomes: scores.len(),
                mean_quality: (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64),
                merge_rate: None,
            };
            export_metrics(metrics, outcome.project_id, &slug, &summary);
        }
        let Some((experiment_id, arm)) = experiment else { return Ok((score, None)) };
        self.store
            .record_sample(&ArmSample { experiment_id, arm, run_id: outcome.run_id, score, recorded_at: now })
            .await?;
        let decision = self.review(experiment_id).await?;
        Ok((score, Some(decision)))
    }

    /// Evaluates a running experiment with the strategy and applies the
    /// decision: a promotion of a prompt variant makes it the prompt's
    /// active version (unless approval is required).
    pub async fn review(&self, id: ExperimentId) -> Result<Decision> {
        let mut exp = self.store.experiment(id).await?;
        if !exp.is_running() {
            return Ok(Decision::Continue { reason: format!("experiment is not running ({:?})", exp.status) });
        }
        let samples = self.store.samples(id).await?;
        let stats = experiment::arm_stats(&exp, &samples);
        let req = experiment::promote_request(&exp, &stats);
        let verdict = self.strategy.should_promote(&req)?;
        check_verdict(&req, &verdict)?;
        let decision = experiment::decide(&exp, verdict);
        if matches!(decision, Decision::Continue { .. }) {
            return Ok(decision);
        }
        tracing::info!(experiment = %id, ?decision, "experiment decided");
        exp.apply(&decision, self.clock.now());
        if let Decision::Promote { arm, .. } = &decision {
            self.activate(&exp, arm).await?;
        }
        self.store.put_experiment(&exp).await?;
        Ok(decision)
    }

    /// A human approves the promotion the experiment waits for.
    pub async fn approve(&self, id: ExperimentId) -> Result<Experiment> {
        let mut exp = self.store.experiment(id).await?;
        let arm = exp.approve(self.clock.now())?;
        self.activate(&exp, &arm.name).await?;
        self.store.put_experiment(&exp).await?;
        Ok(exp)
    }

    /// A human rejects the promotion the experiment waits for; control stays.
    pub async fn reject(&self, id: ExperimentId) -> Result<Experiment> {
        let mut exp = self.store.experiment(id).await?;
        exp.reject(self.clock.now())?;
        self.store.put_experiment(&exp).await?;
        Ok(exp)
    }

    async fn activate(&self, exp: &Experiment, arm: &str) -> Result<()> {
        let Some(Variant::Prompt { version }) = exp.arm(arm).map(|a| &a.variant) else { return Ok(()) };
        let mut prompt = self.store.prompt(&exp.subject).await?;
        prompt.active_version = Some(*version);
        self.store.put_prompt(&prompt).await
    }

    /// Runs the evolution workflow for `slug` with `llm`.
    pub async fn evolve(&self, llm: &dyn LlmProvider, slug: &str, config: &EvolutionConfig) -> Result<EvolutionReport> {
        let ports = EvolutionPorts {
            store: self.store.as_ref(),
            llm,
            strategy: self.strategy.as_ref(),
            ids: self.ids.as_ref(),
            clock: self.clock.as_ref(),
        };
        evolution::evolve(ports, slug, config).await
    }

    /// A version's lineage: itself, its parent, ... to the root.
    pub async fn lineage(&self, id: PromptVersionId) -> Result<Vec<PromptVersion>> {
        let version = self.store.version(id).await?;
        let all = self.store.versions(&version.slug).await?;
        Ok(prompts::lineage(&all, id))
    }
}

#[cfg(test)]
#[cfg(feature = "testing")]
mod tests {
    use chrono::Duration;
    use pretty_assertions::assert_eq;
    use uuid::Uuid;

    use super::*;
    use crate::learning::evolution::SkipReason;
    use crate::learning::experiment::ExperimentStatus;
    use crate::learning::prompts::{CreatedBy, Prompt, default_task_prompt};
    use crate::learning::sampler::{self, SplitMix64};
    use crate::learning::strategy::ThompsonStrategy;
    use crate::testing::fixtures::at;
    use crate::testing::learning::{MemoryLearningStore, ScriptedLlm};
    use crate::{ManualClock, SequentialIds};

    const GOOD: &str = "Issue #{{ issue.number }}: {{ issue.title }}\n\n{{ issue.body }}\n\
        {% if feedback %}\nFix these verification failures first:\n{{ feedback }}\n{% endif %}\n\
        Write a failing test first, then the smallest fix. Run the tests before you stop.";
    const MEH: &str = "Resolve #{{ issue.number }} ({{ issue.title }}).\n{{ issue.body }}\n\
        {% if feedback %}Failures: {{ feedback }}{% endif %}";

    fn llm_answer() -> String {
        let mutation = |t: &str, why: &str, gain: &str| serde_json::json!({"template": t, "reasoning": why, "expected_improvement": gain});
        let answer = serde_json::json!({"mutations": [
            mutation(MEH, "shorter", "+2%"),
            mutation(GOOD, "test-first, and run the tests", "+20% merge rate"),
            mutation("Fix {{ issue.title }} and leak {{ secrets }}", "bad", "none"),
        ]});
        format!("Here are my proposals.\n```json\n{answer:#}\n```")
    }

    /// An outcome that scores 1.0 on success and 0.15 otherwise.
    fn outcome(project: ProjectId, run: RunId, success: bool) -> Outcome {
        Outcome {
            run_id: run,
            project_id: project,
            pr_merged: Some(success),
            ci_passed: Some(success),
            lint_clean: Some(success),
            tests_passing: Some(success),
            human_vote: if success { Some(1) } else { None },
            iterations: if success { 1 } else { 10 },
            cost_micros: Some(12_000),
            quality_score: None,
            recorded_at: at(0),
        }
    }

    struct World {
        learning: Learning,
        store: Arc<MemoryLearningStore>,
        clock: Arc<ManualClock>,
        project: ProjectId,
        v1: PromptVersion,
    }

    async fn world(strategy: Arc<dyn EvolutionStrategy>) -> World {
        let store = Arc::new(MemoryLearningStore::default());
        let clock = Arc::new(ManualClock::new(at(0)));
        let ids = Arc::new(SequentialIds::default());
        let learning = Learning::new(store.clone(), strategy, clock.clone(), ids).with_metrics(Arc::default());
        let v1 = default_task_prompt(PromptVersionId(Uuid::now_v7()), at(0)).unwrap();
        store
            .put_prompt(&Prompt {
                slug: "task".into(),
                description: "the task prompt".into(),
                active_version: Some(v1.id),
                last_evolved_at: None,
                created_at: at(0),
            })
            .await
            .unwrap();
        store.create_version(&v1).await.unwrap();
        World { learning, store, clock, project: ProjectId(Uuid::now_v7()), v1 }
    }

    /// Runs `n` issues through the loop, with success rates by template.
    async fn run_issues(w: &World, rng: &mut SplitMix64, first: u64, n: u64, stop_when_done: bool) {
        for number in first..first + n {
            let run = RunId(Uuid::now_v7());
            let choice = w.learning.prompt_for_run("task", w.project, number, run).await.unwrap();
            let rate = match choice.version.template.as_str() {
                GOOD => 0.7,
                MEH => 0.42,
                _ => 0.4,
            };
            let success = sampler::uniform(rng) < rate;
            let feedback = RunFeedback {
                review_comments: if success { vec![] } else { vec!["no test for the fix".into()] },
                ci_failure_digest: (!success).then(|| "tests::regression failed".into()),
                iterations: if success { 1 } else { 10 },
            };
            let (_, decision) = w
                .learning
                .record_outcome(&outcome(w.project, run, success), choice.version.id, feedback, choice.experiment)
                .await
                .unwrap();
            w.clock.advance(Duration::minutes(30));
            if stop_when_done && matches!(decision, Some(d) if !matches!(d, Decision::Continue { .. })) {
                return;
            }
        }
    }

    #[tokio::test]
    async fn evolution_end_to_end() {
        let w = world(Arc::new(ThompsonStrategy)).await;
        let mut rng = SplitMix64::new(8);
        let llm = ScriptedLlm::new([llm_answer(), "I have no further ideas.".to_string()]);
        let config = EvolutionConfig::default();

        // Too few scored runs: nothing is asked.
        run_issues(&w, &mut rng, 1, 10, false).await;
        let report = w.learning.evolve(&llm, "task", &config).await.unwrap();
        assert!(matches!(report, EvolutionReport::Skipped { reason: SkipReason::TooFewScoredRuns { have: 10, .. } }));
        assert!(llm.requests().is_empty());

        // Scored runs exist: 30 on v1, with feedback.
        run_issues(&w, &mut rng, 11, 20, false).await;
        let scores = w.store.run_scores(w.v1.id).await.unwrap();
        assert_eq!(scores.len(), 30);

        // Evolution proposes variants.
        let report = w.learning.evolve(&llm, "task", &config).await.unwrap();
        let EvolutionReport::Started { experiment, versions, rejected } = report else {
            panic!("evolution did not start: {report:?}");
        };
        assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 3]);
        assert!(versions.iter().all(|v| v.parent == Some(w.v1.id) && v.variables == w.v1.variables));
        assert!(matches!(&versions[1].created_by, CreatedBy::Evolution { expected_improvement, .. }
            if expected_improvement == "+20% merge rate"));
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert!(rejected[0].reason.contains("secrets"));
        let request = &llm.requests()[0].messages[0].content;
        assert!(request.contains("tests::regression failed") && request.contains("no test for the fix"));
        assert_eq!(experiment.variants.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), vec!["v2", "v3"]);

        // A running experiment, and the cooldown, keep evolution away.
        let again = w.learning.evolve(&llm, "task", &config).await.unwrap();
        assert!(matches!(again, EvolutionReport::Skipped { reason: SkipReason::ExperimentRunning { .. } }));

        // The experiment runs over simulated outcomes until it decides.
        run_issues(&w, &mut rng, 100, 1000, true).await;
        let done = w.store.experiment(experiment.id).await.unwrap();
        assert_eq!(done.status, ExperimentStatus::Concluded { winner: "v3".into(), promoted: true }, "{done:?}");

        // The winner is the prompt's active version; its lineage is queryable.
        let prompt = w.store.prompt("task").await.unwrap();
        assert_eq!(prompt.active_version, Some(versions[1].id));
        let lineage = w.learning.lineage(versions[1].id).await.unwrap();
        assert_eq!(lineage.iter().map(|v| v.version).collect::<Vec<_>>(), vec![3, 1]);
        assert_eq!(
            w.learning.prompt_for_run("task", w.project, 5000, RunId(Uuid::now_v7())).await.unwrap().version.template,
            GOOD
        );

        // Every experiment run became a sample.
        let samples = w.store.samples(experiment.id).await.unwrap();
        assert!(samples.len() >= 60, "{} samples", samples.len());

        // After the cooldown, evolution starts over from the new version,
        // whose experiment runs are its scored runs.
        w.clock.advance(Duration::days(8));
        assert!(w.store.run_scores(versions[1].id).await.unwrap().len() >= 20);
        let later = w.learning.evolve(&llm, "task", &config).await.unwrap();
        assert!(matches!(later, EvolutionReport::NothingValid { .. }), "{later:?}");
        assert!(llm.requests()[1].messages[0].content.contains("The prompt `task` (version 3)"));
    }

    #[tokio::test]
    async fn assignments_are_sticky_and_approval_gates_promotion() {
        let w = world(Arc::new(ThompsonStrategy)).await;
        let mut rng = SplitMix64::new(21);
        run_issues(&w, &mut rng, 1, 25, false).await;
        let config = EvolutionConfig {
            experiment: crate::learning::evolution::ExperimentSettings { require_approval: true, ..Default::default() },
            ..EvolutionConfig::default()
        };
        let llm = ScriptedLlm::new([llm_answer()]);
        let EvolutionReport::Started { experiment, versions, .. } =
            w.learning.evolve(&llm, "task", &config).await.unwrap()
        else {
            panic!("evolution did not start");
        };

        // The same issue gets the same arm on every run.
        let first = w.learning.prompt_for_run("task", w.project, 7, RunId(Uuid::now_v7())).await.unwrap();
        for _ in 0..5 {
            let again = w.learning.prompt_for_run("task", w.project, 7, RunId(Uuid::now_v7())).await.unwrap();
            assert_eq!(again, first);
        }

        run_issues(&w, &mut rng, 100, 1000, true).await;
        let waiting = w.store.experiment(experiment.id).await.unwrap();
        assert_eq!(waiting.status, ExperimentStatus::AwaitingApproval { arm: "v3".into() });
        assert_eq!(w.store.prompt("task").await.unwrap().active_version, Some(w.v1.id), "not before approval");
        let approved = w.learning.approve(experiment.id).await.unwrap();
        assert_eq!(approved.status, ExperimentStatus::Concluded { winner: "v3".into(), promoted: true });
        assert_eq!(w.store.prompt("task").await.unwrap().active_version, Some(versions[1].id));
    }
}
