//! [`ApiAgent`]: the built-in agent that drives an LLM directly, with tools
//! that run inside the sandbox.
//!
//! The model talks through an [`LlmProvider`] (in production, one pointed at
//! the metering proxy with the run's token); its tools, `read_file`,
//! `write_file`, `edit`, `list`, `grep` and `run`, execute in the run's
//! sandbox through [`SandboxSession::exec`](paid_core::engine::SandboxSession::exec).
//! Paths are confined to the worktree (see the `paths` module). The loop
//! enforces a turn limit, a token budget and a wall-clock limit, and stops a
//! model that loops.

mod paths;
mod progress;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paid_core::{
    Agent, AgentContext, AgentExit, AgentOutcome, ChatRequest, ChatResponse, Error as CoreError, FailureClass,
    LlmProvider, Message, Role, Usage,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::debug;

use crate::classify;
use crate::prompt::{ApiSystemVars, PromptTemplates};
use progress::Progress;
use tools::Tools;

/// Limits and settings of the [`ApiAgent`] (serde; every field has a
/// default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The model used when the engine selected none. Default empty: the
    /// engine must select one.
    pub model: String,
    /// Model responses per iteration. Default 40.
    pub max_turns: u32,
    /// Tokens (all buckets of [`Usage`]) per iteration; past it the agent
    /// stops with [`paid_core::Error::BudgetExceeded`]. Default 2,000,000.
    pub max_tokens: u64,
    /// Wall-clock seconds per iteration; past it the agent stops with
    /// [`paid_core::Error::Timeout`]. Default 1,500 (under the engine's
    /// 1,800 s agent timeout).
    pub wall_time_secs: u64,
    /// Output tokens per model response. Default 8,192.
    pub max_output_tokens: u32,
    /// The same tool call this many times with no file change in between
    /// is a loop. Default 3.
    pub repeat_limit: u32,
    /// This many turns in a row without a file change is a loop. Default 15.
    pub idle_turns: u32,
    /// Seconds a tool may run (a `run` call may ask for more, up to 1,800).
    /// Default 300.
    pub tool_timeout_secs: u64,
    /// Characters of tool output returned to the model. Default 16,000.
    pub max_tool_output: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            model: String::new(),
            max_turns: 40,
            max_tokens: 2_000_000,
            wall_time_secs: 1_500,
            max_output_tokens: 8_192,
            repeat_limit: 3,
            idle_turns: 15,
            tool_timeout_secs: 300,
            max_tool_output: 16_000,
        }
    }
}

/// The built-in API-mode agent (kind `api` unless renamed).
///
/// Each iteration is one conversation: the engine's task prompt (with the
/// previous verify failures in it) as the user message, the rendered
/// [`PromptTemplates::api_system`] as the system prompt, and the tools.
/// It ends:
/// - [`AgentExit::Completed`] when the model answers without a tool call
///   (its text is the summary);
/// - [`AgentExit::Stuck`] when it loops (see [`ApiConfig::repeat_limit`] and
///   [`ApiConfig::idle_turns`]);
/// - [`AgentExit::Failed`] at the turn limit, or when the model call fails
///   (classified: rate limited, auth, quota, transient, permanent);
/// - `Err(BudgetExceeded)`, `Err(Timeout)` or `Err(Cancelled)` for the
///   token budget, the wall clock and cancellation.
///
/// A tool that fails (a path outside the worktree, an `edit` whose text
/// matches zero or several times, a failing command) answers the model with
/// `error: …` and the conversation goes on.
///
/// ```
/// # use std::sync::Arc;
/// # fn demo(provider: Arc<dyn paid_core::LlmProvider>) {
/// use paid_agents::{ApiAgent, ApiConfig};
/// use paid_core::Agent;
///
/// let agent = ApiAgent::new(provider, ApiConfig { max_turns: 25, ..ApiConfig::default() });
/// assert_eq!(agent.kind(), "api");
/// # }
/// ```
pub struct ApiAgent {
    kind: String,
    llm: Arc<dyn LlmProvider>,
    config: ApiConfig,
    templates: PromptTemplates,
}

impl std::fmt::Debug for ApiAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAgent")
            .field("kind", &self.kind)
            .field("llm", &self.llm.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ApiAgent {
    /// An agent of kind `api` driving `llm`.
    pub fn new(llm: Arc<dyn LlmProvider>, config: ApiConfig) -> Self {
        Self { kind: "api".into(), llm, config, templates: PromptTemplates::default() }
    }

    /// Registers under another kind (several API agents, each with its own
    /// provider or limits).
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Uses `templates` for the system prompt.
    pub fn with_templates(mut self, templates: PromptTemplates) -> Self {
        self.templates = templates;
        self
    }

    /// The limits.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    async fn complete(
        &self,
        ctx: &AgentContext<'_>,
        req: &ChatRequest,
        deadline: Instant,
    ) -> Result<ChatResponse, Stop> {
        let wall = Duration::from_secs(self.config.wall_time_secs);
        tokio::select! {
            _ = ctx.cancel.cancelled() => Err(Stop::Err(CoreError::Cancelled)),
            r = tokio::time::timeout_at(deadline, self.llm.complete(req)) => match r {
                Err(_) => Err(Stop::Err(CoreError::Timeout { what: format!("agent {}", self.kind), after: wall })),
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e @ (CoreError::Cancelled | CoreError::BudgetExceeded(_)))) => Err(Stop::Err(e)),
                Ok(Err(e)) => {
                    let text = e.to_string();
                    let mut class = classify::from_text(&text);
                    if class == FailureClass::Permanent && e.is_retryable() {
                        class = FailureClass::Transient;
                    }
                    Err(Stop::Exit(AgentExit::Failed { class, message: format!("model call failed: {text}") }))
                }
            },
        }
    }
}

/// How a turn ends the iteration early.
enum Stop {
    Exit(AgentExit),
    Err(CoreError),
}

#[async_trait]
impl Agent for ApiAgent {
    fn kind(&self) -> &str {
        &self.kind
    }

    async fn run(&self, ctx: AgentContext<'_>) -> paid_core::Result<AgentOutcome> {
        let cfg = &self.config;
        let model = ctx.model.filter(|m| !m.trim().is_empty()).unwrap_or(&cfg.model).to_string();
        if model.trim().is_empty() {
            return Err(CoreError::InvalidInput {
                what: format!("agent {}.model", self.kind),
                message: "no model was selected and ApiConfig::model is empty".into(),
            });
        }
        let system = self.templates.render_api_system(&ApiSystemVars {
            workdir: &ctx.sandbox.handle().mount_at,
            verify: &ctx.project.verify,
            max_turns: cfg.max_turns,
        })?;
        let deadline = Instant::now() + Duration::from_secs(cfg.wall_time_secs);
        let tools = Tools {
            session: ctx.sandbox,
            cancel: &ctx.cancel,
            timeout: Duration::from_secs(cfg.tool_timeout_secs.max(1)),
            max_output: cfg.max_tool_output.max(100),
        };
        let mut req = ChatRequest {
            model,
            system: Some(system),
            messages: vec![Message::user(ctx.prompt)],
            tools: tools::specs(),
            max_tokens: cfg.max_output_tokens,
        };
        let mut usage = Usage::default();
        let mut progress = Progress::new(cfg.repeat_limit, cfg.idle_turns);
        let mut summary = String::new();
        let done = |exit: AgentExit, summary: &str, usage: Usage| {
            Ok(AgentOutcome { exit, summary: summary.trim().to_string(), usage: Some(usage), cost_micros: None })
        };
        for turn in 1..=cfg.max_turns {
            let resp = match self.complete(&ctx, &req, deadline).await {
                Ok(resp) => resp,
                Err(Stop::Exit(exit)) => return done(exit, &summary, usage),
                Err(Stop::Err(e)) => return Err(e),
            };
            usage += resp.usage;
            debug!(run_id = %ctx.run_id, turn, calls = resp.tool_calls.len(), tokens = usage.total(), "api agent turn");
            if usage.total() > cfg.max_tokens {
                return Err(CoreError::BudgetExceeded(format!(
                    "agent {} used {} tokens in iteration {}, over its budget of {}",
                    self.kind,
                    usage.total(),
                    ctx.iteration,
                    cfg.max_tokens
                )));
            }
            if !resp.content.trim().is_empty() {
                summary = resp.content.clone();
            }
            if resp.tool_calls.is_empty() {
                return done(AgentExit::Completed, &summary, usage);
            }
            req.messages.push(Message {
                role: Role::Assistant,
                content: resp.content,
                tool_calls: resp.tool_calls.clone(),
                tool_call_id: None,
            });
            let mut changed = false;
            for call in &resp.tool_calls {
                if let Some(reason) = progress.call(call) {
                    return done(AgentExit::Stuck { reason }, &summary, usage);
                }
                let result = tools.execute(call).await?;
                changed |= result.changed;
                req.messages.push(Message {
                    role: Role::Tool,
                    content: result.text,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call.id.clone()),
                });
            }
            if let Some(reason) = progress.turn_end(changed) {
                return done(AgentExit::Stuck { reason }, &summary, usage);
            }
        }
        done(
            AgentExit::Failed {
                class: FailureClass::Permanent,
                message: format!("stopped at the turn limit ({}) before the model finished", cfg.max_turns),
            },
            &summary,
            usage,
        )
    }
}
