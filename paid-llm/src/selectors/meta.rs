//! The meta-agent selector: a cheap LLM picks the model, the rules catch it.
//!
//! The LLM gets the task (title, body truncated to
//! [`MetaSelector::body_chars`], labels, budget, complexity estimate) and
//! the candidates (with estimated cost and context window), and must answer
//! with one JSON object `{"model": "...", "reasoning": "..."}`. When the
//! call fails or takes longer than the timeout (5 s), the answer is not that
//! JSON, names no candidate, or picks a model whose estimated cost exceeds
//! the budget, the [`RulesSelector`] decides instead, and the decision's
//! reasoning says why the meta-agent was overruled.
//!
//! The meta-agent's own tokens are recorded as usage of the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use paid_core::{
    ChatRequest, LlmProvider, Message, ModelDecision, ModelSelector, SelectionRequest, Store, UsageRecord,
};
use serde::Deserialize;
use serde_json::json;

use super::rules::{RulesSelector, Task};
use super::usd;
use crate::prices::PriceRegistry;

const SYSTEM: &str = "You choose which language model a coding agent should use for a GitHub issue. \
Prefer the cheapest model that can do the task well; use a more capable model for complex work. \
Never pick a model whose estimated cost exceeds the budget. \
Answer with one JSON object and nothing else: {\"model\": \"<one of the candidate model names>\", \"reasoning\": \"<one sentence>\"}";

/// The meta-agent selector.
#[derive(Clone)]
pub struct MetaSelector {
    llm: Arc<dyn LlmProvider>,
    model: String,
    rules: RulesSelector,
    prices: Arc<PriceRegistry>,
    store: Option<Arc<dyn Store>>,
    timeout: Duration,
    body_chars: usize,
}

impl std::fmt::Debug for MetaSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaSelector")
            .field("llm", &self.llm.name())
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Pick {
    model: String,
    #[serde(default)]
    reasoning: String,
}

impl MetaSelector {
    /// Asks `model` on `llm`, falling back to `rules`. With a store, the
    /// meta-agent's usage is recorded against the run.
    pub fn new(
        llm: Arc<dyn LlmProvider>,
        model: impl Into<String>,
        rules: RulesSelector,
        prices: Arc<PriceRegistry>,
        store: Option<Arc<dyn Store>>,
    ) -> Self {
        Self { llm, model: model.into(), rules, prices, store, timeout: Duration::from_secs(5), body_chars: 2_000 }
    }

    /// Sets the time limit on the LLM call (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how much of the issue body the LLM sees (default 2,000 characters).
    pub fn body_chars(mut self, n: usize) -> Self {
        self.body_chars = n;
        self
    }

    fn prompt(&self, req: &SelectionRequest, task: &Task) -> String {
        let body: String = task.body.chars().take(self.body_chars).collect();
        let truncated = task.body.chars().count() > self.body_chars;
        let candidates: Vec<_> = task
            .options
            .iter()
            .map(|o| {
                json!({
                    "provider": o.candidate.provider,
                    "model": o.candidate.model,
                    "context_window": o.candidate.context_window,
                    "usd_per_million_tokens": o.candidate.usd_per_mtok,
                    "estimated_cost_usd": o.est_cost_micros.map(|c| c as f64 / 1e6),
                    "capability_rank": o.info.as_ref().map(|i| i.rank),
                })
            })
            .collect();
        json!({
            "task": {
                "title": req.title,
                "body": body,
                "body_truncated": truncated,
                "labels": req.labels,
                "complexity_estimate": (task.complexity * 100.0).round() / 100.0,
            },
            "budget_usd": req.budget_micros.map(|b| b as f64 / 1e6),
            "candidates": candidates,
        })
        .to_string()
    }

    async fn ask(&self, req: &SelectionRequest, task: &Task) -> Result<ModelDecision, String> {
        let chat = ChatRequest {
            model: self.model.clone(),
            system: Some(SYSTEM.into()),
            messages: vec![Message::user(self.prompt(req, task))],
            tools: vec![],
            max_tokens: 300,
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, self.llm.complete(&chat)).await;
        let (status, usage) = match &answer {
            Ok(Ok(r)) => ("200".to_string(), Some(r.usage)),
            Ok(Err(e)) => (e.code().to_string(), None),
            Err(_) => ("timeout".to_string(), None),
        };
        self.record(req, status, usage, started.elapsed()).await;
        let resp = match answer {
            Err(_) => return Err(format!("the meta-agent timed out after {:?}", self.timeout)),
            Ok(Err(e)) => return Err(format!("the meta-agent failed: {e}")),
            Ok(Ok(r)) => r,
        };
        let pick = parse_pick(&resp.content).ok_or_else(|| {
            format!("the meta-agent's answer is not the JSON asked for: {:?}", preview(&resp.content))
        })?;
        let wanted = pick.model.trim();
        let option = task
            .options
            .iter()
            .find(|o| {
                o.candidate.model == wanted || format!("{}/{}", o.candidate.provider, o.candidate.model) == wanted
            })
            .ok_or_else(|| format!("the meta-agent picked {wanted:?}, which is not a candidate"))?;
        if let Some(b) = req.budget_micros {
            match option.est_cost_micros {
                Some(c) if c <= b => {}
                Some(c) => {
                    return Err(format!(
                        "the meta-agent picked {wanted}, estimated at {} over the budget of {}",
                        usd(c),
                        usd(b)
                    ));
                }
                None => return Err(format!("the meta-agent picked {wanted}, whose cost is unknown, under a budget")),
            }
        }
        Ok(ModelDecision {
            run_id: req.run_id,
            provider: option.candidate.provider.clone(),
            model: option.candidate.model.clone(),
            selector: "meta_agent".into(),
            reasoning: if pick.reasoning.trim().is_empty() { "(no reasoning given)".into() } else { pick.reasoning },
            candidates: task.options.iter().map(|o| o.candidate.clone()).collect(),
            budget_micros: req.budget_micros,
            complexity: Some(task.complexity),
            at: req.at,
        })
    }

    async fn record(&self, req: &SelectionRequest, status: String, usage: Option<paid_core::Usage>, took: Duration) {
        let Some(store) = &self.store else { return };
        let cost = usage.and_then(|u| self.prices.cost_micros(self.llm.name(), &self.model, &u, req.at));
        let record = UsageRecord {
            run_id: req.run_id,
            provider: self.llm.name().to_string(),
            model: self.model.clone(),
            usage: usage.unwrap_or_default(),
            cost_micros: cost,
            latency_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            status,
            at: req.at,
        };
        if let Err(e) = store.record_usage(&record).await {
            tracing::warn!(error = %e, "cannot record the meta-agent's usage");
        }
    }
}

fn preview(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The first JSON object in `text` (tolerating code fences and prose around it)
/// that has a `model` field.
fn parse_pick(text: &str) -> Option<Pick> {
    if let Ok(p) = serde_json::from_str::<Pick>(text.trim()) {
        return Some(p);
    }
    let mut search = text;
    while let Some(start) = search.find('{') {
        let candidate = &search[start..];
        let mut de = serde_json::Deserializer::from_str(candidate).into_iter::<serde_json::Value>();
        if let Some(Ok(v)) = de.next()
            && let Ok(p) = serde_json::from_value::<Pick>(v)
        {
            return Some(p);
        }
        search = &candidate[1..];
    }
    None
}

#[async_trait]
impl ModelSelector for MetaSelector {
    async fn select(&self, req: &SelectionRequest) -> paid_core::Result<ModelDecision> {
        let task = self.rules.task(req).await;
        match self.ask(req, &task).await {
            Ok(d) => Ok(d),
            Err(why) => {
                tracing::info!(run_id = %req.run_id, reason = %why, "meta-agent overruled; using the rules");
                let mut d = self.rules.decide(req, &task).await?;
                d.reasoning = format!("meta-agent fallback: {why}; {}", d.reasoning);
                Ok(d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_json_out_of_prose() {
        let p = parse_pick("Sure! ```json\n{\"model\": \"gpt-5-mini\", \"reasoning\": \"simple\"}\n```").unwrap();
        assert_eq!(p.model, "gpt-5-mini");
        assert!(parse_pick("I think gpt-5").is_none());
        assert!(parse_pick("{\"choice\": 1}").is_none());
    }
}
