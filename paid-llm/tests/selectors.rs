//! The rules selector's four rules, the meta-agent and its fallbacks, and
//! per-project overrides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use paid_core::testing::fixtures;
use paid_core::{
    ChatEvent, ChatRequest, ChatResponse, FixedSelector, LlmProvider, ModelCandidate, ModelDecision, ModelSelector,
    Project, Run, SelectionRequest, Store, TrackedIssue, Usage,
};
use paid_llm::prices::PriceRegistry;
use paid_llm::selectors::meta::MetaSelector;
use paid_llm::selectors::overrides::{Match, Overrides, ProjectOverrides};
use paid_llm::selectors::rules::{RulesConfig, RulesSelector};
use paid_store_sqlite::SqliteStore;

fn prices() -> Arc<PriceRegistry> {
    Arc::new(PriceRegistry::builtin().unwrap())
}

fn candidates() -> Vec<ModelCandidate> {
    [
        ("anthropic", "claude-opus-4-5"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("openai", "gpt-5"),
        ("openai", "gpt-5-mini"),
    ]
    .into_iter()
    .map(|(p, m)| ModelCandidate { provider: p.into(), model: m.into(), context_window: None, usd_per_mtok: None })
    .collect()
}

struct World {
    store: Arc<dyn Store>,
    project: Project,
}

impl World {
    async fn new() -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let project = fixtures::project("widgets");
        store.put_project(&project).await.unwrap();
        Self { store, project }
    }

    async fn run(&self, number: u64, title: &str, body: &str, labels: &[&str]) -> Run {
        let issue = TrackedIssue {
            title: title.into(),
            body: body.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..fixtures::issue(self.project.id, number)
        };
        self.store.put_issue(&issue).await.unwrap();
        self.store.create_run(&fixtures::new_run(self.project.id, number)).await.unwrap()
    }

    async fn request(
        &self,
        number: u64,
        title: &str,
        body: &str,
        labels: &[&str],
        budget: Option<i64>,
    ) -> SelectionRequest {
        let run = self.run(number, title, body, labels).await;
        SelectionRequest {
            run_id: run.id,
            title: title.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            candidates: candidates(),
            budget_micros: budget,
            at: chrono::Utc::now(),
        }
    }

    fn rules(&self, default_model: &str) -> RulesSelector {
        let provider = if default_model.starts_with("gpt") { "openai" } else { "anthropic" };
        RulesSelector::new(RulesConfig::new(provider, default_model), prices(), Some(self.store.clone()))
    }
}

const DOLLAR: i64 = 1_000_000;

#[tokio::test]
async fn rule_4_a_plain_task_gets_the_default() {
    let w = World::new().await;
    let req = w.request(1, "Fix typo in README", "Teh -> The", &["paid-build", "docs"], None).await;
    let d = w.rules("claude-sonnet-4-5").select(&req).await.unwrap();
    assert_eq!(
        (d.provider.as_str(), d.model.as_str(), d.selector.as_str()),
        ("anthropic", "claude-sonnet-4-5", "rules")
    );
    assert!(d.reasoning.starts_with("rule 4"), "{}", d.reasoning);
    assert!(d.complexity.unwrap() < 0.3, "{d:?}");
    assert_eq!(d.candidates.len(), 5);
    // Candidates are completed from the price registry.
    assert!(d.candidates.iter().all(|c| c.context_window.is_some() && c.usd_per_mtok.is_some()));
}

#[tokio::test]
async fn rule_1_a_tight_budget_gets_the_cheapest_capable_model() {
    let w = World::new().await;
    let req = w.request(1, "Fix the date parser", "", &["paid-build", "bug"], Some(DOLLAR / 2)).await;
    let d = w.rules("claude-sonnet-4-5").select(&req).await.unwrap();
    assert_eq!(d.model, "gpt-5-mini");
    assert!(d.reasoning.starts_with("rule 1 (budget-constrained)"), "{}", d.reasoning);
    assert_eq!(d.budget_micros, Some(DOLLAR / 2));
}

#[tokio::test]
async fn rule_2_a_complex_task_gets_the_most_capable_model_within_budget() {
    let w = World::new().await;
    let title = "Refactor the scheduler architecture for concurrency";
    let body = "The scheduler has a race and a deadlock.\n- [ ] split\n- [ ] lock order\n- [ ] tests\n";
    let req = w.request(1, title, body, &["paid-build", "complex"], None).await;
    let d = w.rules("gpt-5-mini").select(&req).await.unwrap();
    assert_eq!(d.model, "claude-opus-4-5");
    assert!(d.reasoning.starts_with("rule 2"), "{}", d.reasoning);
    assert!(d.complexity.unwrap() >= 0.6);

    // Within $12 Opus (≈ $17.50 for this task) is out; Sonnet (≈ $10.50) is the most capable left.
    let req = w.request(2, title, body, &["paid-build", "complex"], Some(12 * DOLLAR)).await;
    let d = w.rules("gpt-5-mini").select(&req).await.unwrap();
    assert_eq!(d.model, "claude-sonnet-4-5", "{}", d.reasoning);
}

#[tokio::test]
async fn rule_3_a_similar_past_success_reuses_its_model() {
    let w = World::new().await;
    let past = w.run(7, "Fix flaky retry test in the scheduler", "", &["paid-build", "bug"]).await;
    w.store
        .record_decision(&ModelDecision {
            run_id: past.id,
            provider: "openai".into(),
            model: "gpt-5".into(),
            ..fixtures::decision(past.id)
        })
        .await
        .unwrap();
    w.store.record_outcome(&fixtures::outcome(w.project.id, past.id, fixtures::at(60))).await.unwrap();
    // A failed past run on a similar issue does not count.
    let failed = w.run(8, "Fix flaky retry test in the scheduler again", "", &["paid-build", "bug"]).await;
    w.store
        .record_decision(&ModelDecision { model: "claude-haiku-4-5".into(), ..fixtures::decision(failed.id) })
        .await
        .unwrap();
    w.store
        .record_outcome(&paid_core::Outcome {
            pr_merged: Some(false),
            quality_score: Some(0.2),
            ..fixtures::outcome(w.project.id, failed.id, fixtures::at(90))
        })
        .await
        .unwrap();

    let req = w.request(9, "Fix flaky retry test in scheduler", "", &["paid-build", "bug"], None).await;
    let d = w.rules("gpt-5-mini").select(&req).await.unwrap();
    assert_eq!(d.model, "gpt-5", "{}", d.reasoning);
    assert!(d.reasoning.starts_with("rule 3 (similar past success): issue #7"), "{}", d.reasoning);

    // An unrelated issue falls through to the default.
    let req = w.request(10, "Add a dark mode toggle", "", &["paid-build"], None).await;
    assert_eq!(w.rules("gpt-5-mini").select(&req).await.unwrap().model, "gpt-5-mini");
}

/// A meta-agent LLM with a scripted answer.
struct ScriptedLlm {
    answer: paid_core::Result<String>,
    delay: Duration,
    seen: Mutex<Vec<ChatRequest>>,
}

impl ScriptedLlm {
    fn says(text: &str) -> Arc<Self> {
        Arc::new(Self { answer: Ok(text.into()), delay: Duration::ZERO, seen: Mutex::new(vec![]) })
    }
}

#[async_trait]
impl LlmProvider for ScriptedLlm {
    fn name(&self) -> &str {
        "openai"
    }

    async fn complete(&self, req: &ChatRequest) -> paid_core::Result<ChatResponse> {
        self.seen.lock().unwrap().push(req.clone());
        // not an assertion: the scripted model's latency
        tokio::time::sleep(self.delay).await;
        match &self.answer {
            Ok(text) => Ok(ChatResponse {
                content: text.clone(),
                tool_calls: vec![],
                stop_reason: "end_turn".into(),
                usage: Usage { input: 800, output: 40, ..Usage::default() },
            }),
            Err(_) => Err(paid_core::Error::Backend {
                backend: "llm",
                message: "HTTP 500".into(),
                retryable: true,
                source: None,
            }),
        }
    }

    async fn stream(&self, _req: &ChatRequest) -> paid_core::Result<BoxStream<'static, paid_core::Result<ChatEvent>>> {
        unimplemented!("the meta-agent does not stream")
    }
}

fn meta(w: &World, llm: Arc<ScriptedLlm>) -> MetaSelector {
    MetaSelector::new(llm, "gpt-5-nano", w.rules("claude-sonnet-4-5"), prices(), Some(w.store.clone()))
}

#[tokio::test]
async fn the_meta_agent_picks_from_the_candidates_and_sees_the_task() {
    let w = World::new().await;
    let llm = ScriptedLlm::says("```json\n{\"model\": \"claude-haiku-4-5\", \"reasoning\": \"A one-line fix.\"}\n```");
    let body = "x".repeat(5_000);
    let req = w.request(1, "Fix the off-by-one in pagination", &body, &["paid-build", "bug"], Some(5 * DOLLAR)).await;
    let d = meta(&w, llm.clone()).select(&req).await.unwrap();
    assert_eq!(
        (d.provider.as_str(), d.model.as_str(), d.selector.as_str()),
        ("anthropic", "claude-haiku-4-5", "meta_agent")
    );
    assert_eq!(d.reasoning, "A one-line fix.");
    assert_eq!(d.budget_micros, Some(5 * DOLLAR));
    assert!(d.complexity.is_some());

    let seen = llm.seen.lock().unwrap().clone();
    assert_eq!(seen[0].model, "gpt-5-nano");
    let prompt: serde_json::Value = serde_json::from_str(&seen[0].messages[0].content).unwrap();
    assert_eq!(prompt["task"]["title"], "Fix the off-by-one in pagination");
    assert_eq!(prompt["task"]["body"].as_str().unwrap().len(), 2_000);
    assert_eq!(prompt["task"]["body_truncated"], true);
    assert_eq!(prompt["task"]["labels"], serde_json::json!(["paid-build", "bug"]));
    assert_eq!(prompt["budget_usd"], 5.0);
    let haiku = prompt["candidates"].as_array().unwrap().iter().find(|c| c["model"] == "claude-haiku-4-5").unwrap();
    assert_eq!(haiku["context_window"], 200_000);
    assert!(haiku["estimated_cost_usd"].as_f64().unwrap() > 0.0);

    // The meta-agent's own tokens are the run's usage.
    let usage = w.store.usage(req.run_id).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].model, "gpt-5-nano");
    assert_eq!(usage[0].usage.input, 800);
    assert!(usage[0].cost_micros.is_some());
}

#[tokio::test(start_paused = true)]
async fn the_meta_agent_falls_back_to_the_rules_after_5_seconds() {
    let w = World::new().await;
    let slow = Arc::new(ScriptedLlm {
        answer: Ok(r#"{"model": "claude-opus-4-5", "reasoning": "late"}"#.into()),
        delay: Duration::from_secs(60),
        seen: Mutex::new(vec![]),
    });
    let req = w.request(1, "Fix typo in README", "", &["paid-build", "docs"], None).await;
    let started = tokio::time::Instant::now();
    let d = meta(&w, slow).select(&req).await.unwrap();
    assert_eq!(started.elapsed().as_secs(), 5);
    assert_eq!(d.selector, "rules");
    assert_eq!(d.model, "claude-sonnet-4-5");
    assert!(
        d.reasoning.starts_with("meta-agent fallback: the meta-agent timed out after 5s; rule 4"),
        "{}",
        d.reasoning
    );
}

#[tokio::test]
async fn the_meta_agent_falls_back_on_garbage_output() {
    let w = World::new().await;
    let req = w.request(1, "Fix typo in README", "", &["paid-build", "docs"], None).await;
    let d = meta(&w, ScriptedLlm::says("Honestly? Go with the big one.")).select(&req).await.unwrap();
    assert_eq!((d.selector.as_str(), d.model.as_str()), ("rules", "claude-sonnet-4-5"));
    assert!(d.reasoning.contains("not the JSON asked for"), "{}", d.reasoning);
}

#[tokio::test]
async fn the_meta_agent_falls_back_on_an_over_budget_choice() {
    let w = World::new().await;
    let req = w.request(1, "Fix the date parser", "", &["paid-build", "bug"], Some(DOLLAR / 2)).await;
    let d =
        meta(&w, ScriptedLlm::says(r#"{"model": "claude-opus-4-5", "reasoning": "best"}"#)).select(&req).await.unwrap();
    assert_eq!(d.selector, "rules");
    assert_eq!(d.model, "gpt-5-mini", "the rules pick the cheapest capable model under a tight budget");
    assert!(d.reasoning.contains("over the budget of $0.50"), "{}", d.reasoning);
    assert!(d.reasoning.contains("rule 1"), "{}", d.reasoning);
}

#[tokio::test]
async fn the_meta_agent_falls_back_on_an_unknown_model_or_a_failure() {
    let w = World::new().await;
    let req = w.request(1, "Fix typo in README", "", &["paid-build"], None).await;
    let d =
        meta(&w, ScriptedLlm::says(r#"{"model": "gpt-9-ultra", "reasoning": "newest"}"#)).select(&req).await.unwrap();
    assert_eq!(d.selector, "rules");
    assert!(d.reasoning.contains("\"gpt-9-ultra\", which is not a candidate"), "{}", d.reasoning);

    let broken = Arc::new(ScriptedLlm {
        answer: Err(paid_core::Error::Cancelled),
        delay: Duration::ZERO,
        seen: Mutex::new(vec![]),
    });
    let d = meta(&w, broken).select(&req).await.unwrap();
    assert_eq!(d.selector, "rules");
    assert!(d.reasoning.contains("the meta-agent failed"), "{}", d.reasoning);
}

#[tokio::test]
async fn overrides_exclude_require_and_prefer() {
    let w = World::new().await;
    let req = w.request(1, "Fix typo in README", "", &["paid-build", "docs"], None).await;
    let rules: Arc<dyn ModelSelector> = Arc::new(w.rules("claude-sonnet-4-5"));

    // Exclude a provider: the default is Anthropic, so the rules fall back to the first allowed.
    let o = Overrides::new(rules.clone(), w.store.clone()).project(
        w.project.id,
        ProjectOverrides { exclude: vec![Match::Provider("anthropic".into())], ..Default::default() },
    );
    let d = o.select(&req).await.unwrap();
    assert_eq!(d.provider, "openai", "{d:?}");
    assert!(d.candidates.iter().all(|c| c.provider == "openai"));

    // Require one model.
    let o = Overrides::new(rules.clone(), w.store.clone())
        .project(w.project.id, ProjectOverrides { require: vec![Match::Model("gpt-5".into())], ..Default::default() });
    assert_eq!(o.select(&req).await.unwrap().model, "gpt-5");

    // Prefer: chosen outright when allowed.
    let o = Overrides::new(rules.clone(), w.store.clone()).project(
        w.project.id,
        ProjectOverrides {
            prefer: vec![Match::Model("claude-opus-4-5".into()), Match::Provider("openai".into())],
            exclude: vec![Match::Model("claude-opus-4-5".into())],
            ..Default::default()
        },
    );
    let d = o.select(&req).await.unwrap();
    assert_eq!((d.provider.as_str(), d.selector.as_str()), ("openai", "override"));

    // Another project is unaffected; a selector ignoring candidates is corrected.
    let fixed: Arc<dyn ModelSelector> =
        Arc::new(FixedSelector { provider: "anthropic".into(), model: "claude-opus-4-5".into() });
    let o = Overrides::new(fixed, w.store.clone())
        .all_projects(ProjectOverrides { exclude: vec![Match::Model("claude-opus-4-5".into())], ..Default::default() });
    let d = o.select(&req).await.unwrap();
    assert_eq!(d.model, "claude-sonnet-4-5");
    assert!(d.reasoning.contains("not allowed for this project"), "{}", d.reasoning);

    // Excluding everything is an error that says so.
    let o = Overrides::new(rules, w.store.clone())
        .all_projects(ProjectOverrides { require: vec![Match::Provider("mistral".into())], ..Default::default() });
    let err = o.select(&req).await.unwrap_err();
    assert!(err.to_string().contains("exclude every candidate"), "{err}");
}
