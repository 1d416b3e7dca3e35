//! The proxy as the engine's [`RunCredentials`] port.

use async_trait::async_trait;
use paid_core::{ProjectId, ProxyEndpoint, RunCredentials, RunId};

use super::Proxy;
use super::auth::RunLimits;

/// Hands each run a proxy token (issued per agent iteration, expiring with
/// the step's time limit, revoked at cleanup) and reports the proxy's budget verdict to the engine, which then
/// ends the run as `budget_exceeded`.
///
/// `sandbox_url` is the proxy's base URL as seen from inside a sandbox
/// (with Paid's egress control `http://127.0.0.1:3128`, the relay on the
/// sandbox's own loopback; otherwise an address of the proxy's).
#[derive(Debug, Clone)]
pub struct ProxyCredentials {
    proxy: Proxy,
    sandbox_url: String,
}

impl ProxyCredentials {
    /// Credentials for `proxy`, reached from sandboxes at `sandbox_url`.
    pub fn new(proxy: Proxy, sandbox_url: impl Into<String>) -> Self {
        Self { proxy, sandbox_url: sandbox_url.into() }
    }
}

#[async_trait]
impl RunCredentials for ProxyCredentials {
    async fn issue(
        &self,
        run_id: RunId,
        project_id: ProjectId,
        valid_for: std::time::Duration,
    ) -> paid_core::Result<ProxyEndpoint> {
        let valid_for = chrono::Duration::from_std(valid_for).unwrap_or(chrono::Duration::MAX);
        let expires_at = self.proxy.shared.clock.now().checked_add_signed(valid_for);
        let token = self.proxy.issue_token_with(run_id, project_id, expires_at, RunLimits::default());
        Ok(self.proxy.endpoint(&self.sandbox_url, &token))
    }

    async fn revoke(&self, run_id: RunId) -> paid_core::Result<()> {
        self.proxy.revoke(run_id);
        Ok(())
    }

    async fn budget_exceeded(&self, run_id: RunId) -> paid_core::Result<Option<String>> {
        Ok(self.proxy.budget_breach(run_id).map(|b| b.to_string()))
    }
}
