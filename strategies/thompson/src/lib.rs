//! The Thompson strategy as a WASM guest: top-two Thompson sampling with
//! burn-in, and the experiment's own promotion rule. It makes the same
//! decisions as `paid_core::learning::strategy::ThompsonStrategy` on the
//! same requests (the paid-wasm tests check it). No params.

use paid_strategy_sdk::sampler::{self, SplitMix64};
use paid_strategy_sdk::{
    Choice, ChooseRequest, Comparison, PromoteRequest, PromotionRule, Strategy, Verdict, WelchTest, argmax, burn_in,
    export_strategy,
};

/// How many times the challenger step redraws.
const MAX_CHALLENGER_DRAWS: usize = 64;

struct Thompson;

impl Strategy for Thompson {
    fn choose_variant(&self, _params: &serde_json::Value, req: ChooseRequest) -> Result<Choice, String> {
        if req.arms.is_empty() {
            return Err("no arms".into());
        }
        let rng = &mut SplitMix64::new(req.seed);
        if let Some(i) = burn_in(&req, rng) {
            return Ok(Choice {
                arm: req.arms[i].arm.clone(),
                reason: format!("burn-in: {} samples, below {}", req.arms[i].samples, req.min_samples_per_arm),
            });
        }
        let draw = |rng: &mut SplitMix64| req.arms.iter().map(|a| a.posterior.sample(rng)).collect::<Vec<f64>>();
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

    fn should_promote(&self, _params: &serde_json::Value, req: PromoteRequest) -> Result<Verdict, String> {
        Ok(evaluate(&req))
    }
}

/// The promotion rule, as `paid_core::learning::experiment::evaluate`.
fn evaluate(req: &PromoteRequest) -> Verdict {
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
            .fold(None::<(&Comparison, WelchTest)>, |best, (c, w)| match best {
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

export_strategy!(Thompson);
