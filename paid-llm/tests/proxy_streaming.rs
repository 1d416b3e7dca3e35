//! SSE responses pass through the proxy chunk by chunk, as the upstream
//! sends them: the first bytes reach the client long before the upstream
//! has finished.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Env;
use futures::StreamExt;
use paid_core::Usage;
use paid_llm::fake::Canned;
use paid_llm::providers::ProviderKind;

const GAP: Duration = Duration::from_millis(150);

/// Streams one response through the proxy; returns (time to first chunk,
/// total time, arrival times of chunks, body).
async fn stream_through(env: &Env, kind: ProviderKind, model: &str) -> (Duration, Duration, Vec<Duration>, String) {
    let started = Instant::now();
    let resp = env.request(kind, env.token.expose(), model, true).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{kind}");
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut arrivals = Vec::new();
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        arrivals.push(started.elapsed());
        text.extend_from_slice(&chunk.unwrap());
    }
    (arrivals[0], started.elapsed(), arrivals, String::from_utf8(text).unwrap())
}

#[tokio::test]
async fn first_byte_arrives_before_the_upstream_finishes_for_every_provider() {
    let env = Env::new().await;
    for (kind, model) in [
        (ProviderKind::Anthropic, "claude-haiku-4-5"),
        (ProviderKind::OpenAi, "gpt-5-mini"),
        (ProviderKind::Gemini, "gemini-2.5-flash"),
    ] {
        env.fake.set_default(Canned::text("one two three four five six").chunks(6).event_delay(GAP));
        let (first, total, arrivals, body) = stream_through(&env, kind, model).await;
        // Gemini sends one event per piece (6 events); the others send more.
        assert!(total >= GAP * 5, "{kind}: the upstream took {total:?}");
        assert!(first < GAP * 2, "{kind}: first chunk after {first:?}, total {total:?}");
        assert!(first + GAP * 3 < total, "{kind}: first chunk after {first:?}, total {total:?}");
        // Chunks keep arriving spread over the whole response, not in one burst at the end.
        let spread = arrivals.windows(2).filter(|w| w[1] - w[0] >= GAP / 2).count();
        assert!(spread >= 4, "{kind}: arrivals {arrivals:?}");
        assert!(body.contains("one two") || body.contains("one "), "{kind}: {body}");
    }
}

#[tokio::test]
async fn streams_are_passed_through_unchanged() {
    let env = Env::new().await;
    env.fake.set_default(Canned::text("unchanged bytes").chunks(2));
    let (_, _, _, body) = stream_through(&env, ProviderKind::Anthropic, "claude-haiku-4-5").await;
    let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let (_, _, _, body) = stream_through(&env, ProviderKind::OpenAi, "gpt-5-mini").await;
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
}

#[tokio::test]
async fn usage_of_a_stream_is_recorded_when_it_ends() {
    let env = Env::new().await;
    let usage = Usage { input: 100, cache_read: 0, cache_write: 0, output: 20, reasoning: 0 };
    env.fake.set_default(Canned::text("hi").usage(usage).event_delay(Duration::from_millis(20)));
    stream_through(&env, ProviderKind::OpenAi, "gpt-5-mini").await;
    env.proxy.settled().await;
    let records = env.store.usage(env.run.id).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].usage, usage);
    assert_eq!(records[0].status, "200");
    assert!(records[0].latency_ms >= 20, "{:?}", records[0]);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_still_gets_its_input_metered() {
    let env = Env::new().await;
    let usage = Usage { input: 500, cache_read: 0, cache_write: 0, output: 50, reasoning: 0 };
    env.fake
        .set_default(Canned::text("a b c d e f g h").chunks(8).usage(usage).event_delay(Duration::from_millis(200)));
    let resp = env.request(ProviderKind::Anthropic, env.token.expose(), "claude-haiku-4-5", true).send().await.unwrap();
    let mut body = resp.bytes_stream();
    let _first = body.next().await.unwrap().unwrap();
    drop(body);
    // The proxy notices when it next writes (the next event is due in
    // 200 ms), and records what it saw.
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        env.proxy.settled().await;
        let records = env.store.usage(env.run.id).await.unwrap();
        if !records.is_empty() {
            break records;
        }
        assert!(Instant::now() < deadline, "the abandoned stream was never metered");
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].status, "200_client_closed");
    assert_eq!(records[0].usage.input, 500);
    // The upstream may bill what it went on generating: the stream costs its
    // worst case (its body and framing as input at $1/M, 256 output tokens
    // at $5/M), never just what the client saw, and never zero.
    let cost = records[0].cost_micros.unwrap();
    assert!(cost >= 1_024 + 256 * 5, "charged {cost}");
    assert_eq!(env.proxy.spend(env.run.id).cost_micros, cost, "the budget is charged what the row says");
}
