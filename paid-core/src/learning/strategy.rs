//! The [`EvolutionStrategy`] port: the decisions of the learning loop, as
//! JSON-in / JSON-out functions, so they can be native Rust or WASM modules
//! (`paid-wasm`).
//!
//! The host does the statistics; a strategy decides. Every request carries
//! what a stateless decision needs: arm counts and posteriors for
//! [`choose_variant`](EvolutionStrategy::choose_variant), the comparisons of
//! each variant with control (P(beats control), expected loss, Welch's test)
//! for [`should_promote`](EvolutionStrategy::should_promote), and the
//! evolution context before and the parsed candidates after the LLM call for
//! [`propose_mutations`](EvolutionStrategy::propose_mutations) and
//! [`review_mutations`](EvolutionStrategy::review_mutations). The host checks
//! every answer (see [`check_choice`], [`check_verdict`], [`check_selection`])
//! and keeps what no strategy may decide: human approval before a promotion
//! is applied by the host, not the strategy.
//!
//! Built in: [`ThompsonStrategy`] (the default: top-two Thompson sampling and
//! the experiment's promotion rule) and [`PromoteAfterNStrategy`]
//! (epsilon-greedy allocation, promotion after a lead of N successes).
//! [`FallbackStrategy`] wraps a strategy that may fail (a WASM module) and
//! answers with a built-in one instead, so the caller keeps working.
//!
//! ```
//! use paid_core::learning::strategy::{ArmStats, ChooseRequest, EvolutionStrategy, Posterior, ThompsonStrategy};
//!
//! let arm = |name: &str, control, alpha, beta| ArmStats {
//!     arm: name.into(), control, samples: 100, successes: alpha as u64 - 1, mean_score: 0.5,
//!     score_variance: 0.1, posterior: Posterior::Beta { alpha, beta },
//! };
//! let req = ChooseRequest {
//!     experiment_id: "e".into(), issue_key: "p#1".into(), seed: 42, min_samples_per_arm: 30, top_two: 1.0,
//!     arms: vec![arm("control", true, 11.0, 91.0), arm("v1", false, 91.0, 11.0)],
//! };
//! assert_eq!(ThompsonStrategy.choose_variant(&req)?.arm, "v1");
//! # Ok::<(), paid_core::Error>(())
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::experiment::{self, PromotionRule};
use super::sampler::{self, SplitMix64};
use super::stats::WelchTest;
use crate::{Error, Result};

/// What a strategy knows of one arm's metric: the posterior it samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Posterior {
    /// Beta–Bernoulli on the success threshold.
    Beta {
        /// α.
        alpha: f64,
        /// β.
        beta: f64,
    },
    /// Normal over the mean score.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        sd: f64,
    },
}

impl Posterior {
    /// The posterior mean.
    pub fn mean(&self) -> f64 {
        match *self {
            Posterior::Beta { alpha, beta } => alpha / (alpha + beta),
            Posterior::Normal { mean, .. } => mean,
        }
    }

    /// One draw, with the shared [`sampler`].
    pub fn sample<R: RngCore + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            Posterior::Beta { alpha, beta } => sampler::beta(rng, alpha, beta),
            Posterior::Normal { mean, sd } => sampler::normal(rng, mean, sd),
        }
    }
}

/// One arm of an experiment, as strategies see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmStats {
    /// The arm's name.
    pub arm: String,
    /// Whether it is the control.
    pub control: bool,
    /// Scored samples.
    pub samples: u64,
    /// Samples at or above the success threshold.
    pub successes: u64,
    /// Mean quality score (0 without samples).
    pub mean_score: f64,
    /// Sample variance of the scores (0 below two samples).
    pub score_variance: f64,
    /// The posterior of the experiment's metric.
    pub posterior: Posterior,
}

/// Which arm should the next issue get?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChooseRequest {
    /// The experiment.
    pub experiment_id: String,
    /// The issue being assigned (`{project}#{number}`).
    pub issue_key: String,
    /// The seed of every random draw of this decision.
    pub seed: u64,
    /// Arms below this many samples are filled first (burn-in).
    pub min_samples_per_arm: u64,
    /// Top-two Thompson sampling: the probability of playing the sampled
    /// leader; otherwise a challenger is played. 1 is plain Thompson.
    pub top_two: f64,
    /// The arms, control first.
    pub arms: Vec<ArmStats>,
}

/// The arm chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// Its name.
    pub arm: String,
    /// Why, for the audit log.
    pub reason: String,
}

/// One variant compared with control, computed by the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The variant.
    pub arm: String,
    /// Its samples.
    pub samples: u64,
    /// Control's samples.
    pub control_samples: u64,
    /// P(variant beats control), under the rule's prior.
    pub prob_beats_control: f64,
    /// P(control beats variant), under the rule's prior.
    pub prob_control_beats: f64,
    /// Expected loss of switching to the variant, E[max(control − variant, 0)].
    pub expected_loss: f64,
    /// Welch's t-test of the variant's scores against control's, when both
    /// have two or more samples and some variance.
    pub welch: Option<WelchTest>,
}

/// Has a variant won?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// The experiment.
    pub experiment_id: String,
    /// The control arm's name.
    pub control: String,
    /// The arms, control first.
    pub arms: Vec<ArmStats>,
    /// Each variant against control, in arm order.
    pub comparisons: Vec<Comparison>,
    /// The experiment's promotion rule.
    pub rule: PromotionRule,
    /// Samples over all arms.
    pub total_samples: u64,
    /// The sample budget: at or past it without a winner, control is kept
    /// (0: no budget).
    pub max_samples: u64,
}

/// A strategy's answer to [`PromoteRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Not enough evidence yet.
    Continue {
        /// Why.
        reason: String,
    },
    /// This variant won.
    Promote {
        /// The winner.
        arm: String,
        /// Why.
        reason: String,
    },
    /// Stop: no variant beats control.
    KeepControl {
        /// Why.
        reason: String,
    },
}

/// What the evolution workflow is about to ask the LLM for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationContext {
    /// The prompt.
    pub prompt_slug: String,
    /// The version being mutated.
    pub version: u32,
    /// Its scored runs.
    pub scored_runs: u64,
    /// Their mean quality.
    pub mean_quality: f64,
    /// The configured cap on mutations.
    pub max_mutations: u32,
    /// Lowest-scoring runs to show the LLM.
    pub sample_low: u32,
    /// Highest-scoring runs to show the LLM.
    pub sample_high: u32,
}

/// How to ask: a strategy's answer to [`MutationContext`]. The host clamps
/// every count to the configured caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationPlan {
    /// Mutations to ask for.
    pub mutations: u32,
    /// Lowest-scoring runs to show.
    pub sample_low: u32,
    /// Highest-scoring runs to show.
    pub sample_high: u32,
    /// Extra instructions added to the request.
    #[serde(default)]
    pub guidance: Vec<String>,
}

/// One valid mutation the LLM proposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationCandidate {
    /// Its position in the LLM's answer.
    pub index: u32,
    /// The new template (already validated).
    pub template: String,
    /// The LLM's reasoning.
    pub reasoning: String,
    /// The improvement it expects.
    pub expected_improvement: String,
}

/// Which candidates to keep?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationReview {
    /// The prompt.
    pub prompt_slug: String,
    /// The parent's template.
    pub parent_template: String,
    /// The cap on kept mutations.
    pub max_mutations: u32,
    /// The valid candidates.
    pub candidates: Vec<MutationCandidate>,
}

/// The candidates kept, by [`MutationCandidate::index`], in the order to
/// create them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationSelection {
    /// Indices kept.
    pub keep: Vec<u32>,
}

/// The decisions of the learning loop. Implemented natively here and by WASM
/// modules in `paid-wasm`; used as `Arc<dyn EvolutionStrategy>`.
///
/// The calls are synchronous: they are pure, short computations (a WASM call
/// is bounded by fuel and an epoch deadline), so they need no executor.
/// Implementations must be deterministic given the request (randomness comes
/// from [`ChooseRequest::seed`]).
pub trait EvolutionStrategy: Send + Sync + 'static {
    /// A name for logs and errors.
    fn name(&self) -> &str;
    /// Picks the arm for an issue.
    fn choose_variant(&self, req: &ChooseRequest) -> Result<Choice>;
    /// Decides whether a variant has won.
    fn should_promote(&self, req: &PromoteRequest) -> Result<Verdict>;
    /// Before the LLM call: how many mutations to ask for, from which runs.
    fn propose_mutations(&self, ctx: &MutationContext) -> Result<MutationPlan>;
    /// After the LLM call: which valid candidates become new versions.
    fn review_mutations(&self, review: &MutationReview) -> Result<MutationSelection>;
}

/// Fails unless `choice` names one of the request's arms.
pub fn check_choice(req: &ChooseRequest, choice: &Choice) -> Result<()> {
    if req.arms.iter().any(|a| a.arm == choice.arm) {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "strategy choice".into(),
            message: format!("arm {:?} is not one of the experiment's arms", choice.arm),
        })
    }
}

/// Fails unless a promotion names a variant (not control).
pub fn check_verdict(req: &PromoteRequest, verdict: &Verdict) -> Result<()> {
    match verdict {
        Verdict::Promote { arm, .. } if arm == &req.control || !req.arms.iter().any(|a| &a.arm == arm) => {
            Err(Error::InvalidInput {
                what: "strategy verdict".into(),
                message: format!("cannot promote {arm:?}: it is not a variant of the experiment"),
            })
        }
        _ => Ok(()),
    }
}

/// Fails unless every kept index names a candidate, once, within the cap.
pub fn check_selection(review: &MutationReview, sel: &MutationSelection) -> Result<()> {
    let known: BTreeSet<u32> = review.candidates.iter().map(|c| c.index).collect();
    let mut seen = BTreeSet::new();
    let invalid = |message: String| Error::InvalidInput { what: "strategy mutation selection".into(), message };
    if sel.keep.len() > review.max_mutations as usize {
        return Err(invalid(format!("keeps {} mutations; at most {} allowed", sel.keep.len(), review.max_mutations)));
    }
    for i in &sel.keep {
        if !known.contains(i) || !seen.insert(*i) {
            return Err(invalid(format!("index {i} is not a candidate, or is kept twice")));
        }
    }
    Ok(())
}

/// Fills arms below the minimum first: among the arms with the fewest
/// samples, if that is below `min_samples_per_arm`, one drawn with `rng`.
pub fn burn_in<R: RngCore + ?Sized>(req: &ChooseRequest, rng: &mut R) -> Option<usize> {
    let fewest = req.arms.iter().map(|a| a.samples).min()?;
    if fewest >= req.min_samples_per_arm {
        return None;
    }
    let candidates: Vec<usize> = (0..req.arms.len()).filter(|i| req.arms[*i].samples == fewest).collect();
    candidates.get(sampler::index(rng, candidates.len())).copied()
}

fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// How many times top-two Thompson sampling redraws to find a challenger.
pub const MAX_CHALLENGER_DRAWS: usize = 64;

/// Top-two Thompson sampling (Russo 2016) with burn-in, drawing from `rng`:
///
/// 1. [`burn_in`]: an arm below the minimum sample count is filled first;
/// 2. one draw from every arm's posterior; the leader is the largest (the
///    first on ties);
/// 3. with probability `1 − top_two`, draws again (up to
///    [`MAX_CHALLENGER_DRAWS`] times) until another arm leads, and plays
///    that challenger; if none appears, plays the leader.
///
/// Plain Thompson sampling keeps starving the arm that looks worse, so a
/// rule that needs evidence on every arm never fires; the challenger step
/// keeps about `1 − top_two` of the traffic on the runner-up.
pub fn thompson_choice<R: RngCore + ?Sized>(req: &ChooseRequest, rng: &mut R) -> Result<Choice> {
    if req.arms.is_empty() {
        return Err(Error::InvalidInput { what: "choose request".into(), message: "no arms".into() });
    }
    if let Some(i) = burn_in(req, rng) {
        return Ok(Choice {
            arm: req.arms[i].arm.clone(),
            reason: format!("burn-in: {} samples, below {}", req.arms[i].samples, req.min_samples_per_arm),
        });
    }
    let draw = |rng: &mut R| req.arms.iter().map(|a| a.posterior.sample(rng)).collect::<Vec<f64>>();
    let leader = argmax(&draw(rng));
    if req.arms.len() > 1 && sampler::uniform(rng) >= req.top_two {
        for _ in 0..MAX_CHALLENGER_DRAWS {
            let challenger = argmax(&draw(rng));
            if challenger != leader {
                return Ok(Choice {
                    arm: req.arms[challenger].arm.clone(),
                    reason: format!("top-two Thompson: challenger of {}", req.arms[leader].arm),
                });
            }
        }
    }
    Ok(Choice { arm: req.arms[leader].arm.clone(), reason: "Thompson sampling: sampled leader".into() })
}

/// Epsilon-greedy with burn-in: with probability `epsilon` a uniformly drawn
/// arm, otherwise the arm with the highest posterior mean (the first on
/// ties).
pub fn epsilon_greedy_choice<R: RngCore + ?Sized>(req: &ChooseRequest, epsilon: f64, rng: &mut R) -> Result<Choice> {
    if req.arms.is_empty() {
        return Err(Error::InvalidInput { what: "choose request".into(), message: "no arms".into() });
    }
    if let Some(i) = burn_in(req, rng) {
        return Ok(Choice {
            arm: req.arms[i].arm.clone(),
            reason: format!("burn-in: {} samples, below {}", req.arms[i].samples, req.min_samples_per_arm),
        });
    }
    if sampler::uniform(rng) < epsilon {
        let i = sampler::index(rng, req.arms.len());
        return Ok(Choice { arm: req.arms[i].arm.clone(), reason: "epsilon-greedy: explore".into() });
    }
    let means: Vec<f64> = req.arms.iter().map(|a| a.posterior.mean()).collect();
    Ok(Choice { arm: req.arms[argmax(&means)].arm.clone(), reason: "epsilon-greedy: best mean".into() })
}

/// The default plan: the configured counts, no extra guidance.
pub fn default_plan(ctx: &MutationContext) -> MutationPlan {
    MutationPlan {
        mutations: ctx.max_mutations,
        sample_low: ctx.sample_low,
        sample_high: ctx.sample_high,
        guidance: Vec::new(),
    }
}

/// The default review: the first candidates, up to the cap.
pub fn default_selection(review: &MutationReview) -> MutationSelection {
    MutationSelection { keep: review.candidates.iter().take(review.max_mutations as usize).map(|c| c.index).collect() }
}

/// The default strategy: top-two Thompson sampling ([`thompson_choice`]),
/// the experiment's own promotion rule ([`experiment::evaluate`]), the
/// configured mutation counts and the first valid mutations.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThompsonStrategy;

impl EvolutionStrategy for ThompsonStrategy {
    fn name(&self) -> &str {
        "thompson"
    }

    fn choose_variant(&self, req: &ChooseRequest) -> Result<Choice> {
        thompson_choice(req, &mut SplitMix64::new(req.seed))
    }

    fn should_promote(&self, req: &PromoteRequest) -> Result<Verdict> {
        Ok(experiment::evaluate(req))
    }

    fn propose_mutations(&self, ctx: &MutationContext) -> Result<MutationPlan> {
        Ok(default_plan(ctx))
    }

    fn review_mutations(&self, review: &MutationReview) -> Result<MutationSelection> {
        Ok(default_selection(review))
    }
}

/// A simple rule a plugin author might write: epsilon-greedy allocation, and
/// promotion of a variant once it leads control by `wins` successes with a
/// higher success rate, every arm having the rule's minimum samples. Not
/// statistically calibrated; an example and a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PromoteAfterNStrategy {
    /// The lead in successes that wins.
    pub wins: u64,
    /// The exploration probability.
    pub epsilon: f64,
}

impl Default for PromoteAfterNStrategy {
    fn default() -> Self {
        Self { wins: 10, epsilon: 0.1 }
    }
}

impl PromoteAfterNStrategy {
    /// The verdict of the lead rule (see the type's documentation).
    pub fn verdict(&self, req: &PromoteRequest) -> Verdict {
        let min = req.rule.min_samples_per_arm();
        let Some(control) = req.arms.iter().find(|a| a.control) else {
            return Verdict::Continue { reason: "no control arm".into() };
        };
        let rate = |a: &ArmStats| if a.samples == 0 { 0.0 } else { a.successes as f64 / a.samples as f64 };
        let enough = req.arms.iter().all(|a| a.samples >= min);
        if enough {
            for arm in req.arms.iter().filter(|a| !a.control) {
                if arm.successes >= control.successes + self.wins && rate(arm) > rate(control) {
                    return Verdict::Promote {
                        arm: arm.arm.clone(),
                        reason: format!(
                            "leads control by {} successes (≥ {}) at a higher rate",
                            arm.successes - control.successes,
                            self.wins
                        ),
                    };
                }
            }
        }
        if req.max_samples > 0 && req.total_samples >= req.max_samples {
            return Verdict::KeepControl { reason: format!("no winner within {} samples", req.max_samples) };
        }
        Verdict::Continue { reason: format!("no variant leads by {} successes", self.wins) }
    }
}

impl EvolutionStrategy for PromoteAfterNStrategy {
    fn name(&self) -> &str {
        "promote-after-n"
    }

    fn choose_variant(&self, req: &ChooseRequest) -> Result<Choice> {
        epsilon_greedy_choice(req, self.epsilon, &mut SplitMix64::new(req.seed))
    }

    fn should_promote(&self, req: &PromoteRequest) -> Result<Verdict> {
        Ok(self.verdict(req))
    }

    fn propose_mutations(&self, ctx: &MutationContext) -> Result<MutationPlan> {
        Ok(default_plan(ctx))
    }

    fn review_mutations(&self, review: &MutationReview) -> Result<MutationSelection> {
        Ok(default_selection(review))
    }
}

/// Calls `primary`, and when it fails (an error, or an answer that fails the
/// host's checks) logs a warning and answers with `fallback` instead. A
/// layer in the tower sense: it forwards every method.
pub struct FallbackStrategy {
    primary: Arc<dyn EvolutionStrategy>,
    fallback: Arc<dyn EvolutionStrategy>,
    name: String,
    fallbacks: AtomicU64,
}

impl std::fmt::Debug for FallbackStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackStrategy")
            .field("name", &self.name)
            .field("fallbacks", &self.fallbacks.load(Ordering::Relaxed))
            .finish()
    }
}

impl FallbackStrategy {
    /// `primary`, falling back to `fallback`.
    pub fn new(primary: Arc<dyn EvolutionStrategy>, fallback: Arc<dyn EvolutionStrategy>) -> Self {
        let name = format!("{} (fallback {})", primary.name(), fallback.name());
        Self { primary, fallback, name, fallbacks: AtomicU64::new(0) }
    }

    /// `primary`, falling back to [`ThompsonStrategy`].
    pub fn with_thompson(primary: Arc<dyn EvolutionStrategy>) -> Self {
        Self::new(primary, Arc::new(ThompsonStrategy))
    }

    /// How many calls fell back so far.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    fn attempt<T>(
        &self,
        call: &'static str,
        primary: Result<T>,
        check: impl FnOnce(&T) -> Result<()>,
        fallback: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let error = match primary.and_then(|v| check(&v).map(|()| v)) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            strategy = self.primary.name(),
            fallback = self.fallback.name(),
            call,
            error = %error,
            "strategy failed; using the fallback strategy"
        );
        fallback()
    }
}

impl EvolutionStrategy for FallbackStrategy {
    fn name(&self) -> &str {
        &self.name
    }

    fn choose_variant(&self, req: &ChooseRequest) -> Result<Choice> {
        self.attempt(
            "choose_variant",
            self.primary.choose_variant(req),
            |c| check_choice(req, c),
            || self.fallback.choose_variant(req),
        )
    }

    fn should_promote(&self, req: &PromoteRequest) -> Result<Verdict> {
        self.attempt(
            "should_promote",
            self.primary.should_promote(req),
            |v| check_verdict(req, v),
            || self.fallback.should_promote(req),
        )
    }

    fn propose_mutations(&self, ctx: &MutationContext) -> Result<MutationPlan> {
        self.attempt(
            "propose_mutations",
            self.primary.propose_mutations(ctx),
            |_| Ok(()),
            || self.fallback.propose_mutations(ctx),
        )
    }

    fn review_mutations(&self, review: &MutationReview) -> Result<MutationSelection> {
        self.attempt(
            "review_mutations",
            self.primary.review_mutations(review),
            |s| check_selection(review, s),
            || self.fallback.review_mutations(review),
        )
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::learning::experiment::BayesianRule;

    fn arm(name: &str, control: bool, samples: u64, successes: u64) -> ArmStats {
        ArmStats {
            arm: name.into(),
            control,
            samples,
            successes,
            mean_score: if samples == 0 { 0.0 } else { successes as f64 / samples as f64 },
            score_variance: 0.1,
            posterior: Posterior::Beta { alpha: 1.0 + successes as f64, beta: 1.0 + (samples - successes) as f64 },
        }
    }

    fn choose(arms: Vec<ArmStats>, seed: u64, top_two: f64) -> ChooseRequest {
        ChooseRequest {
            experiment_id: "e".into(),
            issue_key: "p#1".into(),
            seed,
            min_samples_per_arm: 10,
            top_two,
            arms,
        }
    }

    #[test]
    fn burn_in_fills_the_emptiest_arm() {
        let req = choose(vec![arm("c", true, 12, 6), arm("v1", false, 3, 3), arm("v2", false, 5, 0)], 1, 0.5);
        for seed in 0..20 {
            let c = ThompsonStrategy.choose_variant(&ChooseRequest { seed, ..req.clone() }).unwrap();
            assert_eq!(c.arm, "v1");
            assert!(c.reason.starts_with("burn-in"));
        }
        // Ties are broken by the seed, and both tied arms come up.
        let tied = choose(vec![arm("c", true, 2, 1), arm("v1", false, 2, 1)], 0, 0.5);
        let picks: BTreeSet<String> = (0..20)
            .map(|seed| ThompsonStrategy.choose_variant(&ChooseRequest { seed, ..tied.clone() }).unwrap().arm)
            .collect();
        assert_eq!(picks.len(), 2);
    }

    #[test]
    fn thompson_is_deterministic_and_follows_the_evidence() {
        let req = choose(vec![arm("c", true, 200, 80), arm("v1", false, 200, 120)], 0, 1.0);
        let picks: Vec<String> = (0..200)
            .map(|seed| ThompsonStrategy.choose_variant(&ChooseRequest { seed, ..req.clone() }).unwrap().arm)
            .collect();
        let again: Vec<String> = (0..200)
            .map(|seed| ThompsonStrategy.choose_variant(&ChooseRequest { seed, ..req.clone() }).unwrap().arm)
            .collect();
        assert_eq!(picks, again);
        assert!(picks.iter().filter(|a| *a == "v1").count() > 195);
        // On close arms, plain Thompson gives control its chance of being
        // best (about 16% here); top-two keeps half the traffic on it.
        let close = choose(vec![arm("c", true, 200, 95), arm("v1", false, 200, 105)], 0, 1.0);
        let control_share = |top_two: f64| {
            (0..1000)
                .filter(|seed| {
                    let req = ChooseRequest { seed: *seed, top_two, ..close.clone() };
                    ThompsonStrategy.choose_variant(&req).unwrap().arm == "c"
                })
                .count()
        };
        let plain = control_share(1.0);
        assert!((100..250).contains(&plain), "plain Thompson gave control {plain} of 1000");
        let top_two = control_share(0.5);
        assert!((420..580).contains(&top_two), "top-two gave control {top_two} of 1000");
    }

    #[test]
    fn epsilon_greedy_explores_at_rate_epsilon() {
        let req = choose(vec![arm("c", true, 50, 10), arm("v1", false, 50, 40)], 0, 1.0);
        let s = PromoteAfterNStrategy { wins: 5, epsilon: 0.2 };
        let control = (0..2000)
            .filter(|seed| s.choose_variant(&ChooseRequest { seed: *seed, ..req.clone() }).unwrap().arm == "c")
            .count();
        // ε/2 of picks explore onto control.
        assert!((150..250).contains(&control), "control got {control} of 2000");
    }

    fn promote_req(arms: Vec<ArmStats>) -> PromoteRequest {
        PromoteRequest {
            experiment_id: "e".into(),
            control: "c".into(),
            comparisons: Vec::new(),
            rule: PromotionRule::Bayesian(BayesianRule { min_samples_per_arm: 20, ..BayesianRule::default() }),
            total_samples: arms.iter().map(|a| a.samples).sum(),
            max_samples: 200,
            arms,
        }
    }

    #[test]
    fn promote_after_n_wins() {
        let s = PromoteAfterNStrategy { wins: 5, epsilon: 0.1 };
        let lead = promote_req(vec![arm("c", true, 20, 8), arm("v1", false, 25, 14)]);
        assert!(matches!(s.verdict(&lead), Verdict::Promote { ref arm, .. } if arm == "v1"));
        let short = promote_req(vec![arm("c", true, 20, 8), arm("v1", false, 25, 12)]);
        assert!(matches!(s.verdict(&short), Verdict::Continue { .. }));
        let few = promote_req(vec![arm("c", true, 10, 0), arm("v1", false, 25, 20)]);
        assert!(matches!(s.verdict(&few), Verdict::Continue { .. }));
        let spent = promote_req(vec![arm("c", true, 100, 50), arm("v1", false, 100, 52)]);
        assert!(matches!(s.verdict(&spent), Verdict::KeepControl { .. }));
    }

    #[test]
    fn host_checks() {
        let req = choose(vec![arm("c", true, 1, 1), arm("v1", false, 1, 1)], 0, 1.0);
        assert!(check_choice(&req, &Choice { arm: "v1".into(), reason: String::new() }).is_ok());
        assert!(check_choice(&req, &Choice { arm: "v9".into(), reason: String::new() }).is_err());
        let preq = promote_req(vec![arm("c", true, 1, 1), arm("v1", false, 1, 1)]);
        let promote = |arm: &str| Verdict::Promote { arm: arm.into(), reason: String::new() };
        assert!(check_verdict(&preq, &promote("v1")).is_ok());
        assert!(check_verdict(&preq, &promote("c")).is_err());
        assert!(check_verdict(&preq, &promote("zz")).is_err());
        let review = MutationReview {
            prompt_slug: "t".into(),
            parent_template: "x".into(),
            max_mutations: 2,
            candidates: (0..3)
                .map(|i| MutationCandidate {
                    index: i,
                    template: "t".into(),
                    reasoning: "r".into(),
                    expected_improvement: "e".into(),
                })
                .collect(),
        };
        assert_eq!(default_selection(&review), MutationSelection { keep: vec![0, 1] });
        assert!(check_selection(&review, &MutationSelection { keep: vec![2, 0] }).is_ok());
        assert!(check_selection(&review, &MutationSelection { keep: vec![0, 0] }).is_err());
        assert!(check_selection(&review, &MutationSelection { keep: vec![7] }).is_err());
        assert!(check_selection(&review, &MutationSelection { keep: vec![0, 1, 2] }).is_err());
    }

    struct Broken;

    impl EvolutionStrategy for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn choose_variant(&self, _: &ChooseRequest) -> Result<Choice> {
            Ok(Choice { arm: "nonsense".into(), reason: String::new() })
        }
        fn should_promote(&self, _: &PromoteRequest) -> Result<Verdict> {
            Err(Error::Backend { backend: "test", message: "trap".into(), retryable: false, source: None })
        }
        fn propose_mutations(&self, _: &MutationContext) -> Result<MutationPlan> {
            Err(Error::Cancelled)
        }
        fn review_mutations(&self, _: &MutationReview) -> Result<MutationSelection> {
            Ok(MutationSelection { keep: vec![99] })
        }
    }

    #[test]
    fn fallback_answers_when_the_primary_fails_or_lies() {
        let s = FallbackStrategy::with_thompson(Arc::new(Broken));
        assert_eq!(s.name(), "broken (fallback thompson)");
        let req = choose(vec![arm("c", true, 0, 0), arm("v1", false, 5, 1)], 3, 1.0);
        assert_eq!(s.choose_variant(&req).unwrap(), ThompsonStrategy.choose_variant(&req).unwrap());
        let preq = promote_req(vec![arm("c", true, 1, 1), arm("v1", false, 1, 1)]);
        assert_eq!(s.should_promote(&preq).unwrap(), ThompsonStrategy.should_promote(&preq).unwrap());
        let ctx = MutationContext {
            prompt_slug: "t".into(),
            version: 1,
            scored_runs: 30,
            mean_quality: 0.5,
            max_mutations: 3,
            sample_low: 5,
            sample_high: 5,
        };
        assert_eq!(s.propose_mutations(&ctx).unwrap(), default_plan(&ctx));
        assert_eq!(s.fallbacks(), 3);
    }

    #[test]
    fn requests_and_answers_are_plain_json() {
        let req = choose(vec![arm("c", true, 3, 1)], 9, 0.5);
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["arms"][0]["posterior"], serde_json::json!({"kind": "beta", "alpha": 2.0, "beta": 3.0}));
        let back: ChooseRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, req);
        let v: Verdict = serde_json::from_str(r#"{"verdict": "promote", "arm": "v1", "reason": "won"}"#).unwrap();
        assert_eq!(v, Verdict::Promote { arm: "v1".into(), reason: "won".into() });
    }
}
