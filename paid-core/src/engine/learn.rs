//! The learning hooks: the engine's side of the learning loop
//! ([`crate::learning::driver::Learning`]): which prompt version a run
//! renders, and the outcomes that score it. The role sees the store (to
//! read journals), the clock, the learning loop and the prompt template;
//! no runtime, forge, workspaces or agent.
//!
//! The version is picked once, in the provisioning step, and stored in that
//! step's journal output under `prompt` (no store column): a resumed run
//! reads it back instead of picking again. Learning is advisory: when its
//! store fails, the run renders the builder's template and goes on, and a
//! failed score is logged.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::builder::Parts;
use super::comparison::{CandidateReport, CompareSpec, candidate_id};
use super::drive::journal::Journal;
use super::prompt;
use crate::learning::driver::Learning;
use crate::learning::evolution::{EvolutionConfig, EvolutionReport, RunFeedback};
use crate::learning::prompts::{PromptVersion, StyleGuides};
use crate::learning::{ExperimentId, PromptVersionId};
use crate::{Clock, LlmProvider, Outcome, Project, ProjectId, Result, Run, RunId, Store, TrackedIssue};

/// The learning loop and what the engine renders with it.
#[derive(Clone)]
pub(crate) struct LearningSetup {
    pub(crate) learning: Learning,
    pub(crate) slug: String,
    pub(crate) global_style: Option<String>,
    pub(crate) project_styles: HashMap<ProjectId, String>,
}

/// The prompt version a run (or a comparison candidate) uses, and the
/// experiment arm it stands for. Journaled under `prompt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PromptPick {
    pub(crate) version: PromptVersionId,
    #[serde(default)]
    pub(crate) experiment: Option<(ExperimentId, String)>,
    /// The version itself, so a resumed run renders it even when the
    /// learning store is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) snapshot: Option<PromptVersion>,
}

/// The prompt pick recorded in the run's journal (the latest done step
/// whose output has one).
pub(crate) fn recorded_prompt(journal: &Journal) -> Option<PromptPick> {
    journal.latest_field("prompt")
}

/// Picks and renders prompts, and reports outcomes to the learning loop
/// (when there is one). Cheap to clone; clones share state.
#[derive(Clone)]
pub(crate) struct LearningHooks {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    setup: Option<Arc<LearningSetup>>,
    template: Arc<str>,
}

impl LearningHooks {
    /// The role: the learning loop `setup` (if any), and the builder's
    /// `template` for runs it picks no version for.
    pub(crate) fn new(parts: &Parts, setup: Option<LearningSetup>, template: String) -> Self {
        Self {
            store: parts.store.clone(),
            clock: parts.clock.clone(),
            setup: setup.map(Arc::new),
            template: template.into(),
        }
    }

    /// Picks the run's prompt version: the issue's sticky experiment arm or
    /// the active version. `None` without learning, or when learning fails
    /// (logged; the builder's template is used).
    pub(crate) async fn pick_prompt(&self, run: &Run, project: &Project) -> Option<PromptPick> {
        let setup = self.setup.as_ref()?;
        match setup.learning.prompt_for_run(&setup.slug, project.id, run.issue_number, run.id).await {
            Ok(choice) => Some(PromptPick {
                version: choice.version.id,
                experiment: choice.experiment,
                snapshot: Some(choice.version),
            }),
            Err(e) => {
                warn!(run_id = %run.id, slug = %setup.slug, error = %e, "learning could not pick a prompt; using the built-in template");
                None
            }
        }
    }

    /// The prompt version a run rendered (see
    /// [`Engine::prompt_version`](crate::engine::Engine::prompt_version)).
    pub(crate) async fn prompt_version(&self, run_id: RunId) -> Result<Option<PromptVersionId>> {
        let run = self.store.run(run_id).await?;
        if run.context.prompt_version.is_some() && run.context.compare.is_none() {
            return Ok(run.context.prompt_version);
        }
        let journal = Journal::new(self.store.steps(run_id).await?);
        Ok(recorded_prompt(&journal).map(|p| p.version))
    }

    /// Renders the task prompt for `issue`: `pick`'s version with the style
    /// guides, or the builder's template. Untrusted issues are refused either
    /// way.
    pub(crate) async fn render_prompt(
        &self,
        run: &Run,
        issue: &TrackedIssue,
        feedback: Option<&str>,
        pick: Option<&PromptPick>,
    ) -> Result<String> {
        if let (Some(setup), Some(pick)) = (&self.setup, pick) {
            let version = match &pick.snapshot {
                Some(v) => Ok(v.clone()),
                None => setup.learning.store().version(pick.version).await,
            };
            match version {
                Ok(version) => {
                    let style = StyleGuides {
                        global: setup.global_style.clone(),
                        project: setup.project_styles.get(&run.project_id).cloned(),
                    };
                    return prompt::render_version(&version, &style, issue, feedback);
                }
                Err(e) => {
                    warn!(run_id = %run.id, version = %pick.version, error = %e, "prompt version unavailable; using the built-in template");
                }
            }
        }
        prompt::render(&self.template, issue, feedback)
    }

    /// Scores `outcome` under the version the run used (and its experiment
    /// arm). Never fails: learning errors are logged.
    pub(crate) async fn learn_outcome(&self, run: &Run, outcome: &Outcome, feedback: RunFeedback) {
        if self.setup.is_none() {
            return;
        }
        match self.store.steps(run.id).await {
            Ok(steps) => self.score_outcome(run, &Journal::new(steps), outcome, feedback).await,
            Err(e) => {
                warn!(run_id = %run.id, error = %e, "could not read the run's prompt version; outcome not scored")
            }
        }
    }

    /// [`LearningHooks::learn_outcome`] with the run's journal at hand.
    pub(crate) async fn score_outcome(&self, run: &Run, journal: &Journal, outcome: &Outcome, feedback: RunFeedback) {
        let Some(setup) = &self.setup else { return };
        let Some(pick) = recorded_prompt(journal) else { return };
        if let Err(e) = setup.learning.record_outcome(outcome, pick.version, feedback, pick.experiment).await {
            warn!(run_id = %run.id, version = %pick.version, error = %e, "learning could not record the outcome");
        }
    }

    /// Records each candidate of a comparison run as a sample of the
    /// matching arm of the spec's experiment, under the candidate's own id.
    /// Best effort.
    pub(crate) async fn record_candidate_samples(
        &self,
        run: &Run,
        project: &Project,
        spec: &CompareSpec,
        reports: &[CandidateReport],
    ) {
        let (Some(setup), Some(experiment_id)) = (&self.setup, spec.experiment) else { return };
        let learning = &setup.learning;
        let experiment = match learning.store().experiment(experiment_id).await {
            Ok(e) => e,
            Err(e) => {
                warn!(run_id = %run.id, experiment = %experiment_id, error = %e, "comparison samples not recorded");
                return;
            }
        };
        for (i, r) in reports.iter().enumerate() {
            let Some(arm) = experiment.arms().find(|a| r.candidate.matches(&a.variant)) else {
                warn!(run_id = %run.id, candidate = %r.name, "no arm of the experiment matches the candidate");
                continue;
            };
            let Some(version) = r.prompt_version else {
                warn!(run_id = %run.id, candidate = %r.name, "candidate has no prompt version; sample not recorded");
                continue;
            };
            let outcome = Outcome {
                run_id: candidate_id(run.id, i),
                project_id: project.id,
                pr_merged: None,
                ci_passed: None,
                lint_clean: None,
                tests_passing: (!project.verify.is_empty()).then_some(r.verify_passed && r.error.is_none()),
                human_vote: None,
                iterations: r.iterations,
                cost_micros: r.cost_micros,
                quality_score: None,
                recorded_at: self.clock.now(),
            };
            let feedback = RunFeedback {
                review_comments: Vec::new(),
                ci_failure_digest: r.error.clone(),
                iterations: r.iterations,
            };
            if let Err(e) =
                learning.record_outcome(&outcome, version, feedback, Some((experiment_id, arm.name.clone()))).await
            {
                warn!(run_id = %run.id, candidate = %r.name, error = %e, "could not record the candidate's sample");
            }
        }
    }

    /// Runs the evolution workflow of the engine's prompt (see
    /// [`Engine::evolve_due`](crate::engine::Engine::evolve_due)).
    pub(crate) async fn evolve_due(
        &self,
        llm: &dyn LlmProvider,
        config: &EvolutionConfig,
    ) -> Result<Option<EvolutionReport>> {
        match &self.setup {
            Some(setup) => setup.learning.evolve(llm, &setup.slug, config).await.map(Some),
            None => Ok(None),
        }
    }
}
