//! [`ModelSelector`](paid_core::ModelSelector) implementations.
//!
//! - [`rules::RulesSelector`]: the four rules of DESIGN §7, in order:
//!   budget-constrained → cheapest capable; complex → most capable within
//!   budget; similar past success → that model; otherwise the default.
//! - [`meta::MetaSelector`]: asks a cheap LLM, and falls back to the rules.
//! - [`overrides::Overrides`]: a wrapper applying per-project prefer /
//!   require / exclude rules to any selector.
//!
//! The task estimate (complexity, tokens, cost per candidate) is shared:
//! pure functions over the request, the price registry and the issue text.

pub mod meta;
pub mod overrides;
pub mod rules;

use std::collections::HashSet;

use paid_core::ModelCandidate;

use crate::prices::{ModelInfo, PriceRegistry};

/// How many tokens a run is expected to use, by complexity.
///
/// An agent run re-reads its context every turn, so input dominates. The
/// defaults (0.2M input and 10k output for a trivial task, up to 3M and
/// 100k for the most complex) are a starting point, to be calibrated
/// against recorded usage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenEstimate {
    /// Input tokens at complexity 0.
    pub base_input: u64,
    /// Added input tokens at complexity 1.
    pub input_per_complexity: u64,
    /// Output tokens at complexity 0.
    pub base_output: u64,
    /// Added output tokens at complexity 1.
    pub output_per_complexity: u64,
}

impl Default for TokenEstimate {
    fn default() -> Self {
        Self {
            base_input: 200_000,
            input_per_complexity: 2_800_000,
            base_output: 10_000,
            output_per_complexity: 90_000,
        }
    }
}

impl TokenEstimate {
    /// (input, output) tokens for `complexity` in [0, 1].
    pub fn tokens(&self, complexity: f64) -> (u64, u64) {
        let c = complexity.clamp(0.0, 1.0);
        (
            self.base_input + (self.input_per_complexity as f64 * c) as u64,
            self.base_output + (self.output_per_complexity as f64 * c) as u64,
        )
    }
}

const HARD_WORDS: [&str; 14] = [
    "refactor",
    "architecture",
    "redesign",
    "migrate",
    "migration",
    "concurrency",
    "race",
    "deadlock",
    "security",
    "performance",
    "distributed",
    "rewrite",
    "complex",
    "epic",
];
const EASY_WORDS: [&str; 10] =
    ["typo", "docs", "documentation", "readme", "rename", "trivial", "easy", "chore", "comment", "bump"];

/// A complexity estimate in [0, 1] from the title, body and labels.
///
/// Labels such as `complex`, `hard`, `epic` or `good first issue` weigh
/// most; then words of the title and body; then the body's length and the
/// number of task-list items.
pub fn estimate_complexity(title: &str, body: &str, labels: &[String]) -> f64 {
    let mut score: f64 = 0.35;
    for l in labels.iter().map(|l| l.to_ascii_lowercase()) {
        if ["complex", "hard", "epic", "difficulty: hard", "large", "size/l", "size/xl"].contains(&l.as_str()) {
            score += 0.35;
        } else if ["good first issue", "easy", "trivial", "documentation", "docs", "size/xs", "size/s", "typo"]
            .contains(&l.as_str())
        {
            score -= 0.25;
        } else if ["refactor", "performance", "security", "architecture"].contains(&l.as_str()) {
            score += 0.2;
        }
    }
    let text = format!("{title} {body}").to_ascii_lowercase();
    let words: HashSet<&str> = text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    score += 0.08 * HARD_WORDS.iter().filter(|w| words.contains(**w)).count().min(3) as f64;
    score -= 0.08 * EASY_WORDS.iter().filter(|w| words.contains(**w)).count().min(2) as f64;
    score += (body.len() as f64 / 4000.0).min(0.15);
    let tasks = body.lines().filter(|l| l.trim_start().starts_with("- [")).count();
    score += (tasks as f64 * 0.03).min(0.15);
    score.clamp(0.0, 1.0)
}

/// Word-set similarity (Jaccard) of two issues' titles and labels, in [0, 1].
pub fn similarity(a_title: &str, a_labels: &[String], b_title: &str, b_labels: &[String]) -> f64 {
    let set = |title: &str, labels: &[String]| -> HashSet<String> {
        title
            .to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() > 2)
            .map(str::to_string)
            .chain(
                labels.iter().filter(|l| !l.starts_with("paid-")).map(|l| format!("label:{}", l.to_ascii_lowercase())),
            )
            .collect()
    };
    let (a, b) = (set(a_title, a_labels), set(b_title, b_labels));
    let union = a.union(&b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// A candidate with what the registry knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Costed {
    /// The candidate, with context window and blended price filled in from
    /// the registry where the request left them out.
    pub candidate: ModelCandidate,
    /// The registry entry, if the model is known.
    pub info: Option<ModelInfo>,
    /// Estimated cost of the task on it, micro-USD.
    pub est_cost_micros: Option<i64>,
}

/// Candidates for a request, enriched and costed for `complexity`.
pub(crate) fn options(
    candidates: &[ModelCandidate],
    prices: &PriceRegistry,
    estimate: &TokenEstimate,
    complexity: f64,
) -> Vec<Costed> {
    let list: Vec<ModelCandidate> = if candidates.is_empty() { prices.candidates() } else { candidates.to_vec() };
    let (input, output) = estimate.tokens(complexity);
    list.into_iter()
        .map(|mut c| {
            let info = prices.model(&c.provider, &c.model).cloned();
            if let Some(i) = &info {
                c.context_window = c.context_window.or(i.context_window);
                c.usd_per_mtok = c.usd_per_mtok.or_else(|| i.current_price().map(|p| p.blended_usd_per_mtok()));
            }
            let est_cost_micros = match info.as_ref().and_then(|i| i.current_price()) {
                Some(p) => Some(p.cost_micros(&paid_core::Usage { input, output, ..Default::default() })),
                None => c.usd_per_mtok.map(|usd| ((input + output) as f64 * usd).round() as i64),
            };
            Costed { candidate: c, info, est_cost_micros }
        })
        .collect()
}

/// `$1.23` from micro-USD.
pub(crate) fn usd(micros: i64) -> String {
    format!("${:.2}", micros as f64 / 1e6)
}
