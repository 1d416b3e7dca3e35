//! What the learning loop stores: the [`LearningStore`] port.
//!
//! An opt-in capability, apart from [`Store`](crate::Store): a backend that
//! does not learn keeps compiling, and one that does implements both on the
//! same database. Implemented by `paid-store-sqlite` and by
//! `paid_core::testing::learning::MemoryLearningStore`; every implementation
//! passes `paid_core::testing::learning` (feature `testing`).

use async_trait::async_trait;

use crate::Result;
use crate::learning::evolution::RunScore;
use crate::learning::experiment::{ArmSample, Assignment, Experiment};
use crate::learning::prompts::{Prompt, PromptVersion};
use crate::learning::{ExperimentId, PromptVersionId};

/// Which experiments to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExperimentFilter {
    /// Only this subject (a prompt slug, `model`, ...).
    pub subject: Option<String>,
    /// Only running ones (status `running` or `awaiting_approval`).
    pub active_only: bool,
}

/// Prompts and their immutable versions, experiments, assignments, arm
/// samples and scored runs.
///
/// The contract, pinned by `paid_core::testing::learning`:
///
/// - Calls naming a missing prompt, version or experiment fail with
///   [`Error::NotFound`](crate::Error::NotFound); lists of a missing parent
///   are empty.
/// - `put_prompt` and `put_experiment` insert or replace the whole value.
/// - Versions are immutable: `create_version` fails with
///   [`Error::AlreadyExists`](crate::Error::AlreadyExists) on a known id or
///   a taken `(slug, version)`, and with `NotFound` when the prompt or the
///   parent version does not exist.
/// - `assign` is first-write-wins per `(experiment, issue_key)`: it returns
///   the stored assignment, which is the given one only if there was none.
/// - `record_sample` and `record_run_score` keep one record per run
///   (per experiment for samples), replaced on record.
/// - Lists are oldest first, ties in insertion order; `versions` by number.
#[async_trait]
pub trait LearningStore: Send + Sync + 'static {
    /// Inserts or replaces a prompt.
    async fn put_prompt(&self, prompt: &Prompt) -> Result<()>;
    /// Reads a prompt.
    async fn prompt(&self, slug: &str) -> Result<Prompt>;
    /// All prompts, oldest first.
    async fn prompts(&self) -> Result<Vec<Prompt>>;

    /// Stores a new immutable version.
    async fn create_version(&self, version: &PromptVersion) -> Result<()>;
    /// Reads a version.
    async fn version(&self, id: PromptVersionId) -> Result<PromptVersion>;
    /// A prompt's versions, by number.
    async fn versions(&self, slug: &str) -> Result<Vec<PromptVersion>>;

    /// Inserts or replaces an experiment.
    async fn put_experiment(&self, experiment: &Experiment) -> Result<()>;
    /// Reads an experiment.
    async fn experiment(&self, id: ExperimentId) -> Result<Experiment>;
    /// Experiments matching the filter, oldest first.
    async fn experiments(&self, filter: &ExperimentFilter) -> Result<Vec<Experiment>>;

    /// Stores the issue's assignment unless it has one; returns the stored one.
    async fn assign(&self, assignment: &Assignment) -> Result<Assignment>;
    /// The issue's assignment, if any.
    async fn assignment(&self, experiment: ExperimentId, issue_key: &str) -> Result<Option<Assignment>>;

    /// Records (replaces) a run's sample in an experiment.
    async fn record_sample(&self, sample: &ArmSample) -> Result<()>;
    /// An experiment's samples, oldest first.
    async fn samples(&self, experiment: ExperimentId) -> Result<Vec<ArmSample>>;

    /// Records (replaces) a run's score with its feedback.
    async fn record_run_score(&self, score: &RunScore) -> Result<()>;
    /// The scored runs of a prompt version, oldest first.
    async fn run_scores(&self, version: PromptVersionId) -> Result<Vec<RunScore>>;
}
