//! Claude Code: `claude -p --output-format stream-json`.

use std::collections::BTreeMap;

use paid_core::{FailureClass, Usage};

use super::json::{self, model_flag, num, prompt_word, text};
use crate::Error;
use crate::plugin::{CliFailure, CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess};

/// [Claude Code](https://docs.anthropic.com/en/docs/claude-code) in print
/// mode, streaming JSON events.
///
/// - Command: `claude -p --output-format stream-json --verbose
///   --dangerously-skip-permissions [--model M] "<prompt>"`.
/// - Proxy: `ANTHROPIC_BASE_URL` and `ANTHROPIC_API_KEY` (the run token).
/// - Reads `CLAUDE.md`.
/// - Output: the final `result` event carries the summary (`result`),
///   `total_cost_usd`, `usage` (input, cache creation, cache read, output)
///   and `is_error`/`subtype`; API errors appear in its text as
///   `API Error: 429 {…}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaudeCode;

impl CliPlugin for ClaudeCode {
    fn kind(&self) -> &str {
        "claude-code"
    }

    fn executable(&self) -> Option<&str> {
        Some("claude")
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        Ok(format!(
            "claude -p --output-format stream-json --verbose --dangerously-skip-permissions{} {}",
            model_flag("--model", inv.model),
            prompt_word(inv.prompt_file)
        ))
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("ANTHROPIC_BASE_URL".into(), proxy.anthropic_url()),
            ("ANTHROPIC_API_KEY".into(), proxy.token.to_string()),
        ])
    }

    fn env(&self) -> BTreeMap<String, String> {
        [
            "DISABLE_AUTOUPDATER",
            "DISABLE_TELEMETRY",
            "DISABLE_ERROR_REPORTING",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        ]
        .into_iter()
        .map(|k| (k.to_string(), "1".to_string()))
        .collect()
    }

    fn instruction_file(&self) -> Option<&str> {
        Some("CLAUDE.md")
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let mut report = CliReport::default();
        let mut last_text: Option<String> = None;
        let mut saw_result = false;
        for event in json::objects(out.stdout) {
            match text(&event, "/type") {
                Some("assistant") => {
                    let blocks = event.pointer("/message/content").and_then(|c| c.as_array());
                    let said: Vec<&str> = blocks
                        .into_iter()
                        .flatten()
                        .filter(|b| text(b, "/type") == Some("text"))
                        .filter_map(|b| text(b, "/text"))
                        .collect();
                    if !said.is_empty() {
                        last_text = Some(said.join("\n"));
                    }
                }
                Some("result") => {
                    saw_result = true;
                    let result = text(&event, "/result").unwrap_or_default();
                    let subtype = text(&event, "/subtype").unwrap_or("success");
                    let is_error = event.pointer("/is_error").and_then(|v| v.as_bool()).unwrap_or(false);
                    if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
                        report.usage = Some(Usage {
                            input: num(usage, "/input_tokens"),
                            cache_write: num(usage, "/cache_creation_input_tokens"),
                            cache_read: num(usage, "/cache_read_input_tokens"),
                            output: num(usage, "/output_tokens"),
                            reasoning: 0,
                        });
                    }
                    report.cost_micros =
                        event.pointer("/total_cost_usd").and_then(|v| v.as_f64()).and_then(json::usd_micros);
                    if is_error || subtype.starts_with("error") {
                        report.failure = Some(result_failure(subtype, result, &event));
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
        if !saw_result && report.failure.is_none() {
            let said = last_text.unwrap_or_default();
            if said.contains("API Error") {
                report.failure = Some(json::failure(&said, None));
            }
        }
        report
    }
}

fn result_failure(subtype: &str, result: &str, event: &serde_json::Value) -> CliFailure {
    let errors: Vec<&str> =
        event.get("errors").and_then(|e| e.as_array()).into_iter().flatten().filter_map(|e| e.as_str()).collect();
    let detail = if !result.is_empty() { result.to_string() } else { errors.join("; ") };
    match subtype {
        "error_max_turns" => CliFailure {
            class: FailureClass::Permanent,
            message: format!("reached its turn limit after {} turns", json::num(event, "/num_turns")),
        },
        _ if detail.is_empty() => CliFailure { class: FailureClass::Permanent, message: subtype.to_string() },
        _ => json::failure(&detail, None),
    }
}
