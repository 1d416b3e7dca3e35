//! Per-run proxy credentials: the [`RunCredentials`] port.
//!
//! Sandboxes never hold provider keys. Before each agent iteration the engine
//! asks for the run's proxy endpoint and token, hands them to the agent, and
//! revokes the token at cleanup. The metering proxy (`paid-llm`) implements
//! this port; it also tells the engine when a run hit its budget.

use async_trait::async_trait;

use crate::{ProjectId, ProxyEndpoint, Result, RunId};

/// Issues and revokes the per-run token a sandbox presents to the proxy.
#[async_trait]
pub trait RunCredentials: Send + Sync + 'static {
    /// The run's endpoint and a token valid while the run is active, for at
    /// most `valid_for` (the time limit of the step that hands it to an
    /// agent): a token that leaks from a sandbox stops working with it.
    /// Calling it again for the same run returns a fresh token.
    async fn issue(
        &self,
        run_id: RunId,
        project_id: ProjectId,
        valid_for: std::time::Duration,
    ) -> Result<ProxyEndpoint>;
    /// Revokes the run's token (idempotent).
    async fn revoke(&self, run_id: RunId) -> Result<()>;
    /// `Some(reason)` once a budget refused one of the run's requests.
    async fn budget_exceeded(&self, run_id: RunId) -> Result<Option<String>>;
}
