//! [`CommandAgent`]: a shell command run inside the sandbox.

use std::collections::BTreeMap;

use async_trait::async_trait;
use paid_core::{
    Agent, AgentContext, AgentExit, AgentOutcome, Error as CoreError, ExecExit, ExecRequest, FailureClass,
};
use secrecy::ExposeSecret;

use crate::Error;

/// Longest summary taken from the command's output.
const SUMMARY_CHARS: usize = 4_000;

/// Runs `sh -c <script>` in the run's sandbox, in the worktree.
///
/// The command sees:
/// - `PAID_PROMPT`: the rendered task prompt;
/// - `PAID_MODEL`: the selected model (may be empty);
/// - `PAID_ITERATION`: 1 for the first attempt, more after failed verification;
/// - `PAID_FEEDBACK`: the verify failure digest of the previous iteration, if any;
/// - `PAID_PROXY_URL` and `PAID_RUN_TOKEN` when a metering proxy is configured;
/// - any extra variables given with [`CommandAgent::env`].
///
/// Exit code 0 means completed; the last lines of stdout become the summary.
#[derive(Debug, Clone)]
pub struct CommandAgent {
    kind: String,
    script: String,
    env: BTreeMap<String, String>,
}

impl CommandAgent {
    /// An agent registered as `kind` that runs `script`.
    pub fn new(kind: impl Into<String>, script: impl Into<String>) -> Result<Self, Error> {
        let (kind, script) = (kind.into(), script.into());
        if kind.trim().is_empty() {
            return Err(Error::Config { field: "kind", message: "must not be empty".into() });
        }
        if script.trim().is_empty() {
            return Err(Error::Config { field: "script", message: "must not be empty".into() });
        }
        Ok(Self { kind, script, env: BTreeMap::new() })
    }

    /// Adds an environment variable. Never pass secrets: they would enter the sandbox.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }
}

#[async_trait]
impl Agent for CommandAgent {
    fn kind(&self) -> &str {
        &self.kind
    }

    async fn run(&self, ctx: AgentContext<'_>) -> paid_core::Result<AgentOutcome> {
        let mut req = ExecRequest::shell(self.script.clone()).with_cancel(ctx.cancel.clone());
        req.env = self.env.clone();
        req.env.insert("PAID_PROMPT".into(), ctx.prompt.to_string());
        req.env.insert("PAID_MODEL".into(), ctx.model.unwrap_or_default().to_string());
        req.env.insert("PAID_ITERATION".into(), ctx.iteration.to_string());
        if let Some(feedback) = ctx.feedback {
            req.env.insert("PAID_FEEDBACK".into(), feedback.to_string());
        }
        if let Some(proxy) = ctx.proxy {
            req.env.insert("PAID_PROXY_URL".into(), proxy.base_url.clone());
            req.env.insert("PAID_RUN_TOKEN".into(), proxy.token.expose_secret().to_string());
        }
        let out = ctx.sandbox.exec(req).await?;
        let summary = summary(&out.stdout);
        let exit = match out.exit {
            ExecExit::Code(0) => AgentExit::Completed,
            ExecExit::Code(code) => AgentExit::Failed {
                class: FailureClass::Permanent,
                message: format!("`{}` exited with {code}: {}", self.kind, last_line(&out.stderr)),
            },
            ExecExit::OutOfMemory => AgentExit::Failed {
                class: FailureClass::Permanent,
                message: format!("`{}` was killed: out of memory", self.kind),
            },
            ExecExit::Cancelled | ExecExit::TimedOut => return Err(CoreError::Cancelled),
        };
        Ok(AgentOutcome { exit, summary, usage: None, cost_micros: None })
    }
}

fn summary(stdout: &str) -> String {
    let text = stdout.trim();
    let start = text.char_indices().rev().nth(SUMMARY_CHARS).map(|(i, _)| i).unwrap_or(0);
    text[start..].trim().to_string()
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_settings_are_rejected_with_the_field_named() {
        let err = CommandAgent::new("x", "  ").unwrap_err();
        assert_eq!(err.to_string(), "invalid agent configuration script: must not be empty");
        assert!(CommandAgent::new("", "true").is_err());
    }

    #[test]
    fn summary_keeps_the_tail() {
        let long = "a".repeat(SUMMARY_CHARS + 10) + "\nDONE";
        let s = summary(&long);
        assert!(s.ends_with("DONE"));
        assert!(s.chars().count() <= SUMMARY_CHARS + 1);
        assert_eq!(summary("  fixed it \n"), "fixed it");
    }
}
