//! Per-project budgets: a project's own caps replace the proxy's default
//! for its runs only, and its monthly cap counts only its own spending.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use paid_core::testing::fixtures;
use paid_core::{Project, Run, Usage};
use paid_llm::fake::Canned;
use paid_llm::providers::ProviderKind;
use paid_llm::proxy::auth::RunToken;
use paid_llm::proxy::budget::{BudgetConfig, Cap};
use paid_llm::proxy::{Proxy, Upstream};
use serde_json::Value;

/// claude-haiku-4-5 at $1 input / $5 output: 10,000 in + 1,000 out = 15,000 micro-USD.
const REQUEST_USAGE: Usage = Usage { input: 10_000, cache_read: 0, cache_write: 0, output: 1_000, reasoning: 0 };

async fn call(env: &Env, token: &str) -> reqwest::Response {
    let resp = env.request(ProviderKind::Anthropic, token, "claude-haiku-4-5", false).send().await.unwrap();
    env.proxy.settled().await;
    resp
}

/// A second project with one run and its token.
async fn other_project(env: &Env) -> (Project, Run, RunToken) {
    let project = fixtures::project("gadgets");
    env.store.put_project(&project).await.unwrap();
    env.store.put_issue(&fixtures::issue(project.id, 1)).await.unwrap();
    let run = env.store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    let token = env.proxy.issue_token(run.id, project.id);
    (project, run, token)
}

#[tokio::test]
async fn a_tight_per_run_cap_cuts_off_only_that_projects_run() {
    let env = Env::new().await; // default caps: 10M tokens, no cost cap
    env.fake.set_default(Canned::text("ok").usage(REQUEST_USAGE));
    let (other, other_run, other_token) = other_project(&env).await;
    env.proxy
        .set_project_budget(env.project.id, BudgetConfig { run_cost_micros: Some(20_000), ..BudgetConfig::default() });
    assert_eq!(env.proxy.project_budget(env.project.id).run_cost_micros, Some(20_000));
    assert_eq!(env.proxy.project_budget(other.id), BudgetConfig::default());

    assert_eq!(call(&env, env.token.expose()).await.status(), 200); // 15,000
    assert_eq!(call(&env, env.token.expose()).await.status(), 200); // 30,000: the cap is reached
    let resp = call(&env, env.token.expose()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(env.proxy.budget_breach(env.run.id).map(|b| (b.cap, b.limit)), Some((Cap::RunCost, 20_000)));

    // The other project's run spends far more under the default caps.
    for _ in 0..4 {
        assert_eq!(call(&env, other_token.expose()).await.status(), 200);
    }
    assert_eq!(env.proxy.budget_breach(other_run.id), None);
    assert_eq!(env.proxy.spend(other_run.id).cost_micros, 60_000);
    assert_eq!(env.fake.received().len(), 6, "only the refused request stayed in the proxy");
}

#[tokio::test]
async fn a_monthly_cap_counts_only_its_projects_spending() {
    let env = Env::new().await;
    env.fake.set_default(Canned::text("ok").usage(REQUEST_USAGE));
    let (other, other_run, other_token) = other_project(&env).await;
    let monthly = BudgetConfig { project_monthly_micros: Some(40_000), ..BudgetConfig::default() };
    env.proxy.set_project_budget(env.project.id, monthly);

    // The other project spends 45,000 first: none of it counts against the cap.
    for _ in 0..3 {
        assert_eq!(call(&env, other_token.expose()).await.status(), 200);
    }
    assert_eq!(call(&env, env.token.expose()).await.status(), 200); // 15,000
    assert_eq!(call(&env, env.token.expose()).await.status(), 200); // 30,000

    // A restarted proxy seeds the project's month from the store: its own 30,000 only.
    let proxy = Proxy::builder(env.store.clone())
        .upstream(Upstream::new(ProviderKind::Anthropic, env.fake.url(), Some("k".into())))
        .project_budget(env.project.id, monthly)
        .build()
        .unwrap();
    let server = proxy.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let send = |token: RunToken| {
        let url = format!("{}/anthropic/v1/messages", server.url());
        let http = env.http.clone();
        async move {
            http.post(url)
                .header("x-api-key", token.expose())
                .json(&serde_json::json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (second_run, _) = env.another_run(2).await;
    let token = proxy.issue_token(second_run.id, env.project.id);
    assert_eq!(send(token.clone()).await, 200); // 45,000 ≥ 40,000 for the month
    proxy.settled().await;
    assert_eq!(send(token).await, 429);
    assert_eq!(proxy.budget_breach(second_run.id).map(|b| b.cap), Some(Cap::ProjectMonthly));
    // Every run of the capped project is stopped; the other project goes on.
    let first = proxy.issue_token(env.run.id, env.project.id);
    assert_eq!(send(first).await, 429);
    let other = proxy.issue_token(other_run.id, other.id);
    assert_eq!(send(other).await, 200);
}

#[tokio::test]
async fn a_cap_set_after_spending_counts_what_was_spent_and_clearing_restores_the_default() {
    let env = Env::new().await;
    env.fake.set_default(Canned::text("ok").usage(REQUEST_USAGE));
    assert_eq!(call(&env, env.token.expose()).await.status(), 200);
    assert_eq!(call(&env, env.token.expose()).await.status(), 200); // 30,000, no project cap yet

    let (run, token) = env.another_run(2).await;
    env.proxy.set_project_budget(
        env.project.id,
        BudgetConfig { project_daily_micros: Some(20_000), ..BudgetConfig::default() },
    );
    assert_eq!(call(&env, token.expose()).await.status(), 429, "today's 30,000 already exceed 20,000");
    assert_eq!(env.proxy.budget_breach(run.id).map(|b| b.cap), Some(Cap::ProjectDaily));

    env.proxy.clear_project_budget(env.project.id);
    assert_eq!(env.proxy.project_budget(env.project.id), env.proxy.default_budget());
    let (_, fresh) = env.another_run(3).await;
    assert_eq!(call(&env, fresh.expose()).await.status(), 200, "back on the default caps");
}

#[tokio::test]
async fn unpriced_models_are_refused_only_where_a_cost_cap_applies() {
    let env = Env::new().await;
    let (_, _, other_token) = other_project(&env).await;
    env.proxy.set_project_budget(
        env.project.id,
        BudgetConfig { run_cost_micros: Some(1_000_000), ..BudgetConfig::default() },
    );
    let resp = env.request(ProviderKind::OpenAi, env.token.expose(), "mystery-model-9", false).send().await.unwrap();
    assert_eq!(resp.status(), 403, "fail closed: its cost could not be counted");
    let resp = env.request(ProviderKind::OpenAi, other_token.expose(), "mystery-model-9", false).send().await.unwrap();
    assert_eq!(resp.status(), 200, "no cost cap on the other project");
}
