//! Codex: `codex exec --json`.

use std::collections::BTreeMap;

use paid_core::Usage;

use super::json::{self, model_flag, num, prompt_word, text};
use crate::Error;
use crate::plugin::{CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess};

/// [Codex CLI](https://github.com/openai/codex) in exec mode, printing JSON
/// Lines.
///
/// - Command: `codex exec --json --skip-git-repo-check
///   --dangerously-bypass-approvals-and-sandbox [-m M] "<prompt>"` (Paid's
///   container is the sandbox).
/// - Proxy: `OPENAI_BASE_URL`, with the run token as `OPENAI_API_KEY` and
///   `CODEX_API_KEY`.
/// - Reads `AGENTS.md`.
/// - Output: `item.completed` items of type `agent_message` carry the text;
///   `turn.completed` carries `usage` (`input_tokens` including
///   `cached_input_tokens`, `output_tokens` including any
///   `reasoning_output_tokens`); `turn.failed` and `error` carry failures.
///   Codex reports no cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Codex;

impl CliPlugin for Codex {
    fn kind(&self) -> &str {
        "codex"
    }

    fn executable(&self) -> Option<&str> {
        Some("codex")
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        Ok(format!(
            "codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox{} {}",
            model_flag("-m", inv.model),
            prompt_word(inv.prompt_file)
        ))
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("OPENAI_BASE_URL".into(), proxy.openai_url()),
            ("OPENAI_API_KEY".into(), proxy.token.to_string()),
            ("CODEX_API_KEY".into(), proxy.token.to_string()),
        ])
    }

    fn instruction_file(&self) -> Option<&str> {
        Some("AGENTS.md")
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let mut report = CliReport::default();
        let mut usage: Option<Usage> = None;
        let mut last_message: Option<String> = None;
        let mut pending_error: Option<String> = None;
        for event in json::objects(out.stdout) {
            match text(&event, "/type") {
                Some("item.completed") if text(&event, "/item/type") == Some("agent_message") => {
                    last_message = text(&event, "/item/text").map(str::to_string);
                }
                Some("turn.completed") => {
                    let u = event.get("usage").cloned().unwrap_or_default();
                    let input = num(&u, "/input_tokens");
                    let cached = num(&u, "/cached_input_tokens");
                    let output = num(&u, "/output_tokens");
                    let reasoning = num(&u, "/reasoning_output_tokens");
                    *usage.get_or_insert_with(Usage::default) += Usage {
                        input: input.saturating_sub(cached),
                        cache_read: cached.min(input),
                        cache_write: 0,
                        output: output.saturating_sub(reasoning),
                        reasoning: reasoning.min(output),
                    };
                    pending_error = None;
                }
                Some("turn.failed") => {
                    let message = text(&event, "/error/message").unwrap_or("the turn failed");
                    report.failure = Some(json::failure(message, None));
                }
                Some("error") => pending_error = text(&event, "/message").map(str::to_string),
                _ => {}
            }
        }
        if report.failure.is_none()
            && let Some(message) = pending_error
        {
            report.failure = Some(json::failure(&message, None));
        }
        report.usage = usage;
        report.summary = last_message.as_deref().and_then(json::summary);
        report
    }
}
