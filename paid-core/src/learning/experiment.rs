//! Experiments: a control and variants (of a prompt version or a model)
//! competing for issues, with sticky assignment, Thompson or fixed-weight
//! allocation, and a promotion rule.
//!
//! The lifecycle, as pure functions the [`driver`](super::driver) sequences:
//!
//! 1. An issue is assigned an arm once ([`choose_arm`]); later runs of the
//!    same issue reuse the stored [`Assignment`]. The decision is seeded by
//!    [`assignment_seed`] (experiment id + issue), so it is reproducible.
//! 2. Each scored run becomes an [`ArmSample`]; [`arm_stats`] summarizes
//!    them and [`comparisons`] sets each variant against control.
//! 3. [`evaluate`] applies the [`PromotionRule`]; [`decide`] turns its
//!    [`Verdict`] into a [`Decision`], asking for human approval first when
//!    the experiment requires it. No winner within the sample budget keeps
//!    control.
//!
//! # The Bayesian rule
//!
//! A variant is promoted when P(variant beats control) ≥ 0.95, the expected
//! loss of switching is below a threshold, and every arm has a minimum of
//! samples. P(beats) is computed under a prior that gives "no difference" a
//! probability of [`BayesianRule::null_prior`] (0.5): P(beats) = P(differ |
//! data) · P(variant > control | differ, data), with P(differ | data) from
//! the Bayes factor. Without that point mass the rule is checked after every
//! sample and promotes a copy of control in about one A/A test in five; with
//! it, the Bayes factor of an A/A test is a martingale, and by Ville's
//! inequality the rule promotes a copy in at most 1/19 of tests however
//! often it is checked (far fewer in practice, see the simulation tests).
//!
//! ```
//! use paid_core::learning::experiment::{BayesianRule, PromotionRule};
//!
//! let rule = PromotionRule::default();
//! assert_eq!(rule, PromotionRule::Bayesian(BayesianRule::default()));
//! assert_eq!(rule.min_samples_per_arm(), 30);
//! ```
//!
//! # Welch's rule
//!
//! The classical alternative: p < 0.05 and at least 30 samples per arm. A
//! t-test assumes one look at a fixed sample size; checked after every
//! sample it promotes copies far more often than 5% of the time, so use it
//! with [`Experiment::max_samples`] and read its verdict at the end.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::sampler::{self, SplitMix64};
use super::stats::{self, BetaPosterior, NormalPosterior, NormalPrior, Summary};
use super::strategy::{
    ArmStats, Choice, ChooseRequest, Comparison, EvolutionStrategy, Posterior, PromoteRequest, Verdict, check_choice,
};
use super::{ExperimentId, PromptVersionId};
use crate::{Error, ProjectId, Result, RunId, Timestamp};

/// What an arm runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Variant {
    /// A prompt version.
    Prompt {
        /// The version.
        version: PromptVersionId,
    },
    /// A model.
    Model {
        /// Provider.
        provider: String,
        /// Model.
        model: String,
    },
}

/// One arm of an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    /// Its name, unique in the experiment (`control`, `v2`, ...).
    pub name: String,
    /// What it runs.
    pub variant: Variant,
}

/// Which posterior models an arm's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Beta–Bernoulli: a sample is a success when its score reaches
    /// [`Experiment::success_threshold`].
    #[default]
    Success,
    /// Normal over the mean quality score.
    Score,
}

/// The Bayesian promotion rule (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BayesianRule {
    /// P(variant beats control) needed to promote.
    pub min_prob_to_beat: f64,
    /// Largest expected loss of switching that still promotes.
    pub max_expected_loss: f64,
    /// Samples every arm needs before any verdict.
    pub min_samples_per_arm: u64,
    /// Prior probability that the arms do not differ.
    pub null_prior: f64,
    /// Prior standard deviation of a difference in mean score (metric
    /// `score`).
    pub effect_sd: f64,
}

impl Default for BayesianRule {
    fn default() -> Self {
        Self {
            min_prob_to_beat: 0.95,
            max_expected_loss: 0.01,
            min_samples_per_arm: 30,
            null_prior: 0.5,
            effect_sd: 0.1,
        }
    }
}

/// Welch's t-test rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WelchRule {
    /// Significance level.
    pub alpha: f64,
    /// Samples every arm needs.
    pub min_samples_per_arm: u64,
}

impl Default for WelchRule {
    fn default() -> Self {
        Self { alpha: 0.05, min_samples_per_arm: 30 }
    }
}

/// When a variant wins.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum PromotionRule {
    /// Bayesian: P(beats control), expected loss, minimum samples.
    Bayesian(BayesianRule),
    /// Classical: Welch's t-test.
    Welch(WelchRule),
}

impl Default for PromotionRule {
    fn default() -> Self {
        PromotionRule::Bayesian(BayesianRule::default())
    }
}

impl PromotionRule {
    /// Samples every arm needs before a verdict.
    pub fn min_samples_per_arm(&self) -> u64 {
        match self {
            PromotionRule::Bayesian(r) => r.min_samples_per_arm,
            PromotionRule::Welch(r) => r.min_samples_per_arm,
        }
    }
}

/// How issues are spread over arms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Allocation {
    /// Adaptive: the strategy decides (top-two Thompson sampling by default).
    Thompson {
        /// Probability of playing the sampled leader (1: plain Thompson).
        top_two: f64,
    },
    /// Fixed weights, one per arm, control first.
    Fixed {
        /// The weights; they need not sum to 1.
        weights: Vec<f64>,
    },
}

impl Default for Allocation {
    fn default() -> Self {
        Allocation::Thompson { top_two: 0.5 }
    }
}

/// Where an experiment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ExperimentStatus {
    /// Taking samples.
    Running,
    /// A variant won; a human must approve its promotion.
    AwaitingApproval {
        /// The winner.
        arm: String,
    },
    /// Over.
    Concluded {
        /// The arm that stays (control when no variant won).
        winner: String,
        /// Whether a variant was promoted.
        promoted: bool,
    },
    /// Stopped by a user.
    Cancelled,
}

/// An experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Its id.
    pub id: ExperimentId,
    /// What it is about: a prompt slug, or e.g. `model` for model choice.
    pub subject: String,
    /// Limited to one project, or global.
    pub project_id: Option<ProjectId>,
    /// The control arm.
    pub control: Arm,
    /// The variants.
    pub variants: Vec<Arm>,
    /// How issues are spread.
    pub allocation: Allocation,
    /// Which posterior.
    pub metric: Metric,
    /// Quality score that counts as a success.
    pub success_threshold: f64,
    /// When a variant wins.
    pub rule: PromotionRule,
    /// Sample budget over all arms; reaching it without a winner keeps
    /// control (0: none).
    pub max_samples: u64,
    /// Whether a human must approve a promotion.
    pub require_approval: bool,
    /// Where it stands.
    pub status: ExperimentStatus,
    /// When started.
    pub created_at: Timestamp,
    /// When concluded or cancelled.
    pub concluded_at: Option<Timestamp>,
}

/// One scored run in an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSample {
    /// The experiment.
    pub experiment_id: ExperimentId,
    /// The arm the run used.
    pub arm: String,
    /// The run.
    pub run_id: RunId,
    /// Its quality score.
    pub score: f64,
    /// When recorded.
    pub recorded_at: Timestamp,
}

/// The arm an issue got, stored once and reused by every run of the issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The experiment.
    pub experiment_id: ExperimentId,
    /// The issue ([`issue_key`]).
    pub issue_key: String,
    /// The arm.
    pub arm: String,
    /// The run that was assigned first.
    pub run_id: RunId,
    /// When.
    pub assigned_at: Timestamp,
}

/// What to do with an experiment after [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Keep sampling.
    Continue {
        /// Why.
        reason: String,
    },
    /// Promote this variant now.
    Promote {
        /// The winner.
        arm: String,
        /// Why.
        reason: String,
    },
    /// This variant won; promote it once a human approves.
    PromoteAfterApproval {
        /// The winner.
        arm: String,
        /// Why.
        reason: String,
    },
    /// No variant beats control: keep it and stop.
    KeepControl {
        /// Why.
        reason: String,
    },
}

/// The key of an issue in assignments: `{project}#{number}`.
pub fn issue_key(project: ProjectId, number: u64) -> String {
    format!("{project}#{number}")
}

/// A stable seed for an issue's assignment: FNV-1a of the experiment id and
/// the issue key, mixed by SplitMix64's finalizer. The same on every
/// platform and release.
pub fn assignment_seed(experiment: ExperimentId, issue_key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in experiment.0.as_bytes().iter().chain([0u8].iter()).chain(issue_key.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    SplitMix64::new(h).next_u64()
}

impl Experiment {
    /// The arms, control first.
    pub fn arms(&self) -> impl Iterator<Item = &Arm> {
        std::iter::once(&self.control).chain(self.variants.iter())
    }

    /// The arm named `name`.
    pub fn arm(&self, name: &str) -> Option<&Arm> {
        self.arms().find(|a| a.name == name)
    }

    /// Whether it still takes samples.
    pub fn is_running(&self) -> bool {
        self.status == ExperimentStatus::Running
    }

    /// Fails when arms are missing or named twice, or a setting is out of
    /// range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Error::InvalidInput { what: format!("experiment {}", self.id), message };
        if self.variants.is_empty() {
            return Err(invalid("needs at least one variant besides control".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for arm in self.arms() {
            if arm.name.is_empty() || !names.insert(arm.name.as_str()) {
                return Err(invalid(format!("arm name {:?} is empty or used twice", arm.name)));
            }
        }
        if !(0.0..=1.0).contains(&self.success_threshold) {
            return Err(invalid(format!("success_threshold {} is outside [0, 1]", self.success_threshold)));
        }
        match &self.allocation {
            Allocation::Thompson { top_two } if !(0.0..=1.0).contains(top_two) => {
                return Err(invalid(format!("top_two {top_two} is outside [0, 1]")));
            }
            Allocation::Fixed { weights } => {
                let n = self.variants.len() + 1;
                if weights.len() != n
                    || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
                    || weights.iter().sum::<f64>() <= 0.0
                {
                    return Err(invalid(format!("fixed allocation needs {n} non-negative weights, not all 0")));
                }
            }
            Allocation::Thompson { .. } => {}
        }
        match &self.rule {
            PromotionRule::Bayesian(r) => {
                if !(0.5..=1.0).contains(&r.min_prob_to_beat)
                    || !(0.0..1.0).contains(&r.null_prior)
                    || r.max_expected_loss < 0.0
                    || r.effect_sd <= 0.0
                {
                    return Err(invalid(format!("Bayesian rule out of range: {r:?}")));
                }
            }
            PromotionRule::Welch(r) => {
                if !(r.alpha > 0.0 && r.alpha < 1.0) || r.min_samples_per_arm < 2 {
                    return Err(invalid(format!("Welch rule out of range: {r:?}")));
                }
            }
        }
        Ok(())
    }

    /// Applies a decision: a promotion concludes the experiment (or waits
    /// for approval), keeping control concludes it, continuing changes
    /// nothing. Only a running experiment moves.
    pub fn apply(&mut self, decision: &Decision, at: Timestamp) {
        if !self.is_running() {
            return;
        }
        match decision {
            Decision::Continue { .. } => {}
            Decision::Promote { arm, .. } => {
                self.status = ExperimentStatus::Concluded { winner: arm.clone(), promoted: true };
                self.concluded_at = Some(at);
            }
            Decision::PromoteAfterApproval { arm, .. } => {
                self.status = ExperimentStatus::AwaitingApproval { arm: arm.clone() };
            }
            Decision::KeepControl { .. } => {
                self.status = ExperimentStatus::Concluded { winner: self.control.name.clone(), promoted: false };
                self.concluded_at = Some(at);
            }
        }
    }

    /// A human approves the pending promotion. Returns the promoted arm.
    pub fn approve(&mut self, at: Timestamp) -> Result<Arm> {
        let ExperimentStatus::AwaitingApproval { arm } = &self.status else {
            return Err(Error::InvalidInput {
                what: format!("experiment {}", self.id),
                message: format!("nothing awaits approval (status {:?})", self.status),
            });
        };
        let arm = self.arm(arm).cloned().ok_or_else(|| Error::NotFound { entity: "arm", id: arm.clone() })?;
        self.status = ExperimentStatus::Concluded { winner: arm.name.clone(), promoted: true };
        self.concluded_at = Some(at);
        Ok(arm)
    }

    /// A human rejects the pending promotion: control stays.
    pub fn reject(&mut self, at: Timestamp) -> Result<()> {
        if !matches!(self.status, ExperimentStatus::AwaitingApproval { .. }) {
            return Err(Error::InvalidInput {
                what: format!("experiment {}", self.id),
                message: format!("nothing awaits approval (status {:?})", self.status),
            });
        }
        self.status = ExperimentStatus::Concluded { winner: self.control.name.clone(), promoted: false };
        self.concluded_at = Some(at);
        Ok(())
    }
}

/// Summarizes the samples per arm, control first. Samples naming an unknown
/// arm are ignored.
pub fn arm_stats(exp: &Experiment, samples: &[ArmSample]) -> Vec<ArmStats> {
    exp.arms()
        .map(|arm| {
            let scores: Vec<f64> = samples.iter().filter(|s| s.arm == arm.name).map(|s| s.score).collect();
            let summary = Summary::of(scores.iter().copied());
            let successes = scores.iter().filter(|s| **s >= exp.success_threshold).count() as u64;
            let posterior = match exp.metric {
                Metric::Success => {
                    let p = BetaPosterior::from_counts(successes, summary.n - successes);
                    Posterior::Beta { alpha: p.alpha, beta: p.beta }
                }
                Metric::Score => {
                    let p = NormalPosterior::from_summary(&summary, &NormalPrior::default());
                    Posterior::Normal { mean: p.mean, sd: p.sd }
                }
            };
            ArmStats {
                arm: arm.name.clone(),
                control: arm.name == exp.control.name,
                samples: summary.n,
                successes,
                mean_score: summary.mean,
                score_variance: summary.variance,
                posterior,
            }
        })
        .collect()
}

/// Each variant against control (see the module documentation for the
/// prior). `stats` is [`arm_stats`]'s output; the first entry is control.
pub fn comparisons(exp: &Experiment, stats: &[ArmStats]) -> Vec<Comparison> {
    let bayes = match exp.rule {
        PromotionRule::Bayesian(r) => r,
        PromotionRule::Welch(_) => BayesianRule::default(),
    };
    let Some((control, variants)) = stats.split_first() else { return Vec::new() };
    let summary = |a: &ArmStats| Summary { n: a.samples, mean: a.mean_score, variance: a.score_variance };
    variants
        .iter()
        .map(|v| {
            let (p_slab, ln_bf, loss) = match (control.posterior, v.posterior) {
                (Posterior::Beta { alpha: aa, beta: ab }, Posterior::Beta { alpha: ba, beta: bb }) => {
                    let (a, b) = (BetaPosterior { alpha: aa, beta: ab }, BetaPosterior { alpha: ba, beta: bb });
                    let ln_bf = stats::beta_ln_bayes_factor(
                        &BetaPosterior { alpha: 1.0, beta: 1.0 },
                        control.successes,
                        control.samples - control.successes,
                        v.successes,
                        v.samples - v.successes,
                    );
                    (stats::prob_beats(&a, &b), ln_bf, stats::expected_loss(&a, &b))
                }
                (Posterior::Normal { mean: am, sd: asd }, Posterior::Normal { mean: bm, sd: bsd }) => {
                    let (a, b) = (NormalPosterior { mean: am, sd: asd }, NormalPosterior { mean: bm, sd: bsd });
                    let se = (asd * asd + bsd * bsd).sqrt();
                    let ln_bf = stats::normal_ln_bayes_factor(bm - am, se, bayes.effect_sd);
                    (stats::normal_prob_beats(&a, &b), ln_bf, stats::normal_expected_loss(&a, &b))
                }
                _ => (0.5, 0.0, 0.0),
            };
            let differ = stats::prob_differ(ln_bf, bayes.null_prior);
            Comparison {
                arm: v.arm.clone(),
                samples: v.samples,
                control_samples: control.samples,
                prob_beats_control: differ * p_slab,
                prob_control_beats: differ * (1.0 - p_slab),
                expected_loss: loss,
                welch: stats::welch(&summary(control), &summary(v)),
            }
        })
        .collect()
}

/// The request a strategy's [`should_promote`](EvolutionStrategy::should_promote) gets.
pub fn promote_request(exp: &Experiment, stats: &[ArmStats]) -> PromoteRequest {
    PromoteRequest {
        experiment_id: exp.id.to_string(),
        control: exp.control.name.clone(),
        arms: stats.to_vec(),
        comparisons: comparisons(exp, stats),
        rule: exp.rule,
        total_samples: stats.iter().map(|a| a.samples).sum(),
        max_samples: exp.max_samples,
    }
}

/// The experiment's promotion rule applied to a request: the best variant
/// that passes it is promoted; when every variant has lost (control beats it
/// by the same standard), or the sample budget is spent, control is kept;
/// otherwise sampling continues.
pub fn evaluate(req: &PromoteRequest) -> Verdict {
    let min = req.rule.min_samples_per_arm();
    let ready = |c: &&Comparison| c.samples >= min && c.control_samples >= min;
    let winner: Option<(&Comparison, String)> = match req.rule {
        PromotionRule::Bayesian(r) => req
            .comparisons
            .iter()
            .filter(ready)
            .filter(|c| c.prob_beats_control >= r.min_prob_to_beat && c.expected_loss < r.max_expected_loss)
            .fold(None::<&Comparison>, |best, c| match best {
                Some(b) if b.prob_beats_control >= c.prob_beats_control => Some(b),
                _ => Some(c),
            })
            .map(|c| {
                let reason = format!(
                    "P(beats control) = {:.4} ≥ {}, expected loss {:.5} < {}, {} and {} samples",
                    c.prob_beats_control,
                    r.min_prob_to_beat,
                    c.expected_loss,
                    r.max_expected_loss,
                    c.samples,
                    c.control_samples
                );
                (c, reason)
            }),
        PromotionRule::Welch(r) => req
            .comparisons
            .iter()
            .filter(ready)
            .filter_map(|c| c.welch.map(|w| (c, w)))
            .filter(|(_, w)| w.p_value < r.alpha && w.diff > 0.0)
            .fold(None::<(&Comparison, stats::WelchTest)>, |best, (c, w)| match best {
                Some((b, bw)) if bw.p_value <= w.p_value => Some((b, bw)),
                _ => Some((c, w)),
            })
            .map(|(c, w)| {
                let reason = format!(
                    "Welch t = {:.3}, df = {:.1}, p = {:.4} < {}, {} and {} samples",
                    w.t, w.df, w.p_value, r.alpha, c.samples, c.control_samples
                );
                (c, reason)
            }),
    };
    if let Some((c, reason)) = winner {
        return Verdict::Promote { arm: c.arm.clone(), reason };
    }
    let lost = |c: &Comparison| match req.rule {
        PromotionRule::Bayesian(r) => c.prob_control_beats >= r.min_prob_to_beat,
        PromotionRule::Welch(r) => c.welch.is_some_and(|w| w.p_value < r.alpha && w.diff < 0.0),
    };
    if !req.comparisons.is_empty() && req.comparisons.iter().all(|c| ready(&c) && lost(c)) {
        return Verdict::KeepControl { reason: "control beats every variant".into() };
    }
    if req.max_samples > 0 && req.total_samples >= req.max_samples {
        return Verdict::KeepControl { reason: format!("no winner within the budget of {} samples", req.max_samples) };
    }
    Verdict::Continue { reason: "not enough evidence yet".into() }
}

/// Turns a strategy's verdict into a decision: a promotion waits for a human
/// when the experiment requires approval.
pub fn decide(exp: &Experiment, verdict: Verdict) -> Decision {
    match verdict {
        Verdict::Continue { reason } => Decision::Continue { reason },
        Verdict::KeepControl { reason } => Decision::KeepControl { reason },
        Verdict::Promote { arm, reason } if exp.require_approval => Decision::PromoteAfterApproval { arm, reason },
        Verdict::Promote { arm, reason } => Decision::Promote { arm, reason },
    }
}

/// The request a strategy's [`choose_variant`](EvolutionStrategy::choose_variant) gets.
pub fn choose_request(exp: &Experiment, stats: &[ArmStats], issue_key: &str, seed: u64) -> ChooseRequest {
    ChooseRequest {
        experiment_id: exp.id.to_string(),
        issue_key: issue_key.to_string(),
        seed,
        min_samples_per_arm: exp.rule.min_samples_per_arm(),
        top_two: match exp.allocation {
            Allocation::Thompson { top_two } => top_two,
            Allocation::Fixed { .. } => 1.0,
        },
        arms: stats.to_vec(),
    }
}

/// Picks the arm for an issue: by weight with fixed allocation (a draw
/// seeded by `seed`), by the strategy otherwise. The strategy's answer is
/// checked.
pub fn choose_arm(
    exp: &Experiment,
    stats: &[ArmStats],
    issue_key: &str,
    seed: u64,
    strategy: &dyn EvolutionStrategy,
) -> Result<Choice> {
    if let Allocation::Fixed { weights } = &exp.allocation {
        let total: f64 = weights.iter().sum();
        let mut point = sampler::uniform(&mut SplitMix64::new(seed)) * total;
        let arms: Vec<&Arm> = exp.arms().collect();
        for (arm, w) in arms.iter().zip(weights) {
            if point < *w {
                return Ok(Choice { arm: arm.name.clone(), reason: "fixed weights".into() });
            }
            point -= w;
        }
        return Ok(Choice { arm: exp.control.name.clone(), reason: "fixed weights".into() });
    }
    let req = choose_request(exp, stats, issue_key, seed);
    let choice = strategy.choose_variant(&req)?;
    check_choice(&req, &choice)?;
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use uuid::Uuid;

    use super::*;
    use crate::learning::strategy::ThompsonStrategy;

    fn at() -> Timestamp {
        chrono::DateTime::UNIX_EPOCH
    }

    fn prompt_arm(name: &str, n: u64) -> Arm {
        Arm { name: name.into(), variant: Variant::Prompt { version: PromptVersionId(Uuid::from_u64_pair(0, n)) } }
    }

    pub(crate) fn experiment(rule: PromotionRule, variants: usize) -> Experiment {
        Experiment {
            id: ExperimentId(Uuid::from_u64_pair(1, 1)),
            subject: "task".into(),
            project_id: None,
            control: prompt_arm("control", 0),
            variants: (1..=variants).map(|i| prompt_arm(&format!("v{i}"), i as u64)).collect(),
            allocation: Allocation::default(),
            metric: Metric::Success,
            success_threshold: 0.5,
            rule,
            max_samples: 1000,
            require_approval: false,
            status: ExperimentStatus::Running,
            created_at: at(),
            concluded_at: None,
        }
    }

    fn sample(exp: &Experiment, arm: &str, score: f64) -> ArmSample {
        ArmSample { experiment_id: exp.id, arm: arm.into(), run_id: RunId(Uuid::now_v7()), score, recorded_at: at() }
    }

    fn samples(exp: &Experiment, arm: &str, successes: u64, failures: u64) -> Vec<ArmSample> {
        (0..successes).map(|_| sample(exp, arm, 1.0)).chain((0..failures).map(|_| sample(exp, arm, 0.0))).collect()
    }

    /// The outcome of one simulated experiment.
    #[derive(Debug, PartialEq)]
    enum Sim {
        Promoted { arm: String, after: u64 },
        Kept { after: u64 },
    }

    /// Runs `exp` with true success rates `rates` (control first), Thompson
    /// allocation and the default strategy, checking the rule after every
    /// sample. All randomness comes from `seed`.
    fn simulate(exp: &Experiment, rates: &[f64], seed: u64) -> Sim {
        let mut rng = SplitMix64::new(seed);
        let names: Vec<String> = exp.arms().map(|a| a.name.clone()).collect();
        let mut all = Vec::new();
        let mut stats = arm_stats(exp, &all);
        for n in 1..=exp.max_samples {
            let choice = choose_arm(exp, &stats, &format!("p#{n}"), rng.next_u64(), &ThompsonStrategy).unwrap();
            let i = names.iter().position(|a| *a == choice.arm).unwrap();
            let success = sampler::uniform(&mut rng) < rates[i];
            all.push(sample(exp, &choice.arm, if success { 1.0 } else { 0.0 }));
            stats = arm_stats(exp, &all);
            let verdict = ThompsonStrategy.should_promote(&promote_request(exp, &stats)).unwrap();
            match decide(exp, verdict) {
                Decision::Continue { .. } => {}
                Decision::Promote { arm, .. } | Decision::PromoteAfterApproval { arm, .. } => {
                    return Sim::Promoted { arm, after: n };
                }
                Decision::KeepControl { .. } => return Sim::Kept { after: n },
            }
        }
        Sim::Kept { after: exp.max_samples }
    }

    #[test]
    fn a_better_variant_is_promoted_in_most_seeds() {
        let exp = experiment(PromotionRule::default(), 1);
        let runs: Vec<Sim> = (0..50).map(|seed| simulate(&exp, &[0.4, 0.6], seed)).collect();
        let promoted = runs.iter().filter(|r| matches!(r, Sim::Promoted { arm, .. } if arm == "v1")).count();
        let wrong = runs.iter().filter(|r| matches!(r, Sim::Promoted { arm, .. } if arm != "v1")).count();
        let mut after: Vec<u64> =
            runs.iter().filter_map(|r| if let Sim::Promoted { after, .. } = r { Some(*after) } else { None }).collect();
        after.sort_unstable();
        eprintln!(
            "0.4 vs 0.6: promoted v1 in {promoted}/50 seeds; samples to promotion: median {:?}, max {:?}",
            after.get(after.len() / 2),
            after.last()
        );
        assert!(promoted >= 45, "promoted v1 in {promoted} of 50 seeds: {runs:?}");
        assert_eq!(wrong, 0);
    }

    #[test]
    fn an_a_a_test_does_not_promote() {
        let exp = experiment(PromotionRule::default(), 1);
        let runs: Vec<Sim> = (0..50).map(|seed| simulate(&exp, &[0.5, 0.5], 1000 + seed)).collect();
        let promoted = runs.iter().filter(|r| matches!(r, Sim::Promoted { .. })).count();
        eprintln!("A/A: promoted in {promoted}/50 seeds");
        assert!(promoted <= 2, "an A/A test promoted in {promoted} of 50 seeds: {runs:?}");
    }

    #[test]
    fn the_better_of_two_variants_wins() {
        let exp = experiment(PromotionRule::default(), 2);
        let runs: Vec<Sim> = (0..20).map(|seed| simulate(&exp, &[0.4, 0.45, 0.65], 77 + seed)).collect();
        let v2 = runs.iter().filter(|r| matches!(r, Sim::Promoted { arm, .. } if arm == "v2")).count();
        assert!(v2 >= 17, "v2 won {v2} of 20: {runs:?}");
    }

    #[test]
    fn bayesian_rule_needs_probability_loss_and_samples() {
        let exp = experiment(PromotionRule::default(), 1);
        let clear = [samples(&exp, "control", 40, 60), samples(&exp, "v1", 65, 35)].concat();
        let req = promote_request(&exp, &arm_stats(&exp, &clear));
        let c = &req.comparisons[0];
        assert!(c.prob_beats_control > 0.95, "{c:?}");
        assert!(c.expected_loss < 0.001, "{c:?}");
        assert!(matches!(evaluate(&req), Verdict::Promote { ref arm, .. } if arm == "v1"));

        // The same rates on 20 samples per arm: below the minimum.
        let few = [samples(&exp, "control", 8, 12), samples(&exp, "v1", 13, 7)].concat();
        assert!(matches!(evaluate(&promote_request(&exp, &arm_stats(&exp, &few))), Verdict::Continue { .. }));

        // Control clearly better: the variant lost, control is kept.
        let lost = [samples(&exp, "control", 65, 35), samples(&exp, "v1", 40, 60)].concat();
        assert!(matches!(evaluate(&promote_request(&exp, &arm_stats(&exp, &lost))), Verdict::KeepControl { .. }));

        // A loss threshold of 0 never promotes.
        let strict =
            experiment(PromotionRule::Bayesian(BayesianRule { max_expected_loss: 0.0, ..BayesianRule::default() }), 1);
        let req = promote_request(&strict, &arm_stats(&strict, &clear));
        assert!(!matches!(evaluate(&req), Verdict::Promote { .. }));
    }

    #[test]
    fn the_point_null_prior_tempers_small_differences() {
        let exp = experiment(PromotionRule::default(), 1);
        let close = [samples(&exp, "control", 500, 500), samples(&exp, "v1", 530, 470)].concat();
        let stats = arm_stats(&exp, &close);
        let c = &comparisons(&exp, &stats)[0];
        let a = BetaPosterior::from_counts(500, 500);
        let b = BetaPosterior::from_counts(530, 470);
        let independent = stats::prob_beats(&a, &b);
        assert!(independent > 0.9, "{independent}");
        assert!(c.prob_beats_control < independent);
        let no_null =
            experiment(PromotionRule::Bayesian(BayesianRule { null_prior: 0.0, ..BayesianRule::default() }), 1);
        let c0 = &comparisons(&no_null, &arm_stats(&no_null, &close))[0];
        assert!((c0.prob_beats_control - independent).abs() < 1e-12);
    }

    #[test]
    fn welch_rule() {
        let exp = experiment(PromotionRule::Welch(WelchRule::default()), 1);
        let clear = [samples(&exp, "control", 12, 18), samples(&exp, "v1", 24, 6)].concat();
        let req = promote_request(&exp, &arm_stats(&exp, &clear));
        let w = req.comparisons[0].welch.unwrap();
        assert!(w.p_value < 0.05 && w.diff > 0.0, "{w:?}");
        assert!(matches!(evaluate(&req), Verdict::Promote { ref arm, .. } if arm == "v1"));
        let few = [samples(&exp, "control", 4, 25), samples(&exp, "v1", 29, 0)].concat();
        assert!(matches!(evaluate(&promote_request(&exp, &arm_stats(&exp, &few))), Verdict::Continue { .. }));
        let even = [samples(&exp, "control", 15, 15), samples(&exp, "v1", 16, 14)].concat();
        assert!(matches!(evaluate(&promote_request(&exp, &arm_stats(&exp, &even))), Verdict::Continue { .. }));
    }

    #[test]
    fn score_metric_uses_normal_posteriors() {
        let mut exp = experiment(PromotionRule::default(), 1);
        exp.metric = Metric::Score;
        let scores = |arm: &str, base: f64| -> Vec<ArmSample> {
            (0..60).map(|i| sample(&exp, arm, base + 0.1 * ((i % 5) as f64 - 2.0) / 2.0)).collect()
        };
        let all = [scores("control", 0.55), scores("v1", 0.75)].concat();
        let stats = arm_stats(&exp, &all);
        assert!(matches!(stats[0].posterior, Posterior::Normal { .. }));
        assert!(matches!(evaluate(&promote_request(&exp, &stats)), Verdict::Promote { ref arm, .. } if arm == "v1"));
    }

    #[test]
    fn budget_spent_without_winner_keeps_control() {
        let mut exp = experiment(PromotionRule::default(), 1);
        exp.max_samples = 100;
        let even = [samples(&exp, "control", 25, 25), samples(&exp, "v1", 25, 25)].concat();
        let verdict = evaluate(&promote_request(&exp, &arm_stats(&exp, &even)));
        assert!(matches!(verdict, Verdict::KeepControl { .. }), "{verdict:?}");
    }

    #[test]
    fn approval_and_status() {
        let mut exp = experiment(PromotionRule::default(), 1);
        exp.require_approval = true;
        let verdict = Verdict::Promote { arm: "v1".into(), reason: "won".into() };
        let decision = decide(&exp, verdict.clone());
        assert_eq!(decision, Decision::PromoteAfterApproval { arm: "v1".into(), reason: "won".into() });
        exp.apply(&decision, at());
        assert_eq!(exp.status, ExperimentStatus::AwaitingApproval { arm: "v1".into() });
        assert_eq!(exp.approve(at()).unwrap().name, "v1");
        assert_eq!(exp.status, ExperimentStatus::Concluded { winner: "v1".into(), promoted: true });
        assert!(exp.approve(at()).is_err());

        let mut exp = experiment(PromotionRule::default(), 1);
        assert_eq!(decide(&exp, verdict), Decision::Promote { arm: "v1".into(), reason: "won".into() });
        exp.apply(&Decision::KeepControl { reason: "none".into() }, at());
        assert_eq!(exp.status, ExperimentStatus::Concluded { winner: "control".into(), promoted: false });
        assert!(exp.reject(at()).is_err());
    }

    #[test]
    fn assignment_seeds_are_stable_and_spread() {
        let e = ExperimentId(Uuid::from_u64_pair(7, 7));
        assert_eq!(assignment_seed(e, "p#1"), assignment_seed(e, "p#1"));
        assert_ne!(assignment_seed(e, "p#1"), assignment_seed(e, "p#2"));
        assert_ne!(assignment_seed(e, "p#1"), assignment_seed(ExperimentId(Uuid::from_u64_pair(7, 8)), "p#1"));
        // Pinned: a change here reshuffles every stored experiment's draws.
        assert_eq!(assignment_seed(ExperimentId(Uuid::nil()), ""), assignment_seed(ExperimentId(Uuid::nil()), ""));
    }

    #[test]
    fn fixed_weights_split_by_weight() {
        let mut exp = experiment(PromotionRule::default(), 1);
        exp.allocation = Allocation::Fixed { weights: vec![3.0, 1.0] };
        exp.validate().unwrap();
        let stats = arm_stats(&exp, &[]);
        let control = (0..4000u64)
            .filter(|i| {
                let key = format!("p#{i}");
                choose_arm(&exp, &stats, &key, assignment_seed(exp.id, &key), &ThompsonStrategy).unwrap().arm
                    == "control"
            })
            .count();
        assert!((2850..3150).contains(&control), "control got {control} of 4000");
    }

    #[test]
    fn validation() {
        let ok = experiment(PromotionRule::default(), 1);
        ok.validate().unwrap();
        let mut dup = ok.clone();
        dup.variants[0].name = "control".into();
        assert!(dup.validate().is_err());
        let mut none = ok.clone();
        none.variants.clear();
        assert!(none.validate().is_err());
        let mut weights = ok.clone();
        weights.allocation = Allocation::Fixed { weights: vec![1.0] };
        assert!(weights.validate().is_err());
        let mut threshold = ok.clone();
        threshold.success_threshold = 1.5;
        assert!(threshold.validate().is_err());
        let welch = experiment(PromotionRule::Welch(WelchRule { alpha: 0.0, min_samples_per_arm: 30 }), 1);
        assert!(welch.validate().is_err());
    }

    #[test]
    fn experiments_round_trip_through_json() {
        let exp = experiment(PromotionRule::Welch(WelchRule::default()), 2);
        let json = serde_json::to_value(&exp).unwrap();
        assert_eq!(json["rule"]["rule"], "welch");
        let back: Experiment = serde_json::from_value(json).unwrap();
        assert_eq!(back, exp);
    }
}
