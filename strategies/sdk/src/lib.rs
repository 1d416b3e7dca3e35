//! Glue for Paid strategy guests (ABI version 1, see the `paid-wasm` crate):
//! the request and answer types, the exports, and the sampler shared bit for
//! bit with `paid_core::learning::sampler`.
//!
//! A guest implements [`Strategy`] and exports it with [`export_strategy!`]:
//!
//! ```ignore
//! use paid_strategy_sdk::{ChooseRequest, Choice, PromoteRequest, Strategy, Verdict, export_strategy};
//!
//! struct AlwaysControl;
//!
//! impl Strategy for AlwaysControl {
//!     fn choose_variant(&self, _: &serde_json::Value, req: ChooseRequest) -> Result<Choice, String> {
//!         Ok(Choice { arm: req.arms[0].arm.clone(), reason: "always control".into() })
//!     }
//!     fn should_promote(&self, _: &serde_json::Value, _: PromoteRequest) -> Result<Verdict, String> {
//!         Ok(Verdict::Continue { reason: "never".into() })
//!     }
//! }
//!
//! export_strategy!(AlwaysControl);
//! ```
//!
//! The types mirror `paid_core::learning::strategy`; the host checks every
//! answer, so a guest cannot promote control or pick an unknown arm.

pub mod sampler;

use serde::{Deserialize, Serialize};

/// The ABI version guests built with this SDK speak.
pub const ABI_VERSION: i32 = 1;

/// A posterior over one arm's metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Posterior {
    /// Beta–Bernoulli.
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

    /// One draw.
    pub fn sample(&self, rng: &mut sampler::SplitMix64) -> f64 {
        match *self {
            Posterior::Beta { alpha, beta } => sampler::beta(rng, alpha, beta),
            Posterior::Normal { mean, sd } => sampler::normal(rng, mean, sd),
        }
    }
}

/// One arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmStats {
    /// Name.
    pub arm: String,
    /// Whether it is control.
    pub control: bool,
    /// Samples.
    pub samples: u64,
    /// Successes.
    pub successes: u64,
    /// Mean score.
    pub mean_score: f64,
    /// Score variance.
    pub score_variance: f64,
    /// Posterior.
    pub posterior: Posterior,
}

/// `choose_variant`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChooseRequest {
    /// Experiment id.
    pub experiment_id: String,
    /// Issue key.
    pub issue_key: String,
    /// Seed of every draw.
    pub seed: u64,
    /// Burn-in minimum.
    pub min_samples_per_arm: u64,
    /// Top-two probability of the leader.
    pub top_two: f64,
    /// Arms, control first.
    pub arms: Vec<ArmStats>,
}

/// `choose_variant`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// The arm.
    pub arm: String,
    /// Why.
    pub reason: String,
}

/// Welch's test of a variant against control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchTest {
    /// t.
    pub t: f64,
    /// Degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Variant mean minus control mean.
    pub diff: f64,
}

/// A variant against control, computed by the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Variant.
    pub arm: String,
    /// Its samples.
    pub samples: u64,
    /// Control's samples.
    pub control_samples: u64,
    /// P(variant beats control).
    pub prob_beats_control: f64,
    /// P(control beats variant).
    pub prob_control_beats: f64,
    /// Expected loss of switching.
    pub expected_loss: f64,
    /// Welch's test.
    pub welch: Option<WelchTest>,
}

/// The Bayesian rule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BayesianRule {
    /// P(beats) needed.
    pub min_prob_to_beat: f64,
    /// Largest expected loss.
    pub max_expected_loss: f64,
    /// Samples per arm.
    pub min_samples_per_arm: u64,
    /// Prior probability of no difference.
    pub null_prior: f64,
    /// Prior sd of a score difference.
    pub effect_sd: f64,
}

/// Welch's rule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchRule {
    /// Significance level.
    pub alpha: f64,
    /// Samples per arm.
    pub min_samples_per_arm: u64,
}

/// The experiment's promotion rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum PromotionRule {
    /// Bayesian.
    Bayesian(BayesianRule),
    /// Welch.
    Welch(WelchRule),
}

impl PromotionRule {
    /// Samples every arm needs.
    pub fn min_samples_per_arm(&self) -> u64 {
        match self {
            PromotionRule::Bayesian(r) => r.min_samples_per_arm,
            PromotionRule::Welch(r) => r.min_samples_per_arm,
        }
    }
}

/// `should_promote`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// Experiment id.
    pub experiment_id: String,
    /// Control's name.
    pub control: String,
    /// Arms, control first.
    pub arms: Vec<ArmStats>,
    /// Variants against control.
    pub comparisons: Vec<Comparison>,
    /// The rule.
    pub rule: PromotionRule,
    /// Samples over all arms.
    pub total_samples: u64,
    /// Sample budget (0: none).
    pub max_samples: u64,
}

/// `should_promote`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Keep sampling.
    Continue {
        /// Why.
        reason: String,
    },
    /// Promote this variant.
    Promote {
        /// The winner.
        arm: String,
        /// Why.
        reason: String,
    },
    /// Keep control and stop.
    KeepControl {
        /// Why.
        reason: String,
    },
}

/// `propose_mutations`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationContext {
    /// Prompt slug.
    pub prompt_slug: String,
    /// Version mutated.
    pub version: u32,
    /// Scored runs.
    pub scored_runs: u64,
    /// Mean quality.
    pub mean_quality: f64,
    /// Cap on mutations.
    pub max_mutations: u32,
    /// Low runs to show.
    pub sample_low: u32,
    /// High runs to show.
    pub sample_high: u32,
}

/// `propose_mutations`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationPlan {
    /// Mutations to ask for.
    pub mutations: u32,
    /// Low runs to show.
    pub sample_low: u32,
    /// High runs to show.
    pub sample_high: u32,
    /// Extra instructions.
    #[serde(default)]
    pub guidance: Vec<String>,
}

/// One valid mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationCandidate {
    /// Position in the LLM's answer.
    pub index: u32,
    /// Template.
    pub template: String,
    /// Reasoning.
    pub reasoning: String,
    /// Expected improvement.
    pub expected_improvement: String,
}

/// `review_mutations`'s input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationReview {
    /// Prompt slug.
    pub prompt_slug: String,
    /// Parent template.
    pub parent_template: String,
    /// Cap on kept mutations.
    pub max_mutations: u32,
    /// Candidates.
    pub candidates: Vec<MutationCandidate>,
}

/// `review_mutations`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationSelection {
    /// Indices kept.
    pub keep: Vec<u32>,
}

/// A strategy. `params` is the configuration the host was given for it.
pub trait Strategy {
    /// Picks an arm.
    fn choose_variant(&self, params: &serde_json::Value, req: ChooseRequest) -> Result<Choice, String>;
    /// Decides on promotion.
    fn should_promote(&self, params: &serde_json::Value, req: PromoteRequest) -> Result<Verdict, String>;
    /// Plans the mutation request (default: the configured counts).
    fn propose_mutations(&self, _params: &serde_json::Value, ctx: MutationContext) -> Result<MutationPlan, String> {
        Ok(MutationPlan {
            mutations: ctx.max_mutations,
            sample_low: ctx.sample_low,
            sample_high: ctx.sample_high,
            guidance: Vec::new(),
        })
    }
    /// Picks the mutations to keep (default: the first, up to the cap).
    fn review_mutations(
        &self,
        _params: &serde_json::Value,
        review: MutationReview,
    ) -> Result<MutationSelection, String> {
        Ok(MutationSelection {
            keep: review.candidates.iter().take(review.max_mutations as usize).map(|c| c.index).collect(),
        })
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    call: &'a str,
    #[serde(borrow)]
    params: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    input: &'a serde_json::value::RawValue,
}

fn run<'a, I: Deserialize<'a>, O: Serialize>(
    input: &'a serde_json::value::RawValue,
    f: impl FnOnce(I) -> Result<O, String>,
) -> Result<serde_json::Value, String> {
    let input = serde_json::from_str(input.get()).map_err(|e| format!("bad input: {e}"))?;
    serde_json::to_value(f(input)?).map_err(|e| e.to_string())
}

/// Handles one request (the body of the `decide` export): parses the
/// envelope, dispatches on `call`, and wraps the answer as `{"ok": ...}` or
/// `{"error": "..."}`. The input is parsed straight into the call's type.
pub fn dispatch<S: Strategy>(strategy: &S, request: &[u8]) -> Vec<u8> {
    let answer =
        serde_json::from_slice::<Envelope<'_>>(request).map_err(|e| format!("bad request: {e}")).and_then(|env| {
            let params = match env.params {
                Some(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("bad params: {e}"))?,
                None => serde_json::Value::Null,
            };
            match env.call {
                "choose_variant" => run(env.input, |r| strategy.choose_variant(&params, r)),
                "should_promote" => run(env.input, |r| strategy.should_promote(&params, r)),
                "propose_mutations" => run(env.input, |r| strategy.propose_mutations(&params, r)),
                "review_mutations" => run(env.input, |r| strategy.review_mutations(&params, r)),
                other => Err(format!("unknown call {other:?}")),
            }
        });
    let wrapped = match answer {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(e) => serde_json::json!({ "error": e }),
    };
    serde_json::to_vec(&wrapped).unwrap_or_else(|_| b"{\"error\":\"cannot encode the answer\"}".to_vec())
}

/// The `alloc` export: `len` bytes the host may write, never freed (each
/// call runs in a fresh instance).
pub fn alloc(len: i32) -> i32 {
    let buf = vec![0u8; len.max(0) as usize].into_boxed_slice();
    Box::leak(buf).as_mut_ptr() as usize as i32
}

/// The request the host wrote at `ptr..ptr + len`.
///
/// # Safety
///
/// `ptr` must come from [`alloc`] with at least `len` bytes.
pub unsafe fn request<'a>(ptr: i32, len: i32) -> &'a [u8] {
    // SAFETY: the caller passes a region `alloc` handed out.
    unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len.max(0) as usize) }
}

/// Leaks `answer` and packs its place as the `decide` export returns it.
pub fn answer(answer: Vec<u8>) -> i64 {
    let answer = Box::leak(answer.into_boxed_slice());
    (((answer.as_ptr() as usize as u64) << 32) | answer.len() as u64) as i64
}

/// Exports a [`Strategy`] value (a constant expression) through the ABI:
/// `abi_version`, `alloc` and `decide`.
#[macro_export]
macro_rules! export_strategy {
    ($strategy:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn alloc(len: i32) -> i32 {
            $crate::alloc(len)
        }

        /// # Safety
        ///
        /// Called by the host with a region from `alloc`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn decide(ptr: i32, len: i32) -> i64 {
            // SAFETY: the host writes the request into a region from `alloc`.
            let request = unsafe { $crate::request(ptr, len) };
            $crate::answer($crate::dispatch(&$strategy, request))
        }
    };
}

/// Fills arms below the minimum first (a copy of
/// `paid_core::learning::strategy::burn_in`).
pub fn burn_in(req: &ChooseRequest, rng: &mut sampler::SplitMix64) -> Option<usize> {
    let fewest = req.arms.iter().map(|a| a.samples).min()?;
    if fewest >= req.min_samples_per_arm {
        return None;
    }
    let candidates: Vec<usize> = (0..req.arms.len()).filter(|i| req.arms[*i].samples == fewest).collect();
    candidates.get(sampler::index(rng, candidates.len())).copied()
}

/// The index of the largest value, the first on ties.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}
