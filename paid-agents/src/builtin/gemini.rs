//! Gemini CLI: `gemini -p --output-format json`.

use std::collections::BTreeMap;

use paid_core::Usage;

use super::json::{self, model_flag, num, prompt_word, text};
use crate::Error;
use crate::plugin::{CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess};

/// [Gemini CLI](https://github.com/google-gemini/gemini-cli) in headless
/// mode with one JSON document as output.
///
/// - Command: `gemini --output-format json --yolo [-m M] -p "<prompt>"`.
/// - Proxy: `GOOGLE_GEMINI_BASE_URL`, with the run token as
///   `GEMINI_API_KEY`.
/// - Reads `GEMINI.md`.
/// - Output: `{"response": …, "stats": {"models": {"<model>": {"tokens":
///   {"prompt", "candidates", "cached", "thoughts", …}}}}, "error": {"type",
///   "message", "code"}}`. `prompt` includes `cached`. No cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

impl CliPlugin for Gemini {
    fn kind(&self) -> &str {
        "gemini"
    }

    fn executable(&self) -> Option<&str> {
        Some("gemini")
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        Ok(format!(
            "gemini --output-format json --yolo{} -p {}",
            model_flag("-m", inv.model),
            prompt_word(inv.prompt_file)
        ))
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("GOOGLE_GEMINI_BASE_URL".into(), proxy.gemini_url()),
            ("GEMINI_API_KEY".into(), proxy.token.to_string()),
            ("GOOGLE_GENAI_USE_VERTEXAI".into(), "false".into()),
        ])
    }

    fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("GEMINI_TELEMETRY_ENABLED".into(), "false".into()), ("NO_BROWSER".into(), "true".into())])
    }

    fn instruction_file(&self) -> Option<&str> {
        Some("GEMINI.md")
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let mut report = CliReport::default();
        // Errors may come on stderr as the same JSON shape.
        let doc = json::document(out.stdout).or_else(|| json::document(out.stderr));
        let Some(doc) = doc else { return report };
        if let Some(models) = doc.pointer("/stats/models").and_then(|m| m.as_object()) {
            let mut total = Usage::default();
            for model in models.values() {
                let prompt = num(model, "/tokens/prompt");
                let cached = num(model, "/tokens/cached");
                total += Usage {
                    input: prompt.saturating_sub(cached),
                    cache_read: cached.min(prompt),
                    cache_write: 0,
                    output: num(model, "/tokens/candidates"),
                    reasoning: num(model, "/tokens/thoughts"),
                };
            }
            report.usage = Some(total);
        }
        if let Some(error) = doc.get("error").filter(|e| e.is_object()) {
            let message = text(error, "/message").unwrap_or("gemini reported an error");
            let status = error.get("code").and_then(|c| c.as_u64()).and_then(|c| u16::try_from(c).ok());
            report.failure = Some(json::failure(message, status));
        }
        report.summary = text(&doc, "/response").and_then(json::summary);
        report
    }
}
