//! The rules selector (DESIGN §7), used alone or when the meta-agent fails.
//!
//! Rules, first match wins:
//!
//! 1. **budget-constrained** (a budget is set and the default model's
//!    estimated cost exceeds it) → the cheapest capable model;
//! 2. **complex** (complexity ≥ [`RulesConfig::complex_threshold`]) → the
//!    most capable model (highest `rank`) whose estimated cost fits the budget;
//! 3. **similar past success** (a merged or well-scored run of the same
//!    project on a similar issue, per the store's outcomes) → that run's model;
//! 4. otherwise → the configured default.
//!
//! "Capable" means able to call tools (agents need them) and a context
//! window of at least [`RulesConfig::min_context`].

use std::sync::Arc;

use async_trait::async_trait;
use paid_core::{ModelDecision, ModelSelector, SelectionRequest, Store};

use super::{Costed, TokenEstimate, estimate_complexity, options, similarity, usd};
use crate::prices::PriceRegistry;

/// Tunables of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesConfig {
    /// Rule 4's provider.
    pub default_provider: String,
    /// Rule 4's model.
    pub default_model: String,
    /// Complexity from which rule 2 applies (0.6).
    pub complex_threshold: f64,
    /// Smallest usable context window (32k tokens).
    pub min_context: u64,
    /// Similarity from which a past issue counts as similar (0.35).
    pub similarity_threshold: f64,
    /// Quality score from which an unmerged past run counts as a success (0.7).
    pub success_score: f64,
    /// How many recent outcomes rule 3 looks at (50).
    pub history: usize,
    /// Token estimate by complexity.
    pub estimate: TokenEstimate,
}

impl RulesConfig {
    /// The defaults, with `provider`/`model` as the default model.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            default_provider: provider.into(),
            default_model: model.into(),
            complex_threshold: 0.6,
            min_context: 32_000,
            similarity_threshold: 0.35,
            success_score: 0.7,
            history: 50,
            estimate: TokenEstimate::default(),
        }
    }
}

/// The task, as the rules (and the meta-agent) see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Issue body ("" when the store is not available).
    pub body: String,
    /// Complexity estimate.
    pub complexity: f64,
    /// Costed candidates.
    pub options: Vec<Costed>,
}

/// The rules selector.
#[derive(Clone)]
pub struct RulesSelector {
    config: RulesConfig,
    prices: Arc<PriceRegistry>,
    store: Option<Arc<dyn Store>>,
}

impl std::fmt::Debug for RulesSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesSelector").field("config", &self.config).finish()
    }
}

impl RulesSelector {
    /// Rules over `prices`. Without a store there is no issue body and no
    /// past-success rule.
    pub fn new(config: RulesConfig, prices: Arc<PriceRegistry>, store: Option<Arc<dyn Store>>) -> Self {
        Self { config, prices, store }
    }

    /// The tunables.
    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// Reads the issue body (through the store) and costs the candidates.
    pub async fn task(&self, req: &SelectionRequest) -> Task {
        let body = match &self.store {
            Some(store) => match store.run(req.run_id).await {
                Ok(run) => store.issue(run.project_id, run.issue_number).await.map(|i| i.body).unwrap_or_default(),
                Err(_) => String::new(),
            },
            None => String::new(),
        };
        let complexity = estimate_complexity(&req.title, &body, &req.labels);
        let options = options(&req.candidates, &self.prices, &self.config.estimate, complexity);
        Task { body, complexity, options }
    }

    fn capable<'a>(&self, task: &'a Task) -> Vec<&'a Costed> {
        task.options
            .iter()
            .filter(|o| o.info.as_ref().is_none_or(|i| i.capabilities.tools))
            .filter(|o| o.candidate.context_window.is_none_or(|w| w >= self.config.min_context))
            .collect()
    }

    /// Applies the four rules to an already prepared task.
    pub async fn decide(&self, req: &SelectionRequest, task: &Task) -> paid_core::Result<ModelDecision> {
        let capable = self.capable(task);
        let budget = req.budget_micros;
        let fits = |o: &Costed| match (budget, o.est_cost_micros) {
            (None, _) => true,
            (Some(b), Some(c)) => c <= b,
            (Some(_), None) => false,
        };
        let decision = |o: &Costed, reasoning: String| ModelDecision {
            run_id: req.run_id,
            provider: o.candidate.provider.clone(),
            model: o.candidate.model.clone(),
            selector: "rules".into(),
            reasoning,
            candidates: task.options.iter().map(|o| o.candidate.clone()).collect(),
            budget_micros: budget,
            complexity: Some(task.complexity),
            at: req.at,
        };
        let default = task.options.iter().find(|o| {
            o.candidate.provider == self.config.default_provider && o.candidate.model == self.config.default_model
        });
        let cost = |o: &Costed| o.est_cost_micros.map(usd).unwrap_or_else(|| "unknown".into());

        // 1. Budget-constrained: cheapest capable.
        if let Some(b) = budget {
            let default_fits = default.is_some_and(|d| d.est_cost_micros.is_some_and(|c| c <= b));
            if !default_fits {
                let cheapest = capable
                    .iter()
                    .filter(|o| o.est_cost_micros.is_some())
                    .min_by_key(|o| o.est_cost_micros.unwrap_or(i64::MAX));
                if let Some(o) = cheapest {
                    let why = match default {
                        Some(d) => format!("the default {} would cost about {}", d.candidate.model, cost(d)),
                        None => "the default model is not a candidate".into(),
                    };
                    let fit = if fits(o) { "" } else { "; even it may exceed the budget" };
                    return Ok(decision(
                        o,
                        format!(
                            "rule 1 (budget-constrained): budget {}, {why}; cheapest capable model is {} at about {}{fit}",
                            usd(b),
                            o.candidate.model,
                            cost(o)
                        ),
                    ));
                }
            }
        }

        // 2. Complex: most capable within budget.
        if task.complexity >= self.config.complex_threshold {
            let best = capable.iter().filter(|o| fits(o)).max_by(|a, b| {
                let rank = |o: &Costed| o.info.as_ref().map(|i| i.rank).unwrap_or(0);
                rank(a).cmp(&rank(b)).then_with(|| b.est_cost_micros.cmp(&a.est_cost_micros))
            });
            if let Some(o) = best {
                return Ok(decision(
                    o,
                    format!(
                        "rule 2 (complex, {:.2} ≥ {:.2}): most capable model within budget is {} at about {}",
                        task.complexity,
                        self.config.complex_threshold,
                        o.candidate.model,
                        cost(o)
                    ),
                ));
            }
        }

        // 3. Similar past success.
        if let Some((model, provider, sim, issue)) = self.similar_success(req).await
            && let Some(o) = capable
                .iter()
                .filter(|o| fits(o))
                .find(|o| o.candidate.model == model && o.candidate.provider == provider)
        {
            return Ok(decision(
                o,
                format!("rule 3 (similar past success): issue #{issue} (similarity {sim:.2}) succeeded with {model}"),
            ));
        }

        // 4. Default.
        match default {
            Some(o) => Ok(decision(o, format!("rule 4: the configured default {}", o.candidate.model))),
            None => Ok(ModelDecision {
                run_id: req.run_id,
                provider: self.config.default_provider.clone(),
                model: self.config.default_model.clone(),
                selector: "rules".into(),
                reasoning: format!(
                    "rule 4: the configured default {} (not among the candidates)",
                    self.config.default_model
                ),
                candidates: task.options.iter().map(|o| o.candidate.clone()).collect(),
                budget_micros: budget,
                complexity: Some(task.complexity),
                at: req.at,
            }),
        }
    }

    /// The model of the most similar successful past run of the project:
    /// (model, provider, similarity, issue number).
    async fn similar_success(&self, req: &SelectionRequest) -> Option<(String, String, f64, u64)> {
        let store = self.store.as_ref()?;
        let run = store.run(req.run_id).await.ok()?;
        let outcomes = store.outcomes(run.project_id).await.ok()?;
        let mut best: Option<(String, String, f64, u64)> = None;
        for o in outcomes.iter().filter(|o| o.run_id != req.run_id).take(self.config.history) {
            let success = o.pr_merged == Some(true) || o.quality_score.is_some_and(|q| q >= self.config.success_score);
            if !success {
                continue;
            }
            let Ok(Some(decision)) = store.decision(o.run_id).await else { continue };
            let Ok(past_run) = store.run(o.run_id).await else { continue };
            let Ok(issue) = store.issue(past_run.project_id, past_run.issue_number).await else { continue };
            let sim = similarity(&req.title, &req.labels, &issue.title, &issue.labels);
            if sim >= self.config.similarity_threshold && best.as_ref().is_none_or(|b| sim > b.2) {
                best = Some((decision.model, decision.provider, sim, issue.number));
            }
        }
        best
    }
}

#[async_trait]
impl ModelSelector for RulesSelector {
    async fn select(&self, req: &SelectionRequest) -> paid_core::Result<ModelDecision> {
        let task = self.task(req).await;
        self.decide(req, &task).await
    }
}
