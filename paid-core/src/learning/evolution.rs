//! The evolution workflow: propose variants of a prompt that scores poorly,
//! and start an experiment with them.
//!
//! Pure steps, in order, then the async [`evolve`] that sequences them over
//! the ports:
//!
//! 1. [`check`]: skip when an experiment on the prompt is running, when it
//!    evolved within the cooldown (7 days), when its active version has
//!    fewer than 20 scored runs, or when their mean quality is ≥ 0.85;
//! 2. the strategy's [`propose_mutations`](EvolutionStrategy::propose_mutations)
//!    sets how many mutations to ask for and from how many runs;
//! 3. [`sample_runs`]: the lowest- and highest-scoring runs, with their
//!    feedback (review comments, CI failure digest, iterations);
//! 4. [`mutation_request`]: the LLM request, asking for at most N mutations
//!    as JSON `{template, reasoning, expected_improvement}`;
//! 5. [`parse_mutations`] reads the answer, tolerating prose and code fences
//!    around the JSON; [`validate_mutations`] keeps those that render with
//!    exactly the parent's declared variables;
//! 6. the strategy's [`review_mutations`](EvolutionStrategy::review_mutations)
//!    picks the ones to keep; they become [`PromptVersion`]s with the active
//!    version as parent, and an [`Experiment`] against it starts.
//!
//! ```
//! use paid_core::learning::evolution::parse_mutations;
//!
//! let answer = "Here you go:\n```json\n{\"mutations\": [{\"template\": \"Fix {{ issue.title }}\", \
//!               \"reasoning\": \"shorter\", \"expected_improvement\": 0.05}, {\"reasoning\": \"no template\"}]}\n```";
//! let (ok, rejected) = parse_mutations(answer, 3);
//! assert_eq!(ok.len(), 1);
//! assert_eq!(ok[0].1.expected_improvement, "0.05");
//! assert_eq!(rejected.len(), 1);
//! ```

use std::collections::BTreeSet;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::experiment::{Allocation, Arm, Experiment, ExperimentStatus, Metric, PromotionRule, Variant};
use super::prompts::{CreatedBy, Prompt, PromptVersion};
use super::strategy::{
    EvolutionStrategy, MutationCandidate, MutationContext, MutationPlan, MutationReview, check_selection,
};
use super::{ExperimentId, PromptVersionId};
use crate::ports::learning::{ExperimentFilter, LearningStore};
use crate::{ChatRequest, Clock, Ids, LlmProvider, Message, ProjectId, Result, RunId, Timestamp};

/// What a run's reviewers and checks said, for the evolution LLM. Comments
/// must already be filtered to trusted authors (DESIGN §6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFeedback {
    /// Review comments on the PR.
    pub review_comments: Vec<String>,
    /// A digest of CI failures.
    pub ci_failure_digest: Option<String>,
    /// Agent iterations.
    pub iterations: u32,
}

/// A scored run of a prompt version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunScore {
    /// The run.
    pub run_id: RunId,
    /// Its project.
    pub project_id: ProjectId,
    /// The prompt version it used.
    pub prompt_version_id: PromptVersionId,
    /// Its quality score.
    pub score: f64,
    /// Its feedback.
    pub feedback: RunFeedback,
    /// When scored.
    pub scored_at: Timestamp,
}

/// How experiments started by evolution are set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExperimentSettings {
    /// Allocation.
    pub allocation: Allocation,
    /// Metric.
    pub metric: Metric,
    /// Score that counts as a success.
    pub success_threshold: f64,
    /// Promotion rule.
    pub rule: PromotionRule,
    /// Sample budget.
    pub max_samples: u64,
    /// Whether a human approves promotions.
    pub require_approval: bool,
}

impl Default for ExperimentSettings {
    fn default() -> Self {
        Self {
            allocation: Allocation::default(),
            metric: Metric::Success,
            success_threshold: 0.7,
            rule: PromotionRule::default(),
            max_samples: 1000,
            require_approval: false,
        }
    }
}

/// Settings of the evolution workflow (DESIGN §7 and issue 8 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvolutionConfig {
    /// Scored runs the active version needs.
    pub min_scored_runs: u64,
    /// Mean quality at or above which the prompt is left alone.
    pub quality_target: f64,
    /// Days between two evolutions of one prompt.
    pub cooldown_days: i64,
    /// Lowest-scoring runs shown to the LLM.
    pub sample_low: u32,
    /// Highest-scoring runs shown to the LLM.
    pub sample_high: u32,
    /// Most mutations asked for and kept.
    pub max_mutations: u32,
    /// The model asked.
    pub model: String,
    /// Its output cap.
    pub max_tokens: u32,
    /// Characters of feedback shown per run.
    pub max_feedback_chars: usize,
    /// The experiment started with the mutations.
    pub experiment: ExperimentSettings,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        Self {
            min_scored_runs: 20,
            quality_target: 0.85,
            cooldown_days: 7,
            sample_low: 5,
            sample_high: 5,
            max_mutations: 3,
            model: "default".into(),
            max_tokens: 4096,
            max_feedback_chars: 2000,
            experiment: ExperimentSettings::default(),
        }
    }
}

/// Why evolution did not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// The prompt has no active version to mutate.
    NoActiveVersion,
    /// An experiment on the prompt is still running.
    ExperimentRunning {
        /// The experiment.
        experiment: ExperimentId,
    },
    /// The prompt evolved within the cooldown.
    EvolvedRecently {
        /// When it last evolved.
        at: Timestamp,
        /// When it may evolve again.
        next: Timestamp,
    },
    /// Too few scored runs to judge the prompt.
    TooFewScoredRuns {
        /// Runs scored.
        have: u64,
        /// Runs needed.
        need: u64,
    },
    /// The prompt already scores well.
    QualityHighEnough {
        /// Mean quality.
        mean: f64,
        /// The target.
        target: f64,
    },
}

/// The active version's record when evolution may run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// Scored runs.
    pub scored_runs: u64,
    /// Their mean quality.
    pub mean_quality: f64,
}

/// The skip rules, in order (see the module documentation).
pub fn check(
    prompt: &Prompt,
    scores: &[RunScore],
    running_experiment: Option<ExperimentId>,
    now: Timestamp,
    config: &EvolutionConfig,
) -> std::result::Result<Readiness, SkipReason> {
    if prompt.active_version.is_none() {
        return Err(SkipReason::NoActiveVersion);
    }
    if let Some(experiment) = running_experiment {
        return Err(SkipReason::ExperimentRunning { experiment });
    }
    if let Some(at) = prompt.last_evolved_at {
        let next = at + Duration::days(config.cooldown_days);
        if now < next {
            return Err(SkipReason::EvolvedRecently { at, next });
        }
    }
    let have = scores.len() as u64;
    if have < config.min_scored_runs || have == 0 {
        return Err(SkipReason::TooFewScoredRuns { have, need: config.min_scored_runs.max(1) });
    }
    let mean = scores.iter().map(|s| s.score).sum::<f64>() / have as f64;
    if mean >= config.quality_target {
        return Err(SkipReason::QualityHighEnough { mean, target: config.quality_target });
    }
    Ok(Readiness { scored_runs: have, mean_quality: mean })
}

/// The `low` lowest- and `high` highest-scoring runs (lowest first, highest
/// first), disjoint; ties by run id.
pub fn sample_runs(scores: &[RunScore], low: u32, high: u32) -> (Vec<RunScore>, Vec<RunScore>) {
    let mut sorted: Vec<&RunScore> = scores.iter().collect();
    sorted.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.run_id.cmp(&b.run_id)));
    let low = (low as usize).min(sorted.len());
    let high = (high as usize).min(sorted.len() - low);
    let lowest = sorted[..low].iter().map(|s| (*s).clone()).collect();
    let highest = sorted[sorted.len() - high..].iter().rev().map(|s| (*s).clone()).collect();
    (lowest, highest)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push_str(" […]");
    out
}

fn describe(run: &RunScore, max_chars: usize) -> String {
    let mut out =
        format!("- run {} scored {:.2} after {} iteration(s)\n", run.run_id, run.score, run.feedback.iterations);
    if let Some(ci) = &run.feedback.ci_failure_digest {
        out.push_str(&format!("  CI failures: {}\n", truncate(ci, max_chars)));
    }
    for comment in &run.feedback.review_comments {
        out.push_str(&format!("  review: {}\n", truncate(comment, max_chars)));
    }
    out
}

/// The system prompt of the mutation request.
pub const SYSTEM_PROMPT: &str = "You improve the task prompts that Paid gives to AI coding agents. \
A prompt is a minijinja template. You answer with JSON only.";

/// The LLM request for mutations of `active`.
pub fn mutation_request(
    active: &PromptVersion,
    readiness: &Readiness,
    lowest: &[RunScore],
    highest: &[RunScore],
    plan: &MutationPlan,
    config: &EvolutionConfig,
) -> ChatRequest {
    let mut text = format!(
        "The prompt `{}` (version {}) scores {:.2} on average over {} runs (quality in [0, 1]).\n\n\
         Its template:\n<template>\n{}\n</template>\n\n\
         It must keep using exactly these variables, and no others: {}.\n\n",
        active.slug,
        active.version,
        readiness.mean_quality,
        readiness.scored_runs,
        active.template,
        active.variables.join(", "),
    );
    text.push_str("Lowest-scoring runs:\n");
    for run in lowest {
        text.push_str(&describe(run, config.max_feedback_chars));
    }
    text.push_str("\nHighest-scoring runs:\n");
    for run in highest {
        text.push_str(&describe(run, config.max_feedback_chars));
    }
    for line in &plan.guidance {
        text.push_str(&format!("\n{line}\n"));
    }
    text.push_str(&format!(
        "\nPropose at most {} improved templates. Answer with one JSON object: \
         {{\"mutations\": [{{\"template\": \"...\", \"reasoning\": \"...\", \"expected_improvement\": \"...\"}}]}}",
        plan.mutations
    ));
    ChatRequest {
        model: config.model.clone(),
        system: Some(SYSTEM_PROMPT.into()),
        messages: vec![Message::user(text)],
        tools: Vec::new(),
        max_tokens: config.max_tokens,
    }
}

/// A mutation as the LLM proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// The new template.
    pub template: String,
    /// Why it should do better.
    pub reasoning: String,
    /// By how much (free text or a number, kept as text).
    pub expected_improvement: String,
}

/// A proposal that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Its position in the answer (0 when the whole answer was unusable).
    pub index: u32,
    /// Why.
    pub reason: String,
}

/// Finds the first JSON value in `text`: the whole text, then each fenced
/// code block, then the first value starting at a `{` or `[`.
fn find_json(text: &str) -> Option<serde_json::Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str(trimmed) {
        return Some(v);
    }
    let mut rest = trimmed;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |i| i + 1);
        let Some(end) = after[body_start..].find("```") else { break };
        if let Ok(v) = serde_json::from_str(after[body_start..body_start + end].trim()) {
            return Some(v);
        }
        rest = &after[body_start + end + 3..];
    }
    trimmed.char_indices().filter(|(_, c)| *c == '{' || *c == '[').take(64).find_map(|(i, _)| {
        serde_json::Deserializer::from_str(&trimmed[i..]).into_iter::<serde_json::Value>().next()?.ok()
    })
}

fn text_field(item: &serde_json::Map<String, serde_json::Value>, key: &str) -> String {
    match item.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Reads up to `max` mutations from the LLM's answer. Accepts
/// `{"mutations": [...]}`, a bare array, or a single mutation object, with
/// prose or code fences around it. Items without a non-empty string
/// `template`, and items past `max`, are rejected with a reason.
pub fn parse_mutations(text: &str, max: u32) -> (Vec<(u32, Mutation)>, Vec<Rejection>) {
    let mut rejected = Vec::new();
    let items = match find_json(text) {
        Some(serde_json::Value::Object(mut obj)) if obj.contains_key("mutations") => match obj.remove("mutations") {
            Some(serde_json::Value::Array(items)) => items,
            _ => {
                rejected.push(Rejection { index: 0, reason: "\"mutations\" is not an array".into() });
                return (Vec::new(), rejected);
            }
        },
        Some(serde_json::Value::Array(items)) => items,
        Some(obj @ serde_json::Value::Object(_)) => vec![obj],
        _ => {
            rejected.push(Rejection { index: 0, reason: "the answer holds no JSON object or array".into() });
            return (Vec::new(), rejected);
        }
    };
    let mut ok = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let index = i as u32;
        let serde_json::Value::Object(item) = item else {
            rejected.push(Rejection { index, reason: "not a JSON object".into() });
            continue;
        };
        let template = match item.get("template") {
            Some(serde_json::Value::String(t)) if !t.trim().is_empty() => t.clone(),
            _ => {
                rejected.push(Rejection { index, reason: "no non-empty string \"template\"".into() });
                continue;
            }
        };
        if ok.len() >= max as usize {
            rejected.push(Rejection { index, reason: format!("over the limit of {max} mutations") });
            continue;
        }
        ok.push((
            index,
            Mutation {
                template,
                reasoning: text_field(&item, "reasoning"),
                expected_improvement: text_field(&item, "expected_improvement"),
            },
        ));
    }
    (ok, rejected)
}

/// Keeps the mutations that render with exactly the parent's declared
/// variables, differ from the parent, and are not duplicates.
pub fn validate_mutations(
    parent: &PromptVersion,
    mutations: Vec<(u32, Mutation)>,
) -> (Vec<MutationCandidate>, Vec<Rejection>) {
    let mut seen = BTreeSet::new();
    let (mut ok, mut rejected) = (Vec::new(), Vec::new());
    for (index, m) in mutations {
        if m.template.trim() == parent.template.trim() {
            rejected.push(Rejection { index, reason: "identical to the parent template".into() });
        } else if !seen.insert(m.template.trim().to_string()) {
            rejected.push(Rejection { index, reason: "a duplicate of an earlier mutation".into() });
        } else if let Err(e) = super::prompts::validate_template(&m.template, &parent.variables) {
            rejected.push(Rejection { index, reason: e.to_string() });
        } else {
            ok.push(MutationCandidate {
                index,
                template: m.template,
                reasoning: m.reasoning,
                expected_improvement: m.expected_improvement,
            });
        }
    }
    (ok, rejected)
}

/// What [`evolve`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum EvolutionReport {
    /// Nothing was asked.
    Skipped {
        /// Why.
        reason: SkipReason,
    },
    /// The LLM was asked, but no mutation was usable.
    NothingValid {
        /// Every proposal and why it was rejected.
        rejected: Vec<Rejection>,
    },
    /// New versions and an experiment were created.
    Started {
        /// The experiment.
        experiment: Box<Experiment>,
        /// The new versions, children of the active one.
        versions: Vec<PromptVersion>,
        /// Proposals not used.
        rejected: Vec<Rejection>,
    },
}

/// The most runs of each end a strategy's plan may show the LLM.
pub const MAX_SAMPLED_RUNS: u32 = 50;

/// The ports [`evolve`] uses.
#[derive(Clone, Copy)]
pub struct EvolutionPorts<'a> {
    /// Prompts, versions, experiments, scores.
    pub store: &'a dyn LearningStore,
    /// The model asked for mutations.
    pub llm: &'a dyn LlmProvider,
    /// Pre- and post-processing of mutations.
    pub strategy: &'a dyn EvolutionStrategy,
    /// Ids of new versions and experiments.
    pub ids: &'a dyn Ids,
    /// Now.
    pub clock: &'a dyn Clock,
}

/// Runs the evolution workflow for the prompt `slug` once (see the module
/// documentation). The attempt is recorded in `last_evolved_at` as soon as
/// the LLM has answered, so a model that keeps proposing invalid templates
/// is asked again only after the cooldown.
pub async fn evolve(ports: EvolutionPorts<'_>, slug: &str, config: &EvolutionConfig) -> Result<EvolutionReport> {
    let EvolutionPorts { store, llm, strategy, ids, clock } = ports;
    let now = clock.now();
    let mut prompt = store.prompt(slug).await?;
    let Some(active_id) = prompt.active_version else {
        return Ok(EvolutionReport::Skipped { reason: SkipReason::NoActiveVersion });
    };
    let active = store.version(active_id).await?;
    let running = store
        .experiments(&ExperimentFilter { subject: Some(slug.to_string()), active_only: true })
        .await?
        .first()
        .map(|e| e.id);
    let scores = store.run_scores(active_id).await?;
    let readiness = match check(&prompt, &scores, running, now, config) {
        Ok(r) => r,
        Err(reason) => return Ok(EvolutionReport::Skipped { reason }),
    };

    let ctx = MutationContext {
        prompt_slug: slug.to_string(),
        version: active.version,
        scored_runs: readiness.scored_runs,
        mean_quality: readiness.mean_quality,
        max_mutations: config.max_mutations,
        sample_low: config.sample_low,
        sample_high: config.sample_high,
    };
    let mut plan = strategy.propose_mutations(&ctx)?;
    plan.mutations = plan.mutations.clamp(1, config.max_mutations.max(1));
    plan.sample_low = plan.sample_low.min(MAX_SAMPLED_RUNS);
    plan.sample_high = plan.sample_high.min(MAX_SAMPLED_RUNS);
    let (lowest, highest) = sample_runs(&scores, plan.sample_low, plan.sample_high);
    let request = mutation_request(&active, &readiness, &lowest, &highest, &plan, config);
    let answer = llm.complete(&request).await?;
    prompt.last_evolved_at = Some(now);
    store.put_prompt(&prompt).await?;

    let (parsed, mut rejected) = parse_mutations(&answer.content, plan.mutations);
    let (candidates, invalid) = validate_mutations(&active, parsed);
    rejected.extend(invalid);
    if candidates.is_empty() {
        tracing::warn!(prompt = slug, rejected = rejected.len(), "evolution: no valid mutation");
        return Ok(EvolutionReport::NothingValid { rejected });
    }
    let review = MutationReview {
        prompt_slug: slug.to_string(),
        parent_template: active.template.clone(),
        max_mutations: plan.mutations,
        candidates,
    };
    let selection = strategy.review_mutations(&review)?;
    check_selection(&review, &selection)?;

    let mut next = store.versions(slug).await?.iter().map(|v| v.version).max().unwrap_or(0) + 1;
    let mut versions = Vec::new();
    for index in &selection.keep {
        let Some(c) = review.candidates.iter().find(|c| c.index == *index) else { continue };
        let by = CreatedBy::Evolution {
            reasoning: c.reasoning.clone(),
            expected_improvement: c.expected_improvement.clone(),
        };
        let version = active.child(PromptVersionId(ids.uuid()), next, &c.template, by, now)?;
        store.create_version(&version).await?;
        versions.push(version);
        next += 1;
    }
    for c in &review.candidates {
        if !selection.keep.contains(&c.index) {
            rejected.push(Rejection { index: c.index, reason: format!("not kept by strategy {}", strategy.name()) });
        }
    }
    if versions.is_empty() {
        return Ok(EvolutionReport::NothingValid { rejected });
    }
    let experiment = new_experiment(&active, &versions, &config.experiment, ExperimentId(ids.uuid()), now);
    experiment.validate()?;
    store.put_experiment(&experiment).await?;
    tracing::info!(prompt = slug, experiment = %experiment.id, variants = versions.len(), "evolution: experiment started");
    Ok(EvolutionReport::Started { experiment: Box::new(experiment), versions, rejected })
}

/// An experiment of `versions` against `control` (arms `control`, `v2`,
/// `v3`, ... by version number).
pub fn new_experiment(
    control: &PromptVersion,
    versions: &[PromptVersion],
    settings: &ExperimentSettings,
    id: ExperimentId,
    now: Timestamp,
) -> Experiment {
    let arm = |name: String, v: &PromptVersion| Arm { name, variant: Variant::Prompt { version: v.id } };
    let allocation = match &settings.allocation {
        Allocation::Fixed { weights } if weights.len() != versions.len() + 1 => {
            Allocation::Fixed { weights: vec![1.0; versions.len() + 1] }
        }
        other => other.clone(),
    };
    Experiment {
        id,
        subject: control.slug.clone(),
        project_id: None,
        control: arm("control".into(), control),
        variants: versions.iter().map(|v| arm(format!("v{}", v.version), v)).collect(),
        allocation,
        metric: settings.metric,
        success_threshold: settings.success_threshold,
        rule: settings.rule,
        max_samples: settings.max_samples,
        require_approval: settings.require_approval,
        status: ExperimentStatus::Running,
        created_at: now,
        concluded_at: None,
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use uuid::Uuid;

    use super::*;
    use crate::learning::prompts::default_task_prompt;

    fn at(days: i64) -> Timestamp {
        chrono::DateTime::UNIX_EPOCH + Duration::days(days)
    }

    fn prompt(last: Option<Timestamp>) -> Prompt {
        Prompt {
            slug: "task".into(),
            description: "the task prompt".into(),
            active_version: Some(PromptVersionId(Uuid::from_u64_pair(0, 1))),
            last_evolved_at: last,
            created_at: at(0),
        }
    }

    fn score(n: u64, score: f64) -> RunScore {
        RunScore {
            run_id: RunId(Uuid::from_u64_pair(9, n)),
            project_id: ProjectId(Uuid::nil()),
            prompt_version_id: PromptVersionId(Uuid::from_u64_pair(0, 1)),
            score,
            feedback: RunFeedback {
                review_comments: vec![format!("comment on {n}")],
                ci_failure_digest: (score < 0.5).then(|| format!("test_{n} failed")),
                iterations: n as u32 % 4 + 1,
            },
            scored_at: at(1),
        }
    }

    fn scores(n: u64, value: f64) -> Vec<RunScore> {
        (0..n).map(|i| score(i, value)).collect()
    }

    #[test]
    fn skip_rules_in_order() {
        let c = EvolutionConfig::default();
        let e = ExperimentId(Uuid::nil());
        let no_active = Prompt { active_version: None, ..prompt(None) };
        assert_eq!(check(&no_active, &scores(30, 0.5), None, at(30), &c), Err(SkipReason::NoActiveVersion));
        assert_eq!(
            check(&prompt(None), &scores(30, 0.5), Some(e), at(30), &c),
            Err(SkipReason::ExperimentRunning { experiment: e })
        );
        assert_eq!(
            check(&prompt(Some(at(25))), &scores(30, 0.5), None, at(30), &c),
            Err(SkipReason::EvolvedRecently { at: at(25), next: at(32) })
        );
        assert_eq!(
            check(&prompt(None), &scores(19, 0.5), None, at(30), &c),
            Err(SkipReason::TooFewScoredRuns { have: 19, need: 20 })
        );
        assert_eq!(
            check(&prompt(None), &scores(20, 0.875), None, at(30), &c),
            Err(SkipReason::QualityHighEnough { mean: 0.875, target: 0.85 })
        );
        assert_eq!(
            check(&prompt(Some(at(23))), &scores(20, 0.625), None, at(30), &c),
            Ok(Readiness { scored_runs: 20, mean_quality: 0.625 })
        );
    }

    #[test]
    fn sampling_takes_both_ends_disjointly() {
        let all: Vec<RunScore> = (0..10).map(|i| score(i, i as f64 / 10.0)).collect();
        let (low, high) = sample_runs(&all, 3, 2);
        assert_eq!(low.iter().map(|s| s.score).collect::<Vec<_>>(), vec![0.0, 0.1, 0.2]);
        assert_eq!(high.iter().map(|s| s.score).collect::<Vec<_>>(), vec![0.9, 0.8]);
        let (low, high) = sample_runs(&all[..4], 3, 3);
        assert_eq!((low.len(), high.len()), (3, 1));
    }

    #[test]
    fn the_request_shows_template_variables_and_feedback() {
        let active = default_task_prompt(PromptVersionId(Uuid::nil()), at(0)).unwrap();
        let all: Vec<RunScore> = (0..10).map(|i| score(i, i as f64 / 10.0)).collect();
        let (low, high) = sample_runs(&all, 2, 1);
        let plan = MutationPlan { mutations: 2, sample_low: 2, sample_high: 1, guidance: vec!["Be brief.".into()] };
        let req = mutation_request(
            &active,
            &Readiness { scored_runs: 10, mean_quality: 0.45 },
            &low,
            &high,
            &plan,
            &EvolutionConfig::default(),
        );
        let text = &req.messages[0].content;
        for needle in [
            "scores 0.45 on average over 10 runs",
            "feedback, issue.body, issue.number, issue.title",
            "CI failures: test_0 failed",
            "review: comment on 9",
            "Be brief.",
            "at most 2 improved templates",
            "Resolve issue #{{ issue.number }}",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(req.system.as_deref(), Some(SYSTEM_PROMPT));
    }

    #[test]
    fn parsing_is_robust() {
        let m = |t: &str| format!(r#"{{"template": "{t}", "reasoning": "r", "expected_improvement": "+5%"}}"#);
        // Bare JSON, an array, a single object, fenced, surrounded by prose.
        for text in [
            format!(r#"{{"mutations": [{}, {}]}}"#, m("a"), m("b")),
            format!("[{}, {}]", m("a"), m("b")),
            format!("Sure! Here are two:\n```json\n[{}, {}]\n```\nHope it helps.", m("a"), m("b")),
            format!("Thinking... {{not json}} then [{}, {}] trailing", m("a"), m("b")),
        ] {
            let (ok, rejected) = parse_mutations(&text, 3);
            assert_eq!(ok.iter().map(|(_, m)| m.template.as_str()).collect::<Vec<_>>(), vec!["a", "b"], "{text}");
            assert!(rejected.is_empty(), "{text}: {rejected:?}");
        }
        let (ok, _) = parse_mutations(&m("solo"), 3);
        assert_eq!(ok.len(), 1);
        // Over the limit, missing fields, wrong types, garbage.
        let (ok, rejected) = parse_mutations(&format!("[{}, {}, 7, {{\"template\": \"\"}}]", m("a"), m("b")), 1);
        assert_eq!(ok.len(), 1);
        assert_eq!(rejected.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 2, 3], "{rejected:?}");
        let (ok, rejected) = parse_mutations("I cannot help with that.", 3);
        assert!(ok.is_empty());
        assert_eq!(rejected[0].reason, "the answer holds no JSON object or array");
        let (_, rejected) = parse_mutations(r#"{"mutations": "none"}"#, 3);
        assert_eq!(rejected[0].reason, "\"mutations\" is not an array");
    }

    #[test]
    fn validation_keeps_only_renderable_new_templates() {
        let active = default_task_prompt(PromptVersionId(Uuid::nil()), at(0)).unwrap();
        let good =
            "#{{ issue.number }} {{ issue.title }}\n{{ issue.body }}\n{% if feedback %}Fix: {{ feedback }}{% endif %}";
        let mutation =
            |t: &str| Mutation { template: t.into(), reasoning: String::new(), expected_improvement: String::new() };
        let (ok, rejected) = validate_mutations(
            &active,
            vec![
                (0, mutation(good)),
                (1, mutation(good)),
                (2, mutation(&active.template)),
                (3, mutation("{{ issue.title }} {{ secrets }}")),
                (4, mutation("{{ issue.title")),
                (5, mutation("Only {{ issue.title }}")),
            ],
        );
        assert_eq!(ok.iter().map(|c| c.index).collect::<Vec<_>>(), vec![0]);
        assert_eq!(rejected.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert!(rejected[2].reason.contains("secrets"), "{rejected:?}");
    }
}
