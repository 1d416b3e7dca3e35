//! `/api/v1/prompts` and `/api/v1/experiments`.

use paid_core::learning::experiment::ArmSample;
use paid_core::learning::experiment::Experiment;
use paid_core::learning::prompts::{Prompt, PromptVersion};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/prompts/{slug}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptDetail {
    /// The prompt.
    pub prompt: Prompt,
    /// Its versions.
    pub versions: Vec<PromptVersion>,
}

/// `GET /api/v1/experiments` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentsQuery {
    /// Only experiments on this subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Only running ones.
    #[serde(default)]
    pub active: bool,
}

/// `GET /api/v1/experiments/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDetail {
    /// The experiment.
    pub experiment: Experiment,
    /// Its samples.
    pub samples: Vec<ArmSample>,
}
