//! [`NullLearningStore`] and [`NullSecretStore`]: the opt-in store ports,
//! storing nothing.

use async_trait::async_trait;

use crate::learning::evolution::RunScore;
use crate::learning::experiment::{ArmSample, Assignment, Experiment};
use crate::learning::prompts::{Prompt, PromptVersion};
use crate::learning::{ExperimentId, PromptVersionId};
use crate::ports::learning::{ExperimentFilter, LearningStore};
use crate::{Error, PutSecret, Result, SecretMeta, SecretRecord, SecretStore};

fn not_found(entity: &'static str, id: impl ToString) -> Error {
    Error::NotFound { entity, id: id.to_string() }
}

/// A [`LearningStore`] that stores nothing: writes succeed (`assign`
/// answers with the assignment it was given, as a first write would), reads
/// find nothing.
///
/// The negative control of the learning-store conformance suite.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullLearningStore;

#[async_trait]
impl LearningStore for NullLearningStore {
    async fn put_prompt(&self, _prompt: &Prompt) -> Result<()> {
        Ok(())
    }
    async fn prompt(&self, slug: &str) -> Result<Prompt> {
        Err(not_found("prompt", slug))
    }
    async fn prompts(&self) -> Result<Vec<Prompt>> {
        Ok(Vec::new())
    }
    async fn create_version(&self, _version: &PromptVersion) -> Result<()> {
        Ok(())
    }
    async fn version(&self, id: PromptVersionId) -> Result<PromptVersion> {
        Err(not_found("prompt version", id))
    }
    async fn versions(&self, _slug: &str) -> Result<Vec<PromptVersion>> {
        Ok(Vec::new())
    }
    async fn put_experiment(&self, _experiment: &Experiment) -> Result<()> {
        Ok(())
    }
    async fn experiment(&self, id: ExperimentId) -> Result<Experiment> {
        Err(not_found("experiment", id))
    }
    async fn experiments(&self, _filter: &ExperimentFilter) -> Result<Vec<Experiment>> {
        Ok(Vec::new())
    }
    async fn assign(&self, assignment: &Assignment) -> Result<Assignment> {
        Ok(assignment.clone())
    }
    async fn assignment(&self, _experiment: ExperimentId, _issue_key: &str) -> Result<Option<Assignment>> {
        Ok(None)
    }
    async fn record_sample(&self, _sample: &ArmSample) -> Result<()> {
        Ok(())
    }
    async fn samples(&self, _experiment: ExperimentId) -> Result<Vec<ArmSample>> {
        Ok(Vec::new())
    }
    async fn record_run_score(&self, _score: &RunScore) -> Result<()> {
        Ok(())
    }
    async fn run_scores(&self, _version: PromptVersionId) -> Result<Vec<RunScore>> {
        Ok(Vec::new())
    }
}

/// A [`SecretStore`] that stores nothing: every put "writes" version 1,
/// every delete "deletes", and nothing is ever there to read or list.
///
/// The negative control of the secret-store conformance suite.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSecretStore;

#[async_trait]
impl SecretStore for NullSecretStore {
    async fn put_secret(&self, _put: &PutSecret<'_>) -> Result<Option<u64>> {
        Ok(Some(1))
    }
    async fn get_secret(&self, _name: &str) -> Result<Option<SecretRecord>> {
        Ok(None)
    }
    async fn list_secrets(&self) -> Result<Vec<SecretMeta>> {
        Ok(Vec::new())
    }
    async fn delete_secret(&self, _name: &str) -> Result<bool> {
        Ok(true)
    }
}
