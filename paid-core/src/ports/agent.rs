//! Coding agents: the [`Agent`] port.

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::engine::SandboxSession;
use crate::{Project, Result, RunId, TrackedIssue, Usage};

/// Where the agent reaches LLMs: the metering proxy, with the run's token.
#[derive(Debug, Clone)]
pub struct ProxyEndpoint {
    /// Base URL reachable from inside the sandbox.
    pub base_url: String,
    /// The per-run token (the only credential a sandbox sees).
    pub token: SecretString,
}

/// Everything an agent gets for one iteration.
#[derive(Debug)]
pub struct AgentContext<'a> {
    /// The run.
    pub run_id: RunId,
    /// The project.
    pub project: &'a Project,
    /// The issue. Only issues from trusted authors reach an agent.
    pub issue: &'a TrackedIssue,
    /// The rendered task prompt.
    pub prompt: &'a str,
    /// The selected model, if any.
    pub model: Option<&'a str>,
    /// Run commands in the run's sandbox; output goes to the run log.
    pub sandbox: &'a SandboxSession,
    /// The LLM proxy, when one is configured.
    pub proxy: Option<&'a ProxyEndpoint>,
    /// Iteration number, from 1.
    pub iteration: u32,
    /// A digest of the previous iteration's verify failures, if any.
    pub feedback: Option<&'a str>,
    /// Cancelled when the run is cancelled or times out.
    pub cancel: CancellationToken,
}

/// How an agent failed, for retry and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Provider rate limit.
    RateLimited,
    /// Bad credentials.
    Auth,
    /// Out of quota or budget.
    Quota,
    /// Worth retrying.
    Transient,
    /// Not worth retrying.
    Permanent,
}

/// How the agent ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AgentExit {
    /// It finished its work.
    Completed,
    /// It failed.
    Failed {
        /// Classification.
        class: FailureClass,
        /// Message.
        message: String,
    },
    /// It looped without progress.
    Stuck {
        /// Why it was judged stuck.
        reason: String,
    },
}

/// What an agent reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentOutcome {
    /// How it ended.
    pub exit: AgentExit,
    /// A short summary of what it did.
    pub summary: String,
    /// Tokens it reported using, if it reports them.
    pub usage: Option<Usage>,
    /// Cost in micro-USD it reported, if any.
    pub cost_micros: Option<i64>,
}

/// A coding agent that edits the worktree through the sandbox.
#[async_trait]
pub trait Agent: Send + Sync + 'static {
    /// The kind name projects refer to (`command`, `claude-code`, ...).
    fn kind(&self) -> &str;
    /// Programs this agent runs that must be on the sandbox's `PATH` (the
    /// CLI it drives, e.g. `claude`). `paid doctor` checks every configured
    /// image for them. Default: none.
    fn executables(&self) -> Vec<String> {
        Vec::new()
    }
    /// Works on the task once.
    async fn run(&self, ctx: AgentContext<'_>) -> Result<AgentOutcome>;
}
