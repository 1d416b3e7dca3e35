//! [`CliAgent`]: runs any [`CliPlugin`] inside the run's sandbox.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paid_core::engine::ExecOutput;
use paid_core::{
    Agent, AgentContext, AgentExit, AgentOutcome, Error as CoreError, ExecExit, ExecRequest, FailureClass,
};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::classify;
use crate::plugin::{CliOutput, CliPlugin, Invocation, ProxyAccess, ProxyRoutes};
use crate::prompt::{InstructionFile, InstructionVars, PromptTemplates};
use crate::sandbox_io::{SCRATCH, write_text};

/// Where the prompt file is written inside the sandbox (a tmpfs, so it never
/// reaches the commit).
pub const PROMPT_FILE: &str = "/tmp/paid/prompt.md";

/// How long restoring the instruction file may take after the CLI ended.
const RESTORE_LIMIT: Duration = Duration::from_secs(30);

/// An [`Agent`] that runs a [`CliPlugin`]'s command in the sandbox.
///
/// One iteration:
/// 1. writes the task prompt to [`PROMPT_FILE`] (through environment
///    variables: the sandbox exec has no stdin);
/// 2. writes the plugin's instruction file (`CLAUDE.md`, ...) rendered from
///    [`PromptTemplates::instructions`] into the worktree;
/// 3. runs the plugin's command in the worktree with the plugin's
///    environment, the proxy environment (when the engine has a proxy) and
///    `PAID_MODEL`, `PAID_ITERATION`, `PAID_PROMPT_FILE`;
/// 4. restores the instruction file, so it never reaches the commit;
/// 5. parses the output into an [`AgentOutcome`]: a failure the CLI reported
///    (even with exit code 0) or a non-zero exit, classified, is
///    [`AgentExit::Failed`]; otherwise [`AgentExit::Completed`] with the
///    CLI's summary, usage and cost.
///
/// ```
/// use std::sync::Arc;
/// use paid_agents::{CliAgent, builtin::ClaudeCode};
/// use paid_core::Agent;
///
/// let agent = CliAgent::new(Arc::new(ClaudeCode));
/// assert_eq!(agent.kind(), "claude-code");
/// ```
#[derive(Debug, Clone)]
pub struct CliAgent {
    plugin: Arc<dyn CliPlugin>,
    templates: PromptTemplates,
    routes: ProxyRoutes,
    instructions: bool,
}

impl CliAgent {
    /// An agent running `plugin`, with the default templates and proxy
    /// routes.
    pub fn new(plugin: Arc<dyn CliPlugin>) -> Self {
        Self { plugin, templates: PromptTemplates::default(), routes: ProxyRoutes::default(), instructions: true }
    }

    /// Uses `templates` for the instruction file.
    pub fn with_templates(mut self, templates: PromptTemplates) -> Self {
        self.templates = templates;
        self
    }

    /// Uses the proxy's `routes`.
    pub fn with_routes(mut self, routes: ProxyRoutes) -> Self {
        self.routes = routes;
        self
    }

    /// Writes no instruction file.
    pub fn without_instructions(mut self) -> Self {
        self.instructions = false;
        self
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<dyn CliPlugin> {
        &self.plugin
    }

    async fn install_instructions(&self, ctx: &AgentContext<'_>) -> paid_core::Result<Option<InstructionFile>> {
        let Some(name) = self.plugin.instruction_file().filter(|_| self.instructions) else { return Ok(None) };
        let repo = ctx.project.repo.to_string();
        let content = self.templates.render_instructions(&InstructionVars {
            agent: self.plugin.kind(),
            repo: &repo,
            verify: &ctx.project.verify,
            iteration: ctx.iteration,
        })?;
        InstructionFile::install(ctx.sandbox, &ctx.cancel, name, &content).await
    }
}

#[async_trait]
impl Agent for CliAgent {
    fn kind(&self) -> &str {
        self.plugin.kind()
    }

    fn executables(&self) -> Vec<String> {
        self.plugin.executable().map(str::to_string).into_iter().collect()
    }

    async fn run(&self, ctx: AgentContext<'_>) -> paid_core::Result<AgentOutcome> {
        write_text(ctx.sandbox, &ctx.cancel, PROMPT_FILE, ctx.prompt, "the prompt").await?;
        let installed = self.install_instructions(&ctx).await?;
        let inv = Invocation {
            prompt_file: PROMPT_FILE,
            model: ctx.model,
            instruction_file: installed.as_ref().map(InstructionFile::name),
            iteration: ctx.iteration,
        };
        let script = self.plugin.command(&inv)?;
        let mut req = ExecRequest::shell(script).with_cancel(ctx.cancel.clone());
        req.env = self.plugin.env();
        req.env.insert("PAID_MODEL".into(), ctx.model.unwrap_or_default().to_string());
        req.env.insert("PAID_ITERATION".into(), ctx.iteration.to_string());
        req.env.insert("PAID_PROMPT_FILE".into(), PROMPT_FILE.into());
        req.env.insert("PAID_SCRATCH".into(), SCRATCH.into());
        if let Some(proxy) = ctx.proxy {
            let access =
                ProxyAccess { base_url: &proxy.base_url, token: proxy.token.expose_secret(), routes: &self.routes };
            req.env.extend(self.plugin.proxy_env(&access));
        }
        let result = ctx.sandbox.exec(req).await;
        if let Some(file) = &installed {
            // Restore even after cancellation: the commit must not carry it.
            let fresh = CancellationToken::new();
            let restore = file.restore(ctx.sandbox, &fresh);
            match tokio::time::timeout(RESTORE_LIMIT, restore).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(run_id = %ctx.run_id, file = file.name(), error = %e, "could not restore the instruction file")
                }
                Err(_) => warn!(run_id = %ctx.run_id, file = file.name(), "restoring the instruction file timed out"),
            }
        }
        outcome(self.plugin.as_ref(), &result?)
    }
}

/// Turns a finished CLI exec into the agent's outcome (see [`CliAgent`]).
pub fn outcome(plugin: &dyn CliPlugin, out: &ExecOutput) -> paid_core::Result<AgentOutcome> {
    let cli = CliOutput { stdout: &out.stdout, stderr: &out.stderr, exit: out.exit };
    let report = plugin.parse(&cli);
    let kind = plugin.kind();
    let exit = match (report.failure, out.exit) {
        (_, ExecExit::Cancelled | ExecExit::TimedOut) => return Err(CoreError::Cancelled),
        (Some(f), _) => AgentExit::Failed { class: f.class, message: format!("{kind}: {}", f.message) },
        (None, ExecExit::Code(0)) => AgentExit::Completed,
        (None, ExecExit::OutOfMemory) => {
            AgentExit::Failed { class: FailureClass::Permanent, message: format!("{kind} was killed: out of memory") }
        }
        (None, ExecExit::Code(code)) => {
            let text = format!("{}\n{}", out.stdout, out.stderr);
            let tail = classify::excerpt(&text, 2_000);
            let shown = classify::excerpt(&out.stderr, 500);
            let shown = if shown.is_empty() { classify::excerpt(&out.stdout, 500) } else { shown };
            AgentExit::Failed { class: plugin.classify(&tail), message: format!("{kind} exited with {code}: {shown}") }
        }
    };
    Ok(AgentOutcome {
        exit,
        summary: report.summary.unwrap_or_default(),
        usage: report.usage,
        cost_micros: report.cost_micros,
    })
}
