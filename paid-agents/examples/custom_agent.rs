//! A new agent CLI as a Rust plugin: `cargo run -p paid-agents --example custom_agent`.
//! `tinycoder --prompt-file F --json` prints `{"summary", "tokens_in", "tokens_out", "error"}`.
use std::collections::BTreeMap;
use std::sync::Arc;

use paid_agents::{
    CliOutput, CliPlugin, CliReport, Error, Invocation, PluginRegistry, ProxyAccess, classify, shell_quote,
};
use paid_core::{ExecExit, Usage};

struct TinyCoder;

impl CliPlugin for TinyCoder {
    fn kind(&self) -> &str {
        "tinycoder"
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        let model = inv.model.map(|m| format!(" --model {}", shell_quote(m))).unwrap_or_default();
        Ok(format!("tinycoder --json --prompt-file {}{model}", shell_quote(inv.prompt_file)))
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("OPENAI_BASE_URL".into(), proxy.openai_url()),
            ("OPENAI_API_KEY".into(), proxy.token.to_string()),
        ])
    }

    fn instruction_file(&self) -> Option<&str> {
        Some("AGENTS.md") // written for the run, removed afterwards
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(out.stdout) else { return CliReport::default() };
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        CliReport {
            summary: v["summary"].as_str().map(str::to_string),
            usage: Some(Usage { input: n("tokens_in"), output: n("tokens_out"), ..Usage::default() }),
            cost_micros: None,
            failure: v["error"]
                .as_str()
                .map(|e| paid_agents::CliFailure { class: classify::from_text(e), message: e.into() }),
        }
    }
}

fn main() -> Result<(), Error> {
    let mut registry = PluginRegistry::with_builtins();
    registry.register(Arc::new(TinyCoder))?;
    println!("agents: {:?}", registry.kinds()); // then: builder.agent(a) for a in registry.agents()

    let inv =
        Invocation { prompt_file: "/tmp/paid/prompt.md", model: Some("gpt-5"), instruction_file: None, iteration: 1 };
    println!("command: {}", TinyCoder.command(&inv)?);
    let stdout = r#"{"summary": "Fixed add()", "tokens_in": 1200, "tokens_out": 80, "error": null}"#;
    println!("report: {:?}", TinyCoder.parse(&CliOutput { stdout, stderr: "", exit: ExecExit::Code(0) }));
    Ok(())
}
