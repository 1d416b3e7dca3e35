//! Choosing a model: the [`ModelSelector`] port.

use async_trait::async_trait;

use crate::{ModelCandidate, ModelDecision, Result, RunId, Timestamp};

/// What a selector decides about.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionRequest {
    /// The run.
    pub run_id: RunId,
    /// Issue title.
    pub title: String,
    /// Issue labels.
    pub labels: Vec<String>,
    /// Models to choose from.
    pub candidates: Vec<ModelCandidate>,
    /// Budget in micro-USD, if any.
    pub budget_micros: Option<i64>,
    /// Now.
    pub at: Timestamp,
}

/// Chooses the model for a run.
#[async_trait]
pub trait ModelSelector: Send + Sync + 'static {
    /// Decides.
    async fn select(&self, req: &SelectionRequest) -> Result<ModelDecision>;
}

/// Always picks one configured model (rule 4 of the design: the default).
#[derive(Debug, Clone)]
pub struct FixedSelector {
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
}

#[async_trait]
impl ModelSelector for FixedSelector {
    async fn select(&self, req: &SelectionRequest) -> Result<ModelDecision> {
        Ok(ModelDecision {
            run_id: req.run_id,
            provider: self.provider.clone(),
            model: self.model.clone(),
            selector: "fixed".into(),
            reasoning: "configured default model".into(),
            candidates: req.candidates.clone(),
            budget_micros: req.budget_micros,
            complexity: None,
            at: req.at,
        })
    }
}
