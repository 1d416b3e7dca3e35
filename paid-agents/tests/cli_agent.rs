//! `CliAgent` in a real Docker sandbox, with config-defined plugins standing
//! in for a CLI: the prompt file, the proxy environment, the instruction
//! file (written for the run, then restored), output parsing and failure
//! classification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{CALC, Sandbox, image, read};
use paid_agents::{CliAgent, ConfigPlugin, PluginConfig};
use paid_core::{Agent, AgentExit, FailureClass, ProxyEndpoint, Usage};
use pretty_assertions::assert_eq;
use serde_json::json;

fn agent(config: serde_json::Value) -> CliAgent {
    let config: PluginConfig = serde_json::from_value(config).unwrap();
    CliAgent::new(Arc::new(ConfigPlugin::new(config).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_plugin_runs_in_the_sandbox_behind_the_proxy() {
    let mut files = CALC.to_vec();
    files.push(("AGENTS.md", "# House rules\nTabs, never spaces.\n"));
    let sb = Sandbox::start(&image(), &files).await;
    let fixer = agent(json!({
        "kind": "fixer",
        "command": "grep -q 'Notes for this Paid run' {{ instruction_file|sh }} || exit 7\n\
                    grep -q 'Tabs, never spaces' {{ instruction_file|sh }} || exit 8\n\
                    echo \"prompt bytes: $(wc -c < {{ prompt_file|sh }})\"\n\
                    echo \"proxy: $FIXER_URL key=$FIXER_KEY model=$PAID_MODEL\"\n\
                    sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh\n\
                    echo 'in=1.5k out=40 cost $0.0123'\n\
                    echo 'Summary: fixed add()'",
        "proxy_env": { "FIXER_URL": "{{ proxy.openai_url }}", "FIXER_KEY": "{{ proxy.token }}" },
        "instruction_file": "AGENTS.md",
        "output": {
            "summary": "(?m)^Summary: (?P<summary>.+)$",
            "input_tokens": "in=([\\d.]+k?)",
            "output_tokens": "out=(\\d+)",
            "cost_usd": "cost \\$([\\d.]+)"
        }
    }));
    // Bigger than one environment variable holds.
    let prompt = format!("Resolve issue #1: add() returns the wrong result.\n{}", "context line\n".repeat(20_000));
    let proxy = ProxyEndpoint { base_url: "http://proxy.test:8080/".into(), token: "run-token-123".to_string().into() };
    let mut ctx = sb.context(&prompt, Some("gpt-5"));
    ctx.proxy = Some(&proxy);
    let out = fixer.run(ctx).await.unwrap();

    assert_eq!(out.exit, AgentExit::Completed, "{out:?}");
    assert_eq!(out.summary, "fixed add()");
    assert_eq!(out.usage, Some(Usage { input: 1_500, output: 40, ..Usage::default() }));
    assert_eq!(out.cost_micros, Some(12_300));
    assert!(read(&sb.path("calc.sh")).contains("$(( $1 + $2 ))"));
    assert_eq!(read(&sb.path("AGENTS.md")), "# House rules\nTabs, never spaces.\n", "the notes are gone again");

    let log: String = sb.store.logs(sb.run_id, 0).await.unwrap().iter().map(|c| c.text.clone()).collect();
    assert!(log.contains(&format!("prompt bytes: {}", prompt.len())), "{log}");
    assert!(log.contains("proxy: http://proxy.test:8080/openai/v1 key=run-token-123 model=gpt-5"), "{log}");
    assert!(!log.contains("context line\ncontext line"), "the prompt is not echoed into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instruction_files_are_removed_unless_the_agent_changed_them() {
    let sb = Sandbox::start(&image(), CALC).await;
    let reader = agent(json!({
        "kind": "reader",
        "command": "cat {{ instruction_file|sh }} > /tmp/seen.md && grep -c . /tmp/seen.md",
        "instruction_file": "NOTES.md"
    }));
    let out = reader.run(sb.context("task", None)).await.unwrap();
    assert_eq!(out.exit, AgentExit::Completed);
    assert!(!sb.path("NOTES.md").exists(), "a file Paid created is removed");

    let editor = agent(json!({
        "kind": "editor",
        "command": "echo 'the agent documents its change' > NOTES.md",
        "instruction_file": "NOTES.md"
    }));
    editor.run(sb.context("task", None)).await.unwrap();
    assert_eq!(read(&sb.path("NOTES.md")), "the agent documents its change\n", "the agent's own edit is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified_from_rules_or_text() {
    let sb = Sandbox::start(&image(), CALC).await;
    let limited = agent(json!({
        "kind": "limited",
        "command": "echo 'calling the model'; echo 'HTTP 429: slow down' >&2; exit 3",
    }));
    let out = limited.run(sb.context("task", None)).await.unwrap();
    assert_eq!(
        out.exit,
        AgentExit::Failed {
            class: FailureClass::RateLimited,
            message: "limited exited with 3: HTTP 429: slow down".into()
        }
    );

    // A rule marks a failure even when the CLI exits 0.
    let quiet = agent(json!({
        "kind": "quiet",
        "command": "echo 'warning: credits exhausted, nothing done'",
        "output": { "failures": [{ "class": "quota", "pattern": "credits exhausted" }] }
    }));
    let out = quiet.run(sb.context("task", None)).await.unwrap();
    assert_eq!(
        out.exit,
        AgentExit::Failed {
            class: FailureClass::Quota,
            message: "quiet: warning: credits exhausted, nothing done".into()
        }
    );
}
