//! Experiment statistics: Beta–Bernoulli and Normal posteriors, the
//! probability that one arm beats another, expected loss, Bayes factors
//! against "no difference", and Welch's t-test. Distributions come from
//! `statrs`.
//!
//! Conventions: `prob_beats(a, b)` is P(B > A), and `expected_loss(a, b)` is
//! E[max(A − B, 0)], what is lost on average by choosing B when A may be
//! better. `A` is the control in experiments.
//!
//! ```
//! use paid_core::learning::stats::{BetaPosterior, expected_loss, prob_beats};
//!
//! let a = BetaPosterior::new(1.0, 1.0).unwrap(); // uniform
//! let b = BetaPosterior::new(2.0, 1.0).unwrap(); // density 2x
//! assert!((prob_beats(&a, &b) - 2.0 / 3.0).abs() < 1e-12);
//! assert!(expected_loss(&a, &b) < expected_loss(&b, &a));
//! ```

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, Continuous, ContinuousCDF, Normal, StudentsT};
use statrs::function::beta::ln_beta;

use crate::{Error, Result};

/// A Beta distribution over a success rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BetaPosterior {
    /// Prior α plus successes.
    pub alpha: f64,
    /// Prior β plus failures.
    pub beta: f64,
}

impl BetaPosterior {
    /// A Beta(α, β); both must be finite and positive.
    pub fn new(alpha: f64, beta: f64) -> Result<Self> {
        if alpha.is_finite() && beta.is_finite() && alpha > 0.0 && beta > 0.0 {
            Ok(Self { alpha, beta })
        } else {
            Err(Error::InvalidInput {
                what: "beta posterior".into(),
                message: format!("α = {alpha}, β = {beta}: both must be finite and positive"),
            })
        }
    }

    /// The posterior after `successes` and `failures` from a uniform
    /// Beta(1, 1) prior.
    pub fn from_counts(successes: u64, failures: u64) -> Self {
        Self { alpha: 1.0 + successes as f64, beta: 1.0 + failures as f64 }
    }

    /// The posterior after `successes` and `failures` from this prior.
    pub fn update(&self, successes: u64, failures: u64) -> Self {
        Self { alpha: self.alpha + successes as f64, beta: self.beta + failures as f64 }
    }

    /// The mean, α / (α + β).
    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// The variance.
    pub fn variance(&self) -> f64 {
        let s = self.alpha + self.beta;
        self.alpha * self.beta / (s * s * (s + 1.0))
    }

    fn dist(&self) -> Option<Beta> {
        Beta::new(self.alpha, self.beta).ok()
    }
}

/// The largest integer α for which [`prob_beats_closed_form`] sums its
/// series; beyond it [`prob_beats`] integrates numerically.
pub const CLOSED_FORM_MAX_ALPHA: f64 = 100_000.0;

/// P(B > A) for independent Beta variables: the closed form when `b.alpha` is
/// a whole number (always so with whole-number priors), numeric integration
/// otherwise.
pub fn prob_beats(a: &BetaPosterior, b: &BetaPosterior) -> f64 {
    prob_beats_closed_form(a, b).unwrap_or_else(|| prob_beats_numeric(a, b))
}

/// P(B > A) by the closed form (Evan Miller, "Formulas for Bayesian A/B
/// testing"), for whole-number `b.alpha` up to [`CLOSED_FORM_MAX_ALPHA`]:
///
/// Σ_{i=0}^{α_B−1} B(α_A+i, β_A+β_B) / ((β_B+i) · B(1+i, β_B) · B(α_A, β_A)).
///
/// `None` when `b.alpha` is not a whole number in range.
pub fn prob_beats_closed_form(a: &BetaPosterior, b: &BetaPosterior) -> Option<f64> {
    if b.alpha.fract() != 0.0 || b.alpha < 1.0 || b.alpha > CLOSED_FORM_MAX_ALPHA {
        return None;
    }
    // Terms in log space: t₀ = B(α_A, β_A+β_B) / B(α_A, β_A), and
    // t_{i+1}/t_i = (α_A+i)(β_B+i) / ((α_A+β_A+β_B+i)(1+i)).
    let mut logs = Vec::with_capacity(b.alpha as usize);
    let mut l = ln_beta(a.alpha, a.beta + b.beta) - ln_beta(a.alpha, a.beta);
    for i in 0..(b.alpha as u64) {
        logs.push(l);
        let i = i as f64;
        l += (a.alpha + i).ln() + (b.beta + i).ln() - (a.alpha + a.beta + b.beta + i).ln() - (1.0 + i).ln();
    }
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total = max.exp() * logs.iter().map(|l| (l - max).exp()).sum::<f64>();
    Some(total.clamp(0.0, 1.0))
}

/// P(B > A) = ∫ f_B(x) F_A(x) dx, by composite Gauss–Legendre quadrature
/// over the bulk of B's density. Accurate to about 1e-9 for shapes ≥ 1.
pub fn prob_beats_numeric(a: &BetaPosterior, b: &BetaPosterior) -> f64 {
    let (Some(da), Some(db)) = (a.dist(), b.dist()) else {
        return 0.5;
    };
    let sd = b.variance().sqrt();
    let lo = (b.mean() - 15.0 * sd).max(0.0);
    let hi = (b.mean() + 15.0 * sd).min(1.0);
    let total = integrate(|x| db.pdf(x) * da.cdf(x), lo, hi, 400);
    // Mass of B outside [lo, hi]: below lo, A is (almost) never smaller;
    // above hi, A almost always is.
    (total + (1.0 - db.cdf(hi))).clamp(0.0, 1.0)
}

/// E[max(A − B, 0)]: the expected loss of choosing B over A.
///
/// Uses E[A·1(A>B)] = mean(A) · P(A⁺ > B) with A⁺ ~ Beta(α_A + 1, β_A), and
/// the same for B.
pub fn expected_loss(a: &BetaPosterior, b: &BetaPosterior) -> f64 {
    let a_plus = BetaPosterior { alpha: a.alpha + 1.0, beta: a.beta };
    let b_plus = BetaPosterior { alpha: b.alpha + 1.0, beta: b.beta };
    let loss = a.mean() * prob_beats(b, &a_plus) - b.mean() * prob_beats(&b_plus, a);
    loss.max(0.0)
}

/// The natural log of the Bayes factor of "the rates differ" (independent
/// `prior` on each arm) over "the rates are equal" (one shared rate with the
/// same prior), for `sa`/`fa` successes/failures of A and `sb`/`fb` of B.
pub fn beta_ln_bayes_factor(prior: &BetaPosterior, sa: u64, fa: u64, sb: u64, fb: u64) -> f64 {
    let (sa, fa, sb, fb) = (sa as f64, fa as f64, sb as f64, fb as f64);
    let (p, q) = (prior.alpha, prior.beta);
    ln_beta(p + sa, q + fa) + ln_beta(p + sb, q + fb) - ln_beta(p + sa + sb, q + fa + fb) - ln_beta(p, q)
}

/// The posterior probability of "the arms differ", from the log Bayes factor
/// and the prior probability `null_prior` of "no difference" (0 gives 1).
pub fn prob_differ(ln_bayes_factor: f64, null_prior: f64) -> f64 {
    if null_prior <= 0.0 {
        return 1.0;
    }
    if null_prior >= 1.0 {
        return 0.0;
    }
    let log_odds = ln_bayes_factor + ((1.0 - null_prior) / null_prior).ln();
    1.0 / (1.0 + (-log_odds).exp())
}

/// A normal distribution over an arm's mean score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormalPosterior {
    /// Posterior mean.
    pub mean: f64,
    /// Posterior standard deviation (of the mean, not of single scores).
    pub sd: f64,
}

/// The prior of [`NormalPosterior::from_summary`], for scores in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NormalPrior {
    /// Prior mean score.
    pub mean: f64,
    /// Pseudo-observations behind the prior mean.
    pub strength: f64,
    /// Prior variance of a single score (1/12: uniform on [0, 1]).
    pub variance: f64,
    /// Pseudo-observations behind the prior variance.
    pub variance_strength: f64,
}

impl Default for NormalPrior {
    fn default() -> Self {
        Self { mean: 0.5, strength: 1.0, variance: 1.0 / 12.0, variance_strength: 1.0 }
    }
}

impl NormalPosterior {
    /// The posterior of an arm's mean after the scores in `s`: the mean is
    /// shrunk towards the prior mean by `strength` pseudo-observations, and
    /// the variance of a score is the sample variance pooled with the prior
    /// variance, so one or two samples never give a zero width.
    pub fn from_summary(s: &Summary, prior: &NormalPrior) -> Self {
        let n = s.n as f64;
        let dof = (n - 1.0).max(0.0);
        let var = (dof * s.variance + prior.variance_strength * prior.variance) / (dof + prior.variance_strength);
        let k = prior.strength + n;
        Self { mean: (prior.strength * prior.mean + n * s.mean) / k, sd: (var / k).sqrt() }
    }
}

/// Standard normal CDF.
fn phi(x: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal density.
fn phi_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// P(B > A) for independent normals.
pub fn normal_prob_beats(a: &NormalPosterior, b: &NormalPosterior) -> f64 {
    let s = (a.sd * a.sd + b.sd * b.sd).sqrt();
    if s <= 0.0 {
        return if b.mean > a.mean {
            1.0
        } else if b.mean < a.mean {
            0.0
        } else {
            0.5
        };
    }
    phi((b.mean - a.mean) / s)
}

/// E[max(A − B, 0)] for independent normals: with D = A − B ~ N(m, s²),
/// m·Φ(m/s) + s·φ(m/s).
pub fn normal_expected_loss(a: &NormalPosterior, b: &NormalPosterior) -> f64 {
    let m = a.mean - b.mean;
    let s = (a.sd * a.sd + b.sd * b.sd).sqrt();
    if s <= 0.0 {
        return m.max(0.0);
    }
    (m * phi(m / s) + s * phi_pdf(m / s)).max(0.0)
}

/// The natural log of the Bayes factor of "the means differ" over "equal
/// means", for an observed difference `diff` with standard error `se`, when
/// the difference under the alternative is N(0, `effect_sd`²) (the mixture
/// likelihood ratio of mSPRT; Johari et al. 2017).
pub fn normal_ln_bayes_factor(diff: f64, se: f64, effect_sd: f64) -> f64 {
    let v0 = se * se;
    let v1 = v0 + effect_sd * effect_sd;
    if v0 <= 0.0 {
        return if diff == 0.0 { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    -0.5 * (v1 / v0).ln() + 0.5 * diff * diff * (1.0 / v0 - 1.0 / v1)
}

/// Count, mean and sample variance of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of values.
    pub n: u64,
    /// Mean (0 when empty).
    pub mean: f64,
    /// Sample variance with `n − 1` (0 when `n < 2`).
    pub variance: f64,
}

impl Summary {
    /// Summarizes values (Welford's algorithm).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let (mut n, mut mean, mut m2) = (0u64, 0.0, 0.0);
        for x in values {
            n += 1;
            let delta = x - mean;
            mean += delta / n as f64;
            m2 += delta * (x - mean);
        }
        Self { n, mean, variance: if n > 1 { m2 / (n - 1) as f64 } else { 0.0 } }
    }
}

/// The result of Welch's unequal-variances t-test of B against A.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchTest {
    /// t = (mean_B − mean_A) / √(s²_A/n_A + s²_B/n_B).
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// mean_B − mean_A.
    pub diff: f64,
}

/// Welch's t-test of `b` against `a`. `None` when an arm has fewer than two
/// values or both variances are zero.
pub fn welch(a: &Summary, b: &Summary) -> Option<WelchTest> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (na, nb) = (a.n as f64, b.n as f64);
    let (va, vb) = (a.variance / na, b.variance / nb);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let diff = b.mean - a.mean;
    let t = diff / se2.sqrt();
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let p_value = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
    Some(WelchTest { t, df, p_value, diff })
}

/// A standard normal CDF from `statrs`, for callers that want one.
pub fn normal_cdf(x: f64) -> f64 {
    Normal::new(0.0, 1.0).map(|n| n.cdf(x)).unwrap_or_else(|_| phi(x))
}

/// Composite Gauss–Legendre (16 points) of `f` over `[lo, hi]` in `pieces`.
fn integrate(f: impl Fn(f64) -> f64, lo: f64, hi: f64, pieces: usize) -> f64 {
    if hi <= lo {
        return 0.0;
    }
    let (nodes, weights) = gauss_legendre_16();
    let h = (hi - lo) / pieces as f64;
    let mut total = 0.0;
    for k in 0..pieces {
        let (a, b) = (lo + k as f64 * h, lo + (k + 1) as f64 * h);
        let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
        let piece: f64 = nodes.iter().zip(weights.iter()).map(|(x, w)| w * f(mid + half * x)).sum();
        total += piece * half;
    }
    total
}

/// Nodes and weights of 16-point Gauss–Legendre on [-1, 1], by Newton's
/// method on the Legendre polynomial.
fn gauss_legendre_16() -> ([f64; 16], [f64; 16]) {
    const N: usize = 16;
    let mut nodes = [0.0; N];
    let mut weights = [0.0; N];
    for i in 0..N {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (N as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=N {
                let k = k as f64;
                let p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            dp = N as f64 * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / dp;
            x -= dx;
            if dx.abs() < 1e-15 {
                break;
            }
        }
        nodes[i] = x;
        weights[i] = 2.0 / ((1.0 - x * x) * dp * dp);
    }
    (nodes, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learning::sampler::{SplitMix64, beta, normal};

    fn beta_post(a: f64, b: f64) -> BetaPosterior {
        BetaPosterior::new(a, b).unwrap()
    }

    #[test]
    fn closed_forms_by_hand() {
        // Uniform A, B with density 2x: ∫ 2x · x dx = 2/3.
        assert!((prob_beats(&beta_post(1.0, 1.0), &beta_post(2.0, 1.0)) - 2.0 / 3.0).abs() < 1e-12);
        // Identical distributions: 1/2 by symmetry.
        assert!((prob_beats(&beta_post(7.0, 3.0), &beta_post(7.0, 3.0)) - 0.5).abs() < 1e-12);
        // B ~ Beta(1, 2) (density 2(1−x)) vs uniform A: ∫ 2(1−x) x dx = 1/3.
        assert!((prob_beats(&beta_post(1.0, 1.0), &beta_post(1.0, 2.0)) - 1.0 / 3.0).abs() < 1e-12);
        // Expected loss of uniform vs uniform: E[max(A−B,0)] = 1/6.
        assert!((expected_loss(&beta_post(1.0, 1.0), &beta_post(1.0, 1.0)) - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn closed_form_agrees_with_numeric_integration() {
        let cases =
            [(1.0, 1.0, 2.0, 1.0), (41.0, 61.0, 61.0, 41.0), (5.0, 20.0, 8.0, 18.0), (120.0, 80.0, 130.0, 75.0)];
        for (aa, ab, ba, bb) in cases {
            let (a, b) = (beta_post(aa, ab), beta_post(ba, bb));
            let closed = prob_beats_closed_form(&a, &b).unwrap();
            let numeric = prob_beats_numeric(&a, &b);
            assert!((closed - numeric).abs() < 1e-8, "{a:?} vs {b:?}: {closed} vs {numeric}");
        }
        // A fractional α has no closed form; the numeric path takes over.
        assert!(prob_beats_closed_form(&beta_post(1.0, 1.0), &beta_post(2.5, 1.0)).is_none());
        let p = prob_beats(&beta_post(2.5, 1.0), &beta_post(2.5, 1.0));
        assert!((p - 0.5).abs() < 1e-8);
    }

    #[test]
    fn prob_beats_and_loss_agree_with_monte_carlo() {
        let mut rng = SplitMix64::new(20_240_101);
        let cases = [(11.0, 21.0, 15.0, 17.0), (3.0, 2.0, 2.0, 3.5), (61.0, 41.0, 41.0, 61.0)];
        let n = 200_000;
        for (aa, ab, ba, bb) in cases {
            let (a, b) = (beta_post(aa, ab), beta_post(ba, bb));
            let (mut wins, mut loss) = (0u64, 0.0);
            for _ in 0..n {
                let x = beta(&mut rng, aa, ab);
                let y = beta(&mut rng, ba, bb);
                if y > x {
                    wins += 1;
                }
                loss += (x - y).max(0.0);
            }
            let p_mc = wins as f64 / n as f64;
            let se = (p_mc * (1.0 - p_mc) / n as f64).sqrt();
            let p = prob_beats(&a, &b);
            assert!((p - p_mc).abs() < 4.0 * se + 1e-4, "{a:?} vs {b:?}: {p} vs MC {p_mc}");
            let l_mc = loss / n as f64;
            let l = expected_loss(&a, &b);
            assert!((l - l_mc).abs() < 0.002, "{a:?} vs {b:?}: loss {l} vs MC {l_mc}");
        }
    }

    #[test]
    fn beta_posterior_basics() {
        let p = BetaPosterior::from_counts(3, 1);
        assert_eq!(p, beta_post(4.0, 2.0));
        assert!((p.mean() - 4.0 / 6.0).abs() < 1e-12);
        assert!((p.variance() - 8.0 / (36.0 * 7.0)).abs() < 1e-12);
        assert_eq!(beta_post(1.0, 1.0).update(2, 3), beta_post(3.0, 4.0));
        assert!(BetaPosterior::new(0.0, 1.0).is_err());
        assert!(BetaPosterior::new(1.0, f64::NAN).is_err());
    }

    #[test]
    fn bayes_factor_by_hand() {
        // One success for A, one failure for B, uniform priors:
        // H1: B(2,1)·B(1,2)/B(1,1)² = 1/4; H0: B(2,2)/B(1,1) = 1/6; BF = 1.5.
        let ln_bf = beta_ln_bayes_factor(&beta_post(1.0, 1.0), 1, 0, 0, 1);
        assert!((ln_bf - 1.5f64.ln()).abs() < 1e-12);
        assert!((prob_differ(1.5f64.ln(), 0.5) - 0.6).abs() < 1e-12);
        assert_eq!(prob_differ(-3.0, 0.0), 1.0);
        // Equal large samples favour "no difference".
        assert!(beta_ln_bayes_factor(&beta_post(1.0, 1.0), 500, 500, 500, 500) < -2.0);
        // A large real difference favours "differ".
        assert!(beta_ln_bayes_factor(&beta_post(1.0, 1.0), 40, 60, 60, 40) > 2.0);
    }

    #[test]
    fn normal_formulas() {
        let a = NormalPosterior { mean: 0.5, sd: 0.03 };
        let b = NormalPosterior { mean: 0.55, sd: 0.04 };
        // (0.55 − 0.5)/0.05 = 1 → Φ(1).
        assert!((normal_prob_beats(&a, &b) - 0.841_344_746_068_542_9).abs() < 1e-9);
        assert!((normal_cdf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-9);
        // Loss of choosing b: m = −0.05, s = 0.05: s(φ(−1) − Φ(−1)).
        let want = 0.05 * (0.241_970_724_519_143_37 - 0.158_655_253_931_457_05);
        assert!((normal_expected_loss(&a, &b) - want).abs() < 1e-9);
        // Against Monte Carlo.
        let mut rng = SplitMix64::new(5);
        let n = 200_000;
        let mut loss = 0.0;
        for _ in 0..n {
            loss += (normal(&mut rng, a.mean, a.sd) - normal(&mut rng, b.mean, b.sd)).max(0.0);
        }
        assert!((loss / n as f64 - want).abs() < 2e-4);
        // mSPRT Bayes factor: no evidence at zero difference with wide se.
        assert!(normal_ln_bayes_factor(0.0, 0.1, 0.1) < 0.0);
        assert!(normal_ln_bayes_factor(0.2, 0.02, 0.1) > 10.0);
    }

    #[test]
    fn normal_posterior_from_scores() {
        let s = Summary::of([0.2, 0.4, 0.6]);
        assert_eq!(s.n, 3);
        assert!((s.mean - 0.4).abs() < 1e-12);
        assert!((s.variance - 0.04).abs() < 1e-12);
        let p = NormalPosterior::from_summary(&s, &NormalPrior::default());
        assert!((p.mean - (0.5 + 1.2) / 4.0).abs() < 1e-12);
        let var: f64 = (2.0 * 0.04 + 1.0 / 12.0) / 3.0;
        assert!((p.sd - (var / 4.0).sqrt()).abs() < 1e-12);
        let empty = NormalPosterior::from_summary(&Summary::of([]), &NormalPrior::default());
        assert_eq!(empty.mean, 0.5);
        assert!(empty.sd > 0.0);
    }

    /// R's `t.test(extra ~ group, data = sleep)` (Student's sleep data,
    /// Welch by default): t = −1.8608, df = 17.776, p-value = 0.07939.
    #[test]
    fn welch_on_the_sleep_data() {
        let g1 = Summary::of([0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]);
        let g2 = Summary::of([1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]);
        let w = welch(&g2, &g1).unwrap(); // group 1 minus group 2, as R reports
        assert!((w.t - -1.8608).abs() < 5e-5, "t = {}", w.t);
        assert!((w.df - 17.776).abs() < 5e-4, "df = {}", w.df);
        assert!((w.p_value - 0.07939).abs() < 5e-6, "p = {}", w.p_value);
        assert!((w.diff - -1.58).abs() < 1e-12);
    }

    /// Example 1 of Wikipedia's "Welch's t-test" article; reference values
    /// from `scipy.stats.ttest_ind(a1, a2, equal_var=False)`.
    #[test]
    fn welch_on_the_wikipedia_example() {
        let a1 =
            Summary::of([27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]);
        let a2 =
            Summary::of([27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]);
        let w = welch(&a1, &a2).unwrap(); // a2 minus a1, as scipy's ttest_ind(a2, a1)
        assert!((w.t - WIKI_T).abs() < 1e-9, "t = {}", w.t);
        assert!((w.df - WIKI_DF).abs() < 1e-9, "df = {}", w.df);
        assert!((w.p_value - WIKI_P).abs() < 1e-8, "p = {}", w.p_value);
        // As the article rounds them: t = 2.46, df = 25.0, p = 0.021.
        assert_eq!(format!("{:.2} {:.1} {:.3}", w.t, w.df, w.p_value), "2.46 25.0 0.021");
    }

    const WIKI_T: f64 = 2.455_356_398_286_006;
    const WIKI_DF: f64 = 24.988_529_290_231_416;
    const WIKI_P: f64 = 0.021_378_001_462_866_992;

    #[test]
    fn welch_edge_cases() {
        assert!(welch(&Summary::of([1.0]), &Summary::of([1.0, 2.0])).is_none());
        assert!(welch(&Summary::of([1.0, 1.0]), &Summary::of([2.0, 2.0])).is_none());
    }
}
