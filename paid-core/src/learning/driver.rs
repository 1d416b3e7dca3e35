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
use super::score::ScoreWeights;
use super::strategy::{EvolutionStrategy, check_verdict};
use super::{ExperimentId, PromptVersionId};
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
}

impl std::fmt::Debug for Learning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learning").field("strategy", &self.strategy.name()).field("weights", &self.weights).finish()
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
        Self { store, strategy, clock, ids, weights: ScoreWeights::default() }
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
