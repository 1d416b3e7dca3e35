use serde::{Deserialize, Serialize};

use crate::{RunId, Timestamp};

/// A model a selector may choose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCandidate {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Context window in tokens, if known.
    pub context_window: Option<u64>,
    /// Blended USD per million tokens, if known.
    pub usd_per_mtok: Option<f64>,
}

/// Which model a run uses, and why. Stored per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDecision {
    /// The run.
    pub run_id: RunId,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Which selector decided (`fixed`, `rules`, `meta_agent`, ...).
    pub selector: String,
    /// Why.
    pub reasoning: String,
    /// What it chose from.
    pub candidates: Vec<ModelCandidate>,
    /// Budget in micro-USD, if any.
    pub budget_micros: Option<i64>,
    /// Estimated task complexity in [0, 1], if estimated.
    pub complexity: Option<f64>,
    /// When.
    pub at: Timestamp,
}
