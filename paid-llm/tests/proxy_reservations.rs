//! In-flight limits, and budgets that hold under concurrency: each request's worst case is reserved
//! before it is forwarded, so requests that arrive together cannot all pass
//! on the same room under a cap.
//!
//! The SDK test drives the official `anthropic` Python SDK (installed by
//! `scripts/provision-python`); a missing SDK fails the test, in CI and out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Env;
use paid_core::Usage;
use paid_llm::fake::Canned;
use paid_llm::proxy::ProxyConfig;
use paid_llm::proxy::budget::BudgetConfig;
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/concurrent_budget.py");

/// claude-haiku-4-5 at $1 input / $5 output: 60,000 output tokens cost
/// $0.30, and so does each request's worst case (plus its input).
const MAX_TOKENS: u64 = 60_000;
const ACTUAL: Usage = Usage { input: 12, cache_read: 0, cache_write: 0, output: 60_000, reasoning: 0 };
const ACTUAL_MICROS: i64 = 300_012;
const CAP_MICROS: i64 = 1_000_000;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A $1.00 run cap; a slow upstream that bills each request $0.30. The
/// run may have more requests in flight than the default 4, so that the
/// budget alone decides.
async fn env() -> Env {
    let env = Env::with_config(ProxyConfig {
        budgets: BudgetConfig { run_cost_micros: Some(CAP_MICROS), ..BudgetConfig::default() },
        run_concurrency: 64,
        ..ProxyConfig::default()
    })
    .await;
    env.fake.set_default(Canned::text("essay").usage(ACTUAL).head_delay(Duration::from_millis(300)));
    env
}

/// The run's recorded spend, summed from the store's usage rows.
async fn recorded_spend(env: &Env) -> (usize, i64) {
    env.proxy.settled().await;
    let rows = env.store.usage(env.run.id).await.unwrap();
    let served = rows.iter().filter(|r| r.status == "200").count();
    (served, rows.iter().filter_map(|r| r.cost_micros).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_concurrent_sdk_requests_under_a_one_dollar_cap_spend_at_most_the_cap() {
    let probe = tokio::process::Command::new(python()).args(["-c", "import anthropic"]).output().await;
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "the anthropic Python SDK cannot be imported ({probe:?}); run scripts/provision-python"
    );
    let env = env().await;
    let out = tokio::process::Command::new(python())
        .arg(SCRIPT)
        .env("PROXY_URL", env.server.url())
        .env("PAID_TOKEN", env.token.expose())
        .env("REQUESTS", "12")
        .env("MAX_TOKENS", MAX_TOKENS.to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the SDK script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("{seen}");
    assert_eq!(seen["served"], 3, "{seen}");
    assert_eq!(seen["refused"], 9, "{seen}");
    assert!(seen["messages"][0].as_str().unwrap().contains("run_cost cap"), "{seen}");

    let (served, spent) = recorded_spend(&env).await;
    assert_eq!((served, spent), (3, 3 * ACTUAL_MICROS));
    assert!(spent <= CAP_MICROS);
    assert_eq!(env.fake.received().len(), 3, "refused requests never reach the upstream");
    assert_eq!(env.proxy.spend(env.run.id).cost_micros, spent, "the ledger agrees with the usage rows");
}

/// The same with plain HTTP clients and 24 requests: whatever the
/// interleaving, the served requests fit under the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overspend_and_holds_are_released() {
    let env = env().await;
    let token = env.token.expose().to_string();
    let sends = (0..24).map(|_| {
        let req =
            env.http.post(format!("{}/anthropic/v1/messages", env.server.url())).header("x-api-key", &token).json(
                &serde_json::json!({
                    "model": "claude-haiku-4-5", "max_tokens": MAX_TOKENS,
                    "messages": [{"role": "user", "content": "Write a long essay."}]
                }),
            );
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(sends).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 21, "{statuses:?}");
    let (served, spent) = recorded_spend(&env).await;
    assert_eq!((served, spent), (3, 3 * ACTUAL_MICROS));
    assert_eq!(env.proxy.reserved(env.run.id), Default::default(), "every hold is released once settled");

    // A request with a smaller worst case still fits in what is left.
    env.fake.set_default(Canned::text("ok").usage(Usage { input: 10, output: 10, ..Usage::default() }));
    let small = env
        .http
        .post(format!("{}/anthropic/v1/messages", env.server.url()))
        .header("x-api-key", &token)
        .json(&serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 100, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
}

/// `stream_options: null` (or `include_usage: false`) no longer turns off
/// the usage report: the proxy always asks for it, so the stream is metered.
#[tokio::test]
async fn an_openai_stream_is_metered_whatever_its_stream_options_say() {
    let env = Env::new().await;
    let usage = Usage { input: 40, cache_read: 0, cache_write: 0, output: 7, reasoning: 0 };
    env.fake.set_default(Canned::text("hi").usage(usage).chunks(2));
    for options in [Value::Null, serde_json::json!({ "include_usage": false }), serde_json::json!(3)] {
        let resp = env
            .http
            .post(format!("{}/openai/v1/chat/completions", env.server.url()))
            .bearer_auth(env.token.expose())
            .json(&serde_json::json!({
                "model": "gpt-4o-mini", "stream": true, "stream_options": options,
                "messages": [{"role": "user", "content": "hi"}]
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
    }
    env.proxy.settled().await;
    let rows = env.store.usage(env.run.id).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.usage).collect::<Vec<_>>(), vec![usage; 3]);
    assert!(rows.iter().all(|r| r.cost_micros.unwrap_or(0) > 0), "{rows:?}");
}

/// A body with a key twice (the proxy and the provider could each read a
/// different one) is refused before it reaches the upstream.
#[tokio::test]
async fn a_body_with_a_duplicate_key_is_refused() {
    let env = Env::new().await;
    let body = r#"{"model":"gpt-4o-mini","stream":false,"stream":true,"messages":[]}"#;
    let resp = env
        .http
        .post(format!("{}/openai/v1/chat/completions", env.server.url()))
        .bearer_auth(env.token.expose())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("duplicate key \"stream\""), "{err}");
    assert!(env.fake.received().is_empty());
}

/// A run has at most 4 requests in flight (the default); the fifth and
/// later get a 429 that says to retry, not a budget refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_has_at_most_four_requests_in_flight() {
    let env = Env::new().await;
    env.fake.set_default(
        Canned::text("ok")
            .usage(Usage { input: 5, output: 5, ..Usage::default() })
            .head_delay(Duration::from_millis(500)),
    );
    let token = env.token.expose().to_string();
    let send = || {
        env.http
            .post(format!("{}/anthropic/v1/messages", env.server.url()))
            .header("x-api-key", &token)
            .json(&serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": []}))
            .send()
    };
    let answers = futures::future::join_all((0..8).map(|_| send())).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.as_ref().unwrap().status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
    let busy = answers.into_iter().map(Result::unwrap).find(|r| r.status() == 429).unwrap();
    assert_eq!(busy.headers()["retry-after"], "1");
    assert!(busy.headers().get("x-should-retry").is_none(), "a busy run may retry");
    let body: Value = busy.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("4 requests in flight"), "{body}");
    assert_eq!(env.fake.received().len(), 4);
    assert_eq!(send().await.unwrap().status(), 200, "permits come back when requests end");
}
