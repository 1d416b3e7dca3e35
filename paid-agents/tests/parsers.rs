//! Every built-in plugin's parser on recorded samples of its CLI's output
//! (`tests/samples/<kind>/`): a success, an error and a rate limit each,
//! plus the outcome `CliAgent` makes of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use paid_agents::builtin::{Aider, ClaudeCode, Codex, Copilot, Cursor, Gemini, OpenCode};
use paid_agents::{CliFailure, CliOutput, CliPlugin, CliReport, outcome};
use paid_core::engine::ExecOutput;
use paid_core::{AgentExit, ExecExit, FailureClass, Usage};
use pretty_assertions::assert_eq;

fn sample(kind: &str, file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples").join(kind).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(plugin: &dyn CliPlugin, file: &str, exit: i64) -> CliReport {
    let stdout = sample(plugin.kind(), file);
    plugin.parse(&CliOutput { stdout: &stdout, stderr: "", exit: ExecExit::Code(exit) })
}

fn failure(class: FailureClass, message: &str) -> Option<CliFailure> {
    Some(CliFailure { class, message: message.into() })
}

fn class_of(report: &CliReport) -> Option<FailureClass> {
    report.failure.as_ref().map(|f| f.class)
}

#[test]
fn claude_code_success_reports_summary_usage_and_cost() {
    assert_eq!(
        parse(&ClaudeCode, "success.jsonl", 0),
        CliReport {
            summary: Some(
                "Fixed `add()` in calc.sh: it subtracted its arguments instead of adding them. `sh test.sh` now passes."
                    .into()
            ),
            usage: Some(Usage { input: 20, cache_write: 5_650, cache_read: 44_240, output: 270, reasoning: 0 }),
            cost_micros: Some(37_157),
            failure: None,
        }
    );
}

#[test]
fn claude_code_rate_limit_and_errors_are_classified() {
    let limited = parse(&ClaudeCode, "rate-limit.jsonl", 1);
    assert_eq!(class_of(&limited), Some(FailureClass::RateLimited));
    assert!(limited.failure.unwrap().message.starts_with("API Error: 429"));
    assert_eq!(limited.summary, None);

    let auth = parse(&ClaudeCode, "error.jsonl", 1);
    assert_eq!(auth.failure, failure(FailureClass::Auth, "Invalid API key · Fix external API key"));

    let turns = parse(&ClaudeCode, "max-turns.jsonl", 0);
    assert_eq!(turns.failure, failure(FailureClass::Permanent, "reached its turn limit after 31 turns"));
    assert_eq!(turns.cost_micros, Some(412_200));
}

#[test]
fn codex_success_splits_cached_and_reasoning_tokens() {
    assert_eq!(
        parse(&Codex, "success.jsonl", 0),
        CliReport {
            summary: Some(
                "Fixed `add()` in `calc.sh` to add its arguments (it subtracted them); `sh test.sh` passes now.".into()
            ),
            usage: Some(Usage { input: 315, cache_read: 24_448, cache_write: 0, output: 310, reasoning: 512 }),
            cost_micros: None,
            failure: None,
        }
    );
}

#[test]
fn codex_rate_limit_and_errors_are_classified() {
    let limited = parse(&Codex, "rate-limit.jsonl", 1);
    assert_eq!(
        limited.failure,
        failure(
            FailureClass::RateLimited,
            "exceeded retry limit, last status: 429 Too Many Requests, request id: req_8f3e1c2b7a6d4e59"
        )
    );
    let auth = parse(&Codex, "error.jsonl", 1);
    assert_eq!(class_of(&auth), Some(FailureClass::Auth));
    assert_eq!(auth.usage, None);
}

#[test]
fn gemini_success_sums_models() {
    assert_eq!(
        parse(&Gemini, "success.json", 0),
        CliReport {
            summary: Some("Fixed `add()` in calc.sh: it used `-` instead of `+`. `sh test.sh` now passes.".into()),
            usage: Some(Usage { input: 14_450, cache_read: 18_000, cache_write: 0, output: 452, reasoning: 1_490 }),
            cost_micros: None,
            failure: None,
        }
    );
}

#[test]
fn gemini_errors_on_stderr_are_classified() {
    let report = |file: &str| {
        let stderr = sample("gemini", file);
        Gemini.parse(&CliOutput { stdout: "", stderr: &stderr, exit: ExecExit::Code(1) })
    };
    assert_eq!(
        report("rate-limit.json").failure,
        failure(FailureClass::RateLimited, "[API Error: Resource has been exhausted (e.g. check quota).]")
    );
    assert_eq!(
        report("error.json").failure,
        failure(FailureClass::Auth, "[API Error: API key not valid. Please pass a valid API key.]")
    );
}

#[test]
fn aider_success_reads_tokens_cost_and_edits() {
    assert_eq!(
        parse(&Aider, "success.txt", 0),
        CliReport {
            summary: Some(
                "The bug is in `add()`: it subtracts its arguments. Here is the fix:\n\ncalc.sh\n\nApplied edit to calc.sh"
                    .into()
            ),
            usage: Some(Usage { input: 2_400, cache_read: 1_100, cache_write: 0, output: 85, reasoning: 0 }),
            cost_micros: Some(7_100),
            failure: None,
        }
    );
    let multi = parse(&Aider, "multi-turn.txt", 0);
    assert_eq!(
        multi.usage,
        Some(Usage { input: 24_000, cache_read: 9_800, cache_write: 3_500, output: 1_140, reasoning: 0 })
    );
    assert_eq!(multi.cost_micros, Some(70_000), "the last session total, not a sum");
    assert_eq!(multi.failure, None);
}

#[test]
fn aider_rate_limit_and_errors_are_failures_even_with_exit_zero() {
    let limited = parse(&Aider, "rate-limit.txt", 0);
    assert_eq!(class_of(&limited), Some(FailureClass::RateLimited));
    assert!(limited.failure.unwrap().message.starts_with("litellm.RateLimitError"));
    let auth = parse(&Aider, "error.txt", 0);
    assert_eq!(class_of(&auth), Some(FailureClass::Auth));
    let recovered = parse(&Aider, "recovered.txt", 0);
    assert_eq!(recovered.failure, None, "a retry that succeeded is no failure");
    assert_eq!(recovered.cost_micros, Some(3_000));
}

#[test]
fn copilot_success_counts_output_tokens() {
    assert_eq!(
        parse(&Copilot, "success.jsonl", 0),
        CliReport {
            summary: Some("Fixed `add()` in calc.sh; it subtracted instead of adding. The tests pass now.".into()),
            usage: Some(Usage { output: 173, ..Usage::default() }),
            cost_micros: None,
            failure: None,
        }
    );
}

#[test]
fn copilot_rate_limit_and_errors_are_classified() {
    assert_eq!(
        parse(&Copilot, "rate-limit.jsonl", 1).failure,
        failure(
            FailureClass::RateLimited,
            "rate_limit: Sorry, you have been rate-limited. Please wait a moment before trying again."
        )
    );
    assert_eq!(class_of(&parse(&Copilot, "error.jsonl", 1)), Some(FailureClass::Auth));
}

#[test]
fn cursor_success_reads_result_and_usage() {
    assert_eq!(
        parse(&Cursor, "success.jsonl", 0),
        CliReport {
            summary: Some(
                "I'll run the tests first.Fixed `add()` in calc.sh to add instead of subtract; tests pass.".into()
            ),
            usage: Some(Usage { input: 18_231, cache_read: 12_000, cache_write: 3_100, output: 402, reasoning: 0 }),
            cost_micros: None,
            failure: None,
        }
    );
}

#[test]
fn cursor_rate_limit_and_plain_text_errors_are_classified() {
    assert_eq!(class_of(&parse(&Cursor, "rate-limit.jsonl", 1)), Some(FailureClass::RateLimited));
    // Before any event, cursor-agent prints plain text on stderr and exits 1.
    let stderr = sample("cursor", "error.txt");
    let out = ExecOutput { exit: ExecExit::Code(1), stdout: String::new(), stderr, log_truncated: false };
    let outcome = outcome(&Cursor, &out).unwrap();
    match outcome.exit {
        AgentExit::Failed { class, message } => {
            assert_eq!(class, FailureClass::Auth);
            assert!(message.starts_with("cursor exited with 1: Error: Authentication required"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn opencode_success_sums_steps() {
    assert_eq!(
        parse(&OpenCode, "success.jsonl", 0),
        CliReport {
            summary: Some("Fixed `add()` in calc.sh: it subtracted instead of adding. The tests pass.".into()),
            usage: Some(Usage { input: 9_570, cache_read: 22_700, cache_write: 2_100, output: 238, reasoning: 12 }),
            cost_micros: Some(18_300),
            failure: None,
        }
    );
}

#[test]
fn opencode_rate_limit_and_errors_are_classified() {
    assert_eq!(
        parse(&OpenCode, "rate-limit.jsonl", 1).failure,
        failure(
            FailureClass::RateLimited,
            "APIError: This request would exceed the rate limit for your organization of 30,000 input tokens per minute."
        )
    );
    assert_eq!(
        parse(&OpenCode, "error.jsonl", 1).failure,
        failure(FailureClass::Auth, "ProviderAuthError: invalid x-api-key")
    );
}

#[test]
fn outcomes_turn_reports_into_agent_exits() {
    let out = |file: &str, exit: ExecExit| ExecOutput {
        exit,
        stdout: sample("claude-code", file),
        stderr: String::new(),
        log_truncated: false,
    };
    let done = outcome(&ClaudeCode, &out("success.jsonl", ExecExit::Code(0))).unwrap();
    assert_eq!(done.exit, AgentExit::Completed);
    assert_eq!(done.cost_micros, Some(37_157));
    assert!(done.usage.is_some());

    let limited = outcome(&ClaudeCode, &out("rate-limit.jsonl", ExecExit::Code(1))).unwrap();
    assert!(
        matches!(&limited.exit, AgentExit::Failed { class: FailureClass::RateLimited, message } if message.starts_with("claude-code: API Error: 429")),
        "{:?}",
        limited.exit
    );
    let killed = outcome(&ClaudeCode, &out("success.jsonl", ExecExit::Cancelled)).unwrap_err();
    assert!(matches!(killed, paid_core::Error::Cancelled));
    let oom =
        ExecOutput { exit: ExecExit::OutOfMemory, stdout: String::new(), stderr: String::new(), log_truncated: false };
    assert_eq!(
        outcome(&Codex, &oom).unwrap().exit,
        AgentExit::Failed { class: FailureClass::Permanent, message: "codex was killed: out of memory".into() }
    );
}
