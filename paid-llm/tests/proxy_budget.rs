//! Budgets fail closed: once a cap is reached mid-run, the run's next
//! request is refused with the provider's quota error (and no retry), the
//! run is marked, and alerts fire at 80%.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::Env;
use paid_core::Usage;
use paid_llm::fake::Canned;
use paid_llm::providers::ProviderKind;
use paid_llm::proxy::auth::RunLimits;
use paid_llm::proxy::budget::{Breach, BudgetConfig, BudgetEvent, BudgetEventKind, BudgetObserver, Cap};
use serde_json::Value;

/// claude-haiku-4-5 at $1 input / $5 output: 10,000 in + 1,000 out = 15,000 micro-USD.
const REQUEST_USAGE: Usage = Usage { input: 10_000, cache_read: 0, cache_write: 0, output: 1_000, reasoning: 0 };
const REQUEST_COST: i64 = 15_000;

async fn call(env: &Env, token: &str) -> reqwest::Response {
    let resp = env.request(ProviderKind::Anthropic, token, "claude-haiku-4-5", false).send().await.unwrap();
    env.proxy.settled().await;
    resp
}

#[tokio::test]
async fn a_run_cost_cap_hit_mid_run_refuses_the_next_request_and_marks_the_run() {
    let env = Env::with_budgets(BudgetConfig { run_cost_micros: Some(36_000), ..BudgetConfig::default() }).await;
    env.fake.set_default(Canned::text("ok").usage(REQUEST_USAGE));
    let t = env.token.expose();

    assert_eq!(call(&env, t).await.status(), 200); // 15,000
    assert_eq!(call(&env, t).await.status(), 200); // 30,000: past 80% of 36,000, an alert
    assert_eq!(env.proxy.budget_breach(env.run.id), None);
    assert_eq!(call(&env, t).await.status(), 200); // 45,000: the cap is reached, the run is marked
    assert_eq!(
        env.proxy.budget_breach(env.run.id),
        Some(Breach { cap: Cap::RunCost, spent: 3 * REQUEST_COST, limit: 36_000 })
    );

    let resp = call(&env, t).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("budget"), "{body}");
    assert_eq!(env.fake.received().len(), 3, "the refused request must not reach the upstream");

    // The store tells the story: three requests, one refusal, an alert and a breach.
    let usage = env.store.usage(env.run.id).await.unwrap();
    let statuses: Vec<&str> = usage.iter().map(|u| u.status.as_str()).collect();
    assert_eq!(statuses, ["200", "200", "200", "budget_exceeded"]);
    let audit = env.store.audit_events(Some(env.project.id)).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["budget.alert", "budget.exceeded"]);
    assert_eq!(audit[1].subject, format!("run:{}", env.run.id));
    assert_eq!(audit[1].details["cap"], "run_cost");
}

#[tokio::test]
async fn the_refusal_uses_each_providers_quota_format() {
    let env = Env::new().await;
    // Room for the first request's worst case (its body, framing and 256
    // output tokens), not for its actual 11,000 tokens.
    let limited = env.proxy.issue_token_with(
        env.run.id,
        env.project.id,
        None,
        RunLimits { tokens: Some(5_000), cost_micros: None },
    );
    env.fake.set_default(Canned::text("ok").usage(REQUEST_USAGE));
    assert_eq!(call(&env, limited.expose()).await.status(), 200);

    let resp = env.request(ProviderKind::OpenAi, limited.expose(), "gpt-5", false).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(body["error"]["type"], "insufficient_quota");

    let resp = env.request(ProviderKind::Gemini, limited.expose(), "gemini-2.5-pro", true).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(env.proxy.budget_breach(env.run.id).map(|b| b.cap), Some(Cap::RunTokens));
}

#[tokio::test]
async fn the_default_token_cap_is_ten_million() {
    assert_eq!(BudgetConfig::default().run_tokens, Some(10_000_000));
    let env = Env::new().await;
    env.fake.set_default(Canned::text("ok").usage(Usage { input: 9_990_000, ..Usage::default() }));
    assert_eq!(call(&env, env.token.expose()).await.status(), 200);
    // 10,000 tokens left: room for a request whose worst case is under 2,000.
    env.fake.set_default(Canned::text("ok").usage(Usage { input: 10_000, ..Usage::default() }));
    assert_eq!(call(&env, env.token.expose()).await.status(), 200); // exactly 10M now
    assert_eq!(call(&env, env.token.expose()).await.status(), 429);
    assert_eq!(env.proxy.budget_breach(env.run.id).map(|b| (b.cap, b.spent)), Some((Cap::RunTokens, 10_000_000)));
}

#[tokio::test]
async fn a_project_daily_cap_stops_every_run_of_the_project() {
    let env = Env::with_budgets(BudgetConfig { project_daily_micros: Some(20_000), ..BudgetConfig::default() }).await;
    env.fake.set_default(Canned::text("ok").usage(REQUEST_USAGE));
    let (other, other_token) = env.another_run(2).await;
    assert_eq!(call(&env, env.token.expose()).await.status(), 200); // 15,000
    assert_eq!(call(&env, other_token.expose()).await.status(), 200); // 30,000 for the project
    let resp = call(&env, env.token.expose()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(env.proxy.budget_breach(env.run.id).map(|b| b.cap), Some(Cap::ProjectDaily));
    assert_eq!(call(&env, other_token.expose()).await.status(), 429);
    assert_eq!(env.proxy.budget_breach(other.id).map(|b| b.cap), Some(Cap::ProjectDaily));
}

#[tokio::test]
async fn models_without_a_price_are_refused_under_a_cost_cap() {
    let env = Env::with_budgets(BudgetConfig { run_cost_micros: Some(1_000_000), ..BudgetConfig::default() }).await;
    let resp = env.request(ProviderKind::OpenAi, env.token.expose(), "mystery-model-9", false).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("no price"));
    assert!(env.fake.received().is_empty());
}

#[tokio::test]
async fn spending_before_a_proxy_restart_still_counts() {
    let env = Env::with_budgets(BudgetConfig { run_cost_micros: Some(20_000), ..BudgetConfig::default() }).await;
    env.fake.set_default(Canned::text("ok").usage(REQUEST_USAGE));
    assert_eq!(call(&env, env.token.expose()).await.status(), 200);
    // A new proxy on the same store: it reads the run's 15,000 from the usage records.
    let proxy = paid_llm::proxy::Proxy::builder(env.store.clone())
        .upstream(paid_llm::proxy::Upstream::new(ProviderKind::Anthropic, env.fake.url(), Some("k".into())))
        .budgets(BudgetConfig { run_cost_micros: Some(20_000), ..BudgetConfig::default() })
        .build()
        .unwrap();
    let server = proxy.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let token = proxy.issue_token(env.run.id, env.project.id);
    let send = || {
        env.http
            .post(format!("{}/anthropic/v1/messages", server.url()))
            .header("x-api-key", token.expose())
            .json(&serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200); // 30,000 ≥ 20,000
    proxy.settled().await;
    assert_eq!(send().await.unwrap().status(), 429);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<BudgetEvent>>);

#[async_trait]
impl BudgetObserver for Recorder {
    async fn on_budget_event(&self, event: &BudgetEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test]
async fn an_observer_hears_each_alert_and_breach_once() {
    let recorder = Arc::new(Recorder::default());
    let env = Env::new().await;
    let proxy = paid_llm::proxy::Proxy::builder(env.store.clone())
        .upstream(paid_llm::proxy::Upstream::new(ProviderKind::Anthropic, env.fake.url(), Some("k".into())))
        .budgets(BudgetConfig { run_cost_micros: Some(30_000), ..BudgetConfig::default() })
        .observer(recorder.clone())
        .build()
        .unwrap();
    let server = proxy.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let token = proxy.issue_token(env.run.id, env.project.id);
    env.fake.set_default(Canned::text("ok").usage(REQUEST_USAGE));
    for _ in 0..4 {
        env.http
            .post(format!("{}/anthropic/v1/messages", server.url()))
            .header("x-api-key", token.expose())
            .json(&serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}))
            .send()
            .await
            .unwrap();
        proxy.settled().await;
    }
    let events = recorder.0.lock().unwrap().clone();
    let kinds: Vec<(BudgetEventKind, Cap)> = events.iter().map(|e| (e.kind, e.breach.cap)).collect();
    // The second request reaches 30,000: the cap (and 80% of it) at once.
    assert_eq!(kinds, [(BudgetEventKind::Alert, Cap::RunCost), (BudgetEventKind::Exceeded, Cap::RunCost)]);
    assert_eq!(env.fake.received().len(), 2);
}
