//! The provider clients against the fake upstream: both modes, tool calls,
//! normalized usage; retries honoring `retry-after`; failover.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use paid_core::{ChatEvent, ChatRequest, LlmProvider, Message, ToolCall, ToolSpec, Usage};
use paid_llm::error::classify;
use paid_llm::failover::{Failover, Route};
use paid_llm::fake::{Canned, FakeUpstream, Reply};
use paid_llm::metrics::{LlmMetrics, Metered};
use paid_llm::providers::anthropic::AnthropicProvider;
use paid_llm::providers::gemini::GeminiProvider;
use paid_llm::providers::openai::OpenAiProvider;
use paid_llm::providers::{ProviderConfig, ProviderKind, compatible};
use paid_llm::retry::{Retry, RetryPolicy};
use paid_llm::{ErrorClass, providers::http_client};
use pretty_assertions::assert_eq;
use serde_json::json;

fn provider(kind: ProviderKind, url: &str) -> Arc<dyn LlmProvider> {
    let config = ProviderConfig::new(kind, url, Some(format!("key-{kind}").into()));
    let http = http_client().unwrap();
    match kind {
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::with_client(config, http)),
        ProviderKind::OpenAi => Arc::new(OpenAiProvider::with_client(config, http)),
        ProviderKind::Gemini => Arc::new(GeminiProvider::with_client(config, http)),
        ProviderKind::Compatible => Arc::new(compatible::client("ollama", url, None).unwrap()),
    }
}

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        system: Some("You are terse.".into()),
        messages: vec![Message::user("List the files")],
        tools: vec![ToolSpec {
            name: "ls".into(),
            description: "List files".into(),
            parameters: json!({"type": "object", "properties": {"dir": {"type": "string"}}}),
        }],
        max_tokens: 512,
    }
}

const USAGE: Usage = Usage { input: 100, cache_read: 50, cache_write: 0, output: 30, reasoning: 10 };

fn call() -> ToolCall {
    ToolCall { id: "call_1".into(), name: "ls".into(), arguments: json!({"dir": "src"}) }
}

/// What each provider reports of [`USAGE`]: Anthropic has no cache-write-free
/// reasoning count (thinking is output), OpenAI and Gemini no cache writes.
fn expected_usage(kind: ProviderKind) -> Usage {
    match kind {
        ProviderKind::Anthropic => Usage { output: 40, reasoning: 0, ..USAGE },
        _ => USAGE,
    }
}

#[tokio::test]
async fn every_provider_completes_and_streams_with_tool_calls_and_usage() {
    let fake = FakeUpstream::start().await.unwrap();
    for kind in [ProviderKind::Anthropic, ProviderKind::OpenAi, ProviderKind::Gemini, ProviderKind::Compatible] {
        let p = provider(kind, &fake.url());
        fake.set_default(Canned::text("Here you go.").usage(USAGE).tool_call(call()).chunks(4));

        let resp = p.complete(&request("some-model")).await.unwrap();
        assert_eq!(resp.content, "Here you go.", "{kind}");
        assert_eq!(resp.stop_reason, "tool_use", "{kind}");
        assert_eq!(resp.usage, expected_usage(kind), "{kind}");
        assert_eq!(resp.tool_calls.len(), 1, "{kind}");
        assert_eq!(resp.tool_calls[0].name, "ls");
        assert_eq!(resp.tool_calls[0].arguments, json!({"dir": "src"}));

        let events: Vec<ChatEvent> =
            p.stream(&request("some-model")).await.unwrap().map(|e| e.unwrap()).collect().await;
        let text: String = events
            .iter()
            .filter_map(|e| if let ChatEvent::TextDelta(t) = e { Some(t.as_str()) } else { None })
            .collect();
        assert_eq!(text, "Here you go.", "{kind}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ChatEvent::ToolCall(c) if c.name == "ls" && c.arguments == json!({"dir": "src"}))),
            "{kind}: {events:?}"
        );
        match events.last().unwrap() {
            ChatEvent::Done { stop_reason, usage } => {
                assert_eq!(stop_reason, "tool_use", "{kind}");
                assert_eq!(*usage, expected_usage(kind), "{kind}");
            }
            other => panic!("{kind}: last event {other:?}"),
        }
    }
    // What went over the wire.
    let received = fake.received();
    assert_eq!(received[0].header("x-api-key"), Some("key-anthropic"));
    assert_eq!(received[0].body["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(received[2].header("authorization"), Some("Bearer key-openai"));
    assert_eq!(received[2].body["max_completion_tokens"], 512);
    assert_eq!(received[3].body["stream_options"]["include_usage"], true);
    assert_eq!(received[4].header("x-goog-api-key"), Some("key-gemini"));
    assert_eq!(received[4].path, "/v1beta/models/some-model:generateContent");
    assert_eq!(received[5].query.as_deref(), Some("alt=sse"));
    assert_eq!(received[6].header("authorization"), None, "compatible servers may need no key");
    assert_eq!(received[6].body["max_tokens"], 512);
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_succeeds() {
    let fake = FakeUpstream::start().await.unwrap();
    fake.push(Reply::error(429, "Number of request tokens has exceeded your per-minute rate limit").retry_after(1));
    fake.push(Reply::Ok(Canned::text("finally")));
    let p = Retry::new(provider(ProviderKind::Anthropic, &fake.url()), quick());
    let started = Instant::now();
    let resp = p.complete(&request("claude-haiku-4-5")).await.unwrap();
    assert_eq!(resp.content, "finally");
    // The backoff alone would have waited ~10 ms; retry-after said 1 s.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn overloaded_and_server_errors_are_retried_with_backoff_for_streams_too() {
    let fake = FakeUpstream::start().await.unwrap();
    fake.push(Reply::error(529, "Overloaded"));
    fake.push(Reply::error(500, "Internal error"));
    fake.push(Reply::Ok(Canned::text("ok")));
    let p = Retry::new(provider(ProviderKind::Anthropic, &fake.url()), quick());
    let events: Vec<_> = p.stream(&request("claude-haiku-4-5")).await.unwrap().collect().await;
    assert!(matches!(events.last(), Some(Ok(ChatEvent::Done { .. }))));
    assert_eq!(fake.received().len(), 3);
}

#[tokio::test]
async fn errors_are_classified_and_permanent_ones_are_not_retried() {
    let fake = FakeUpstream::start().await.unwrap();
    let p = Retry::new(provider(ProviderKind::OpenAi, &fake.url()), quick());
    for (status, message, class) in [
        (401, "Incorrect API key provided", ErrorClass::Auth),
        (400, "This model's maximum context length is 128000 tokens", ErrorClass::ContextTooLong),
        (400, "Invalid value for 'temperature'", ErrorClass::Permanent),
    ] {
        fake.push(Reply::error(status, message));
        let before = fake.received().len();
        let err = p.complete(&request("gpt-5")).await.unwrap_err();
        assert_eq!(classify(&err).0, class, "{message}");
        assert!(err.to_string().contains(message), "{err}");
        assert_eq!(fake.received().len(), before + 1, "{message} must not be retried");
    }
    // A retry-after beyond what the policy accepts is not waited for.
    fake.push(Reply::error(429, "slow down").retry_after(3600));
    let err = p.complete(&request("gpt-5")).await.unwrap_err();
    assert_eq!(classify(&err), (ErrorClass::RateLimited, Some(Duration::from_secs(3600))));
}

#[tokio::test]
async fn failover_moves_to_the_second_provider() {
    let first = FakeUpstream::start().await.unwrap();
    let second = FakeUpstream::start().await.unwrap();
    // The first provider keeps failing, even after its retries.
    for _ in 0..3 {
        first.push(Reply::error(503, "unavailable"));
    }
    second.push(Reply::Ok(Canned::text("from the second provider")));
    let a = Arc::new(Retry::new(
        provider(ProviderKind::Anthropic, &first.url()),
        RetryPolicy { max_retries: 2, ..quick() },
    ));
    let b = Arc::new(Retry::new(provider(ProviderKind::OpenAi, &second.url()), quick()));
    let llm = Failover::new(vec![Route::new(a), Route::new(b).with_model("gpt-5-mini")]);
    let resp = llm.complete(&request("claude-haiku-4-5")).await.unwrap();
    assert_eq!(resp.content, "from the second provider");
    assert_eq!(first.received().len(), 3);
    assert_eq!(second.received()[0].body["model"], "gpt-5-mini");

    // A request error is not the provider's fault: no failover.
    first.push(Reply::error(400, "messages: field required"));
    let err = llm.complete(&request("claude-haiku-4-5")).await.unwrap_err();
    assert_eq!(classify(&err).0, ErrorClass::Permanent);
    assert_eq!(second.received().len(), 1);
}

#[tokio::test]
async fn a_tripped_route_is_skipped_until_it_cools_down() {
    let first = FakeUpstream::start().await.unwrap();
    let second = FakeUpstream::start().await.unwrap();
    first.push(Reply::error(401, "invalid x-api-key"));
    let llm = Failover::new(vec![
        Route::new(provider(ProviderKind::Anthropic, &first.url())),
        Route::new(provider(ProviderKind::Gemini, &second.url())).with_model("gemini-2.5-flash"),
    ])
    .with_breaker(1, Duration::from_secs(60));
    llm.complete(&request("claude-haiku-4-5")).await.unwrap();
    llm.stream(&request("claude-haiku-4-5")).await.unwrap().collect::<Vec<_>>().await;
    assert_eq!(first.received().len(), 1, "the tripped route is not tried again");
    assert_eq!(second.received().len(), 2);
}

#[tokio::test]
async fn request_seconds_and_tokens_are_counted() {
    let fake = FakeUpstream::start().await.unwrap();
    fake.set_default(Canned::text("hi").usage(Usage { input: 1_000_000, ..Usage::default() }));
    let metrics = LlmMetrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.metrics().register(&mut registry);
    let prices = Arc::new(paid_llm::prices::PriceRegistry::builtin().unwrap());
    let p = Metered::new(provider(ProviderKind::OpenAi, &fake.url()), metrics, "p1").with_prices(prices);
    p.complete(&request("gpt-5-mini")).await.unwrap();
    p.stream(&request("gpt-5-mini")).await.unwrap().collect::<Vec<_>>().await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains(r#"paid_llm_request_seconds_count{provider="openai",model="gpt-5-mini"} 2"#), "{text}");
    assert!(
        text.contains(r#"paid_tokens_used_total{project_id="p1",model="gpt-5-mini",direction="input"} 2000000"#),
        "{text}"
    );
    // $0.25 per million input tokens, twice: 50 cents.
    assert!(text.contains(r#"paid_cost_cents_total{project_id="p1",model="gpt-5-mini"} 50.0"#), "{text}");
}
