//! GitHub Copilot CLI: `copilot -p --output-format json`.

use std::collections::BTreeMap;

use paid_core::Usage;

use super::json::{self, model_flag, num, prompt_word, text};
use crate::Error;
use crate::plugin::{CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess};

/// [GitHub Copilot CLI](https://docs.github.com/copilot/how-tos/copilot-cli)
/// in programmatic mode, printing JSON Lines.
///
/// - Command: `copilot --output-format json --allow-all --no-ask-user
///   [--model M] -p "<prompt>"`.
/// - Proxy: Copilot's bring-your-own-key mode, `COPILOT_PROVIDER_TYPE=openai`
///   with `COPILOT_PROVIDER_BASE_URL` and the run token as
///   `COPILOT_PROVIDER_API_KEY`, and `COPILOT_OFFLINE=true`, so no GitHub
///   login is needed and every model request goes through the proxy.
/// - Reads `AGENTS.md`.
/// - Output: `assistant.message` events carry `data.content` and
///   `data.outputTokens`; `session.error` carries `data.errorType`,
///   `data.message` and `data.statusCode`; the final `result` event carries
///   `exitCode` and premium-request usage. Copilot reports output tokens
///   only and no cost: the proxy's metering is the exact record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Copilot;

impl CliPlugin for Copilot {
    fn kind(&self) -> &str {
        "copilot"
    }

    fn executable(&self) -> Option<&str> {
        Some("copilot")
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        Ok(format!(
            "copilot --output-format json --allow-all --no-ask-user{} -p {}",
            model_flag("--model", inv.model),
            prompt_word(inv.prompt_file)
        ))
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("COPILOT_PROVIDER_TYPE".into(), "openai".into()),
            ("COPILOT_PROVIDER_BASE_URL".into(), proxy.openai_url()),
            ("COPILOT_PROVIDER_API_KEY".into(), proxy.token.to_string()),
            ("COPILOT_OFFLINE".into(), "true".into()),
        ])
    }

    fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("COPILOT_AUTO_UPDATE".into(), "false".into())])
    }

    fn instruction_file(&self) -> Option<&str> {
        Some("AGENTS.md")
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let mut report = CliReport::default();
        let mut last_message: Option<String> = None;
        let mut output_tokens: Option<u64> = None;
        for event in json::objects(out.stdout) {
            match text(&event, "/type") {
                Some("assistant.message") => {
                    if let Some(n) = event.pointer("/data/outputTokens").and_then(|n| n.as_u64()) {
                        *output_tokens.get_or_insert(0) += n;
                    }
                    if let Some(content) = text(&event, "/data/content").filter(|c| !c.trim().is_empty()) {
                        last_message = Some(content.to_string());
                    }
                }
                Some("session.error") => {
                    let message = text(&event, "/data/message").unwrap_or("copilot reported an error");
                    let kind = text(&event, "/data/errorType").unwrap_or_default();
                    let status = u16::try_from(num(&event, "/data/statusCode")).ok().filter(|s| *s > 0);
                    report.failure = Some(json::failure(&format!("{kind}: {message}"), status));
                }
                Some("result") if num(&event, "/exitCode") != 0 && report.failure.is_none() => {
                    let message = format!("copilot ended with exit code {}", num(&event, "/exitCode"));
                    report.failure = Some(json::failure(&message, None));
                }
                _ => {}
            }
        }
        report.usage = output_tokens.map(|output| Usage { output, ..Usage::default() });
        report.summary = last_message.as_deref().and_then(json::summary);
        report
    }
}
