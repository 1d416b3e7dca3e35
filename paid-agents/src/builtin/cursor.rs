//! Cursor agent: `cursor-agent -p --output-format stream-json`.

use std::collections::BTreeMap;

use paid_core::Usage;

use super::json::{self, model_flag, num, prompt_word, text};
use crate::Error;
use crate::plugin::{CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess};

/// [Cursor's agent CLI](https://cursor.com/docs/cli) in print mode,
/// streaming JSON events.
///
/// - Command: `cursor-agent -p --output-format stream-json --force
///   [--model M] "<prompt>"`.
/// - Proxy: Cursor's CLI talks to Cursor's own service, not to a provider
///   API, so the proxy must forward that service for it; the run token is
///   its `CURSOR_API_KEY`. There is no provider base URL to set.
/// - Reads `AGENTS.md`.
/// - Output: Claude-style events; the final `result` event carries
///   `result`, `is_error` and `subtype`, and in recent versions `usage`
///   (`inputTokens`, `outputTokens`, `cacheReadTokens`,
///   `cacheWriteTokens`). No cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor;

impl CliPlugin for Cursor {
    fn kind(&self) -> &str {
        "cursor"
    }

    fn executable(&self) -> Option<&str> {
        Some("cursor-agent")
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        Ok(format!(
            "cursor-agent -p --output-format stream-json --force{} {}",
            model_flag("--model", inv.model),
            prompt_word(inv.prompt_file)
        ))
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        BTreeMap::from([("CURSOR_API_KEY".into(), proxy.token.to_string())])
    }

    fn instruction_file(&self) -> Option<&str> {
        Some("AGENTS.md")
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let mut report = CliReport::default();
        let mut last_text: Option<String> = None;
        for event in json::objects(out.stdout) {
            match text(&event, "/type") {
                Some("assistant") => {
                    let said: String = event
                        .pointer("/message/content")
                        .and_then(|c| c.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(|b| text(b, "/text"))
                        .collect();
                    if !said.trim().is_empty() {
                        last_text = Some(said);
                    }
                }
                Some("result") => {
                    let result = text(&event, "/result").unwrap_or_default();
                    let is_error = event.pointer("/is_error").and_then(|v| v.as_bool()).unwrap_or(false);
                    if let Some(u) = event.get("usage").filter(|u| u.is_object()) {
                        report.usage = Some(Usage {
                            input: num(u, "/inputTokens"),
                            cache_read: num(u, "/cacheReadTokens"),
                            cache_write: num(u, "/cacheWriteTokens"),
                            output: num(u, "/outputTokens"),
                            reasoning: 0,
                        });
                    }
                    if is_error || text(&event, "/subtype").is_some_and(|s| s.starts_with("error")) {
                        let message = if result.is_empty() { "cursor-agent reported an error" } else { result };
                        report.failure = Some(json::failure(message, None));
                    } else {
                        report.summary = json::summary(result);
                    }
                }
                _ => {}
            }
        }
        if report.summary.is_none() && report.failure.is_none() {
            report.summary = last_text.as_deref().and_then(json::summary);
        }
        // Before any event (no login, no network), cursor-agent prints plain
        // text on stderr and exits non-zero; CliAgent classifies that.
        report
    }
}
