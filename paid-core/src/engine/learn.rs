//! The engine's side of the learning loop ([`crate::learning::driver::Learning`]):
//! which prompt version a run renders, and the outcome that scores it.
//!
//! The version is picked once, in the provisioning step, and stored in that
//! step's journal output under `prompt` (no store column): a resumed run
//! reads it back instead of picking again. Learning is advisory: when its
//! store fails, the run renders the builder's template and goes on, and a
//! failed score is logged.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::journal::Journal;
use super::{Engine, prompt};
use crate::learning::driver::Learning;
use crate::learning::evolution::{EvolutionConfig, EvolutionReport, RunFeedback};
use crate::learning::prompts::{PromptVersion, StyleGuides};
use crate::learning::{ExperimentId, PromptVersionId};
use crate::{LlmProvider, Outcome, Project, ProjectId, Result, Run, RunId, TrackedIssue};

/// The learning loop and what the engine renders with it.
#[derive(Clone)]
pub(super) struct LearningSetup {
    pub(super) learning: Learning,
    pub(super) slug: String,
    pub(super) global_style: Option<String>,
    pub(super) project_styles: HashMap<ProjectId, String>,
}

/// The prompt version a run (or a comparison candidate) uses, and the
/// experiment arm it stands for. Journaled under `prompt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct PromptPick {
    pub(super) version: PromptVersionId,
    #[serde(default)]
    pub(super) experiment: Option<(ExperimentId, String)>,
    /// The version itself, so a resumed run renders it even when the
    /// learning store is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) snapshot: Option<PromptVersion>,
}

/// The prompt pick recorded in the run's journal (the latest done step
/// whose output has one).
pub(super) fn recorded_prompt(journal: &Journal) -> Option<PromptPick> {
    journal.latest_field("prompt")
}

impl Engine {
    /// Picks the run's prompt version: the issue's sticky experiment arm or
    /// the active version. `None` without learning, or when learning fails
    /// (logged; the builder's template is used).
    pub(super) async fn pick_prompt(&self, run: &Run, project: &Project) -> Option<PromptPick> {
        let setup = self.inner.learning.as_ref()?;
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

    /// The prompt version a run rendered (for a comparison run, the
    /// winner's): its context's, else its journal's. `None` when learning
    /// was not configured or the run has not been provisioned yet.
    pub async fn prompt_version(&self, run_id: RunId) -> Result<Option<PromptVersionId>> {
        let run = self.inner.store.run(run_id).await?;
        if run.context.prompt_version.is_some() && run.context.compare.is_none() {
            return Ok(run.context.prompt_version);
        }
        let journal = Journal::new(self.inner.store.steps(run_id).await?);
        Ok(recorded_prompt(&journal).map(|p| p.version))
    }

    /// Renders the task prompt for `issue`: `pick`'s version with the style
    /// guides, or the builder's template. Untrusted issues are refused either
    /// way.
    pub(super) async fn render_prompt(
        &self,
        run: &Run,
        issue: &TrackedIssue,
        feedback: Option<&str>,
        pick: Option<&PromptPick>,
    ) -> Result<String> {
        if let (Some(setup), Some(pick)) = (&self.inner.learning, pick) {
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
        prompt::render(&self.inner.template, issue, feedback)
    }

    /// Scores `outcome` under the version the run used (and its experiment
    /// arm). Never fails: learning errors are logged.
    pub(super) async fn learn_outcome(&self, run: &Run, outcome: &Outcome, feedback: RunFeedback) {
        if self.inner.learning.is_none() {
            return;
        }
        match self.inner.store.steps(run.id).await {
            Ok(steps) => self.score_outcome(run, &Journal::new(steps), outcome, feedback).await,
            Err(e) => {
                warn!(run_id = %run.id, error = %e, "could not read the run's prompt version; outcome not scored")
            }
        }
    }

    /// [`Engine::learn_outcome`] with the run's journal at hand.
    pub(super) async fn score_outcome(&self, run: &Run, journal: &Journal, outcome: &Outcome, feedback: RunFeedback) {
        let Some(setup) = &self.inner.learning else { return };
        let Some(pick) = recorded_prompt(journal) else { return };
        if let Err(e) = setup.learning.record_outcome(outcome, pick.version, feedback, pick.experiment).await {
            warn!(run_id = %run.id, version = %pick.version, error = %e, "learning could not record the outcome");
        }
    }

    /// Runs the evolution workflow of the engine's prompt with `llm` (for an
    /// operator's scheduler; the workflow skips itself when it is not due).
    /// `None` when the engine has no learning loop.
    pub async fn evolve_due(&self, llm: &dyn LlmProvider, config: &EvolutionConfig) -> Result<Option<EvolutionReport>> {
        match &self.inner.learning {
            Some(setup) => setup.learning.evolve(llm, &setup.slug, config).await.map(Some),
            None => Ok(None),
        }
    }
}
