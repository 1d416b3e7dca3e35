//! Every metered request is recorded per run with its model, exact token
//! buckets, exact cost, latency and status; the real key goes upstream and
//! the run token does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ANTHROPIC_KEY, Env, GEMINI_KEY, OPENAI_KEY};
use futures::StreamExt;
use paid_core::{Usage, UsageRecord};
use paid_llm::fake::Canned;
use paid_llm::providers::ProviderKind;
use pretty_assertions::assert_eq;
use serde_json::json;

struct Case {
    kind: ProviderKind,
    model: &'static str,
    raw: serde_json::Value,
    usage: Usage,
    cost_micros: i64,
}

fn cases() -> Vec<Case> {
    vec![
        // claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write, $15 output.
        Case {
            kind: ProviderKind::Anthropic,
            model: "claude-sonnet-4-5",
            raw: json!({"input_tokens": 1000, "cache_creation_input_tokens": 2000,
                        "cache_read_input_tokens": 30000, "output_tokens": 400}),
            usage: Usage { input: 1000, cache_read: 30000, cache_write: 2000, output: 400, reasoning: 0 },
            cost_micros: 1000 * 3 + 30000 * 3 / 10 + 2000 * 375 / 100 + 400 * 15,
        },
        // gpt-5: $1.25 input, $0.125 cached, $10 output (reasoning billed as output).
        // prompt_tokens includes cached_tokens; completion_tokens includes reasoning_tokens.
        Case {
            kind: ProviderKind::OpenAi,
            model: "gpt-5",
            raw: json!({"prompt_tokens": 50000, "completion_tokens": 3000, "total_tokens": 53000,
                        "prompt_tokens_details": {"cached_tokens": 40000, "audio_tokens": 0},
                        "completion_tokens_details": {"reasoning_tokens": 1000, "audio_tokens": 0}}),
            usage: Usage { input: 10000, cache_read: 40000, cache_write: 0, output: 2000, reasoning: 1000 },
            cost_micros: 10000 * 125 / 100 + 40000 * 125 / 1000 + 2000 * 10 + 1000 * 10,
        },
        // gemini-2.5-pro: $1.25 input, $0.125 cached, $10 output and thoughts.
        // promptTokenCount includes cachedContentTokenCount; thoughts are apart.
        Case {
            kind: ProviderKind::Gemini,
            model: "gemini-2.5-pro",
            raw: json!({"promptTokenCount": 100000, "cachedContentTokenCount": 60000,
                        "candidatesTokenCount": 2000, "thoughtsTokenCount": 5000, "totalTokenCount": 107000}),
            usage: Usage { input: 40000, cache_read: 60000, cache_write: 0, output: 2000, reasoning: 5000 },
            cost_micros: 40000 * 125 / 100 + 60000 * 125 / 1000 + 2000 * 10 + 5000 * 10,
        },
    ]
}

async fn drain(resp: reqwest::Response) -> String {
    let mut s = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn usage_and_cost_are_recorded_exactly_for_every_provider_and_bucket() {
    let env = Env::new().await;
    let mut expected = Vec::new();
    for case in cases() {
        for stream in [false, true] {
            env.fake.set_default(Canned::text("hello there").raw_usage(case.raw.clone()));
            let resp = env.request(case.kind, env.token.expose(), case.model, stream).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{} stream={stream}", case.kind);
            drain(resp).await;
            // Records are written in the background; keep them in request order.
            env.proxy.settled().await;
            expected.push((case.kind.as_str().to_string(), case.model, case.usage, case.cost_micros));
        }
    }
    env.proxy.settled().await;
    let records = env.store.usage(env.run.id).await.unwrap();
    let got: Vec<(String, &str, Usage, i64)> = records
        .iter()
        .zip(&expected)
        .map(|(r, e)| (r.provider.clone(), e.1, r.usage, r.cost_micros.unwrap()))
        .collect();
    assert_eq!(records.len(), expected.len());
    assert_eq!(got, expected);
    for (r, e) in records.iter().zip(&expected) {
        assert_eq!(r.model, e.1);
        assert_eq!(r.status, "200");
        assert_eq!(r.run_id, env.run.id);
    }
    // The proxy's ledger agrees with the store.
    let spend = env.proxy.spend(env.run.id);
    assert_eq!(spend.cost_micros, expected.iter().map(|e| e.3).sum::<i64>());
    assert_eq!(spend.tokens, expected.iter().map(|e| e.2.total()).sum::<u64>());
}

#[tokio::test]
async fn the_real_key_goes_upstream_and_the_run_token_does_not() {
    let env = Env::new().await;
    for kind in [ProviderKind::Anthropic, ProviderKind::OpenAi, ProviderKind::Gemini] {
        let resp = env.request(kind, env.token.expose(), "gpt-5-mini", false).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let received = env.fake.received();
    assert_eq!(received.len(), 3);
    assert_eq!(received[0].header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(received[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(received[1].header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
    assert_eq!(received[2].header("x-goog-api-key"), Some(GEMINI_KEY));
    for r in &received {
        assert_eq!(r.header("accept-encoding"), Some("identity"));
        for (name, value) in &r.headers {
            assert!(!value.contains(env.token.expose()), "token leaked upstream in {name}");
        }
        assert!(!r.query.as_deref().unwrap_or("").contains(env.token.expose()));
    }
}

#[tokio::test]
async fn a_gemini_key_in_the_query_is_replaced_too() {
    let env = Env::new().await;
    let url = env.url(&format!(
        "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={}",
        env.token.expose()
    ));
    let resp = env
        .http
        .post(url)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drain(resp).await;
    let r = &env.fake.received()[0];
    assert_eq!(r.query.as_deref(), Some("alt=sse"));
    assert_eq!(r.header("x-goog-api-key"), Some(GEMINI_KEY));
}

#[tokio::test]
async fn openai_streams_are_asked_for_usage() {
    let env = Env::new().await;
    env.fake.set_default(Canned::text("hi").usage(Usage { input: 7, output: 3, ..Usage::default() }));
    let resp = env.request(ProviderKind::OpenAi, env.token.expose(), "gpt-5-mini", true).send().await.unwrap();
    let body = drain(resp).await;
    assert_eq!(env.fake.received()[0].body["stream_options"], json!({"include_usage": true}));
    assert!(body.contains(r#""usage":{"#), "{body}");
    env.proxy.settled().await;
    let records = env.store.usage(env.run.id).await.unwrap();
    assert_eq!(records[0].usage, Usage { input: 7, output: 3, ..Usage::default() });
}

#[tokio::test]
async fn an_unknown_model_has_unknown_cost_not_zero() {
    let env = Env::new().await;
    env.fake.set_default(Canned::text("hi").usage(Usage { input: 10, output: 10, ..Usage::default() }));
    let resp = env.request(ProviderKind::OpenAi, env.token.expose(), "mystery-model-9", false).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    env.proxy.settled().await;
    let records: Vec<UsageRecord> = env.store.usage(env.run.id).await.unwrap();
    assert_eq!(records[0].model, "mystery-model-9");
    assert_eq!(records[0].usage.total(), 20);
    assert_eq!(records[0].cost_micros, None);
}

#[tokio::test]
async fn upstream_errors_are_passed_through_and_recorded() {
    let env = Env::new().await;
    env.fake.push(paid_llm::fake::Reply::error(529, "Overloaded"));
    let resp =
        env.request(ProviderKind::Anthropic, env.token.expose(), "claude-haiku-4-5", false).send().await.unwrap();
    assert_eq!(resp.status(), 529);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
    env.proxy.settled().await;
    let records = env.store.usage(env.run.id).await.unwrap();
    assert_eq!(records[0].status, "529");
    assert_eq!(records[0].usage, Usage::default());
}
