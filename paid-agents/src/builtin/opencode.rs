//! OpenCode: `opencode run --format json`.

use std::collections::BTreeMap;

use paid_core::Usage;
use serde_json::json;

use super::json::{self, num, prompt_word, text};
use crate::Error;
use crate::plugin::{CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess};
use crate::sandbox_io::shell_quote;

/// [OpenCode](https://opencode.ai) in run mode, printing JSON Lines.
///
/// - Command: `opencode run --format json [-m provider/model] "<prompt>"`.
///   A model without a provider prefix gets one from its name (`claude…` →
///   `anthropic/`, `gpt…`/`o…` → `openai/`, `gemini…` → `google/`).
/// - Proxy: `OPENCODE_CONFIG_CONTENT` points the `anthropic` and `openai`
///   providers' `baseURL` at the proxy with the run token as `apiKey`, and
///   turns off sharing, auto-update and web fetches.
/// - Reads `AGENTS.md`.
/// - Output: `text` events carry `part.text`; every `step_finish` carries
///   `part.tokens` (`input`, `output`, `reasoning`, `cache.read`,
///   `cache.write`, disjoint) and `part.cost` in USD, summed here; `error`
///   events carry `error.data.message` and `error.data.statusCode`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenCode;

impl CliPlugin for OpenCode {
    fn kind(&self) -> &str {
        "opencode"
    }

    fn executable(&self) -> Option<&str> {
        Some("opencode")
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        let model = inv
            .model
            .filter(|m| !m.trim().is_empty())
            .map(|m| format!(" -m {}", shell_quote(&qualify(m))))
            .unwrap_or_default();
        Ok(format!("opencode run --format json{model} {}", prompt_word(inv.prompt_file)))
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        let config = json!({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": false,
            "share": "disabled",
            "permission": { "edit": "allow", "bash": "allow", "webfetch": "deny" },
            "provider": {
                "anthropic": { "options": { "baseURL": format!("{}/v1", proxy.anthropic_url()), "apiKey": proxy.token } },
                "openai": { "options": { "baseURL": proxy.openai_url(), "apiKey": proxy.token } },
            },
        });
        BTreeMap::from([
            ("OPENCODE_CONFIG_CONTENT".into(), config.to_string()),
            ("ANTHROPIC_API_KEY".into(), proxy.token.to_string()),
            ("OPENAI_API_KEY".into(), proxy.token.to_string()),
        ])
    }

    fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("OPENCODE_DISABLE_AUTOUPDATE".into(), "true".into())])
    }

    fn instruction_file(&self) -> Option<&str> {
        Some("AGENTS.md")
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let mut report = CliReport::default();
        let mut usage: Option<Usage> = None;
        let mut cost: Option<f64> = None;
        let mut step_text = String::new();
        let mut last_text: Option<String> = None;
        for event in json::objects(out.stdout) {
            match text(&event, "/type") {
                Some("step_start") => step_text.clear(),
                Some("text") => {
                    if let Some(t) = text(&event, "/part/text") {
                        step_text.push_str(t);
                    }
                }
                Some("step_finish") => {
                    let part = event.get("part").cloned().unwrap_or_default();
                    *usage.get_or_insert_with(Usage::default) += Usage {
                        input: num(&part, "/tokens/input"),
                        cache_read: num(&part, "/tokens/cache/read"),
                        cache_write: num(&part, "/tokens/cache/write"),
                        output: num(&part, "/tokens/output"),
                        reasoning: num(&part, "/tokens/reasoning"),
                    };
                    if let Some(c) = part.get("cost").and_then(|c| c.as_f64()) {
                        *cost.get_or_insert(0.0) += c;
                    }
                    if !step_text.trim().is_empty() {
                        last_text = Some(std::mem::take(&mut step_text));
                    }
                }
                Some("error") => {
                    let message = text(&event, "/error/data/message")
                        .or_else(|| text(&event, "/error/message"))
                        .or_else(|| text(&event, "/message"))
                        .unwrap_or("opencode reported an error");
                    let name = text(&event, "/error/name").unwrap_or("Error");
                    let status = u16::try_from(num(&event, "/error/data/statusCode")).ok().filter(|s| *s > 0);
                    report.failure = Some(json::failure(&format!("{name}: {message}"), status));
                }
                _ => {}
            }
        }
        if !step_text.trim().is_empty() {
            last_text = Some(step_text);
        }
        report.usage = usage;
        report.cost_micros = cost.and_then(json::usd_micros);
        report.summary = last_text.as_deref().and_then(json::summary);
        report
    }
}

/// `provider/model` as OpenCode names models.
fn qualify(model: &str) -> String {
    if model.contains('/') {
        return model.to_string();
    }
    let provider = if model.starts_with("claude") {
        "anthropic"
    } else if model.starts_with("gemini") {
        "google"
    } else {
        "openai"
    };
    format!("{provider}/{model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_get_a_provider() {
        assert_eq!(qualify("claude-sonnet-4-5"), "anthropic/claude-sonnet-4-5");
        assert_eq!(qualify("gpt-5"), "openai/gpt-5");
        assert_eq!(qualify("gemini-2.5-pro"), "google/gemini-2.5-pro");
        assert_eq!(qualify("openrouter/x"), "openrouter/x");
    }
}
