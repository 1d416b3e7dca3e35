//! Real clients: the official `openai` and `anthropic` Python SDKs call the
//! proxy with a run token, plain and streaming, get their normal response
//! objects, and the proxy records their usage.
//!
//! The SDKs are installed by `scripts/provision-python` (run by
//! `scripts/test`). When they cannot be imported the test fails, in CI and
//! out of it, saying to run that script.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ANTHROPIC_KEY, Env, OPENAI_KEY};
use paid_core::Usage;
use paid_llm::fake::Canned;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_clients.py");
const TEXT: &str = "Hello from behind the proxy.";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Fails the test unless the SDKs can be imported: a missing SDK is a broken
/// setup, not a reason to skip.
async fn require_sdks() {
    let out = tokio::process::Command::new(python()).args(["-c", "import openai, anthropic"]).output().await;
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the openai/anthropic Python SDKs cannot be imported ({}); run scripts/provision-python",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{} cannot be started ({e}); install Python 3 and run scripts/provision-python", python()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_work_through_the_proxy() {
    require_sdks().await;
    let env = Env::new().await;
    let usage = Usage { input: 21, cache_read: 0, cache_write: 0, output: 9, reasoning: 0 };
    env.fake.set_default(Canned::text(TEXT).usage(usage).chunks(4));

    let out = tokio::process::Command::new(python())
        .arg(SCRIPT)
        .env("PROXY_URL", env.server.url())
        .env("PAID_TOKEN", env.token.expose())
        .env("EXPECTED_TEXT", TEXT)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK script failed:\n{stdout}\n{stderr}");
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["openai_completion_usage"]["prompt_tokens"], 21);
    assert_eq!(seen["anthropic_message_usage"]["input_tokens"], 21);
    assert_eq!(seen["anthropic_stream_usage"]["output_tokens"], 9);
    assert_eq!(seen["openai_bad_token"], "invalid_api_key");
    assert_eq!(seen["anthropic_bad_token"], "authentication_error");

    // Four metered requests, in the run's usage, priced.
    env.proxy.settled().await;
    let records = env.store.usage(env.run.id).await.unwrap();
    let mut got: Vec<(&str, &str, Usage, &str)> =
        records.iter().map(|r| (r.provider.as_str(), r.model.as_str(), r.usage, r.status.as_str())).collect();
    got.sort_by_key(|g| std::cmp::Reverse(g.0));
    assert_eq!(
        got,
        [
            ("openai", "gpt-4o-mini", usage, "200"),
            ("openai", "gpt-4o-mini", usage, "200"),
            ("anthropic", "claude-haiku-4-5", usage, "200"),
            ("anthropic", "claude-haiku-4-5", usage, "200"),
        ]
    );
    assert!(records.iter().all(|r| r.cost_micros.is_some_and(|c| c > 0)));

    // The SDKs sent the run token; the upstream got the real keys.
    let received = env.fake.received();
    assert_eq!(received.len(), 4);
    assert!(received[..2].iter().all(|r| r.header("authorization") == Some(&format!("Bearer {OPENAI_KEY}"))));
    assert!(received[2..].iter().all(|r| r.header("x-api-key") == Some(ANTHROPIC_KEY)));
    assert!(received[0].header("user-agent").unwrap_or("").starts_with("OpenAI/Python"));
    assert_eq!(received[1].body["stream_options"]["include_usage"], true);
}
