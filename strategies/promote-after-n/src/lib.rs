//! "Promote after N wins" as a WASM guest: epsilon-greedy allocation with
//! burn-in, and promotion of a variant once it leads control by `wins`
//! successes at a higher success rate. The same decisions as
//! `paid_core::learning::strategy::PromoteAfterNStrategy`.
//!
//! Params: `{"wins": 10, "epsilon": 0.1}` (those are the defaults).

use paid_strategy_sdk::sampler::{self, SplitMix64};
use paid_strategy_sdk::{
    ArmStats, Choice, ChooseRequest, PromoteRequest, Strategy, Verdict, argmax, burn_in, export_strategy,
};

struct PromoteAfterN;

fn params(p: &serde_json::Value) -> (u64, f64) {
    let wins = p.get("wins").and_then(serde_json::Value::as_u64).unwrap_or(10);
    let epsilon = p.get("epsilon").and_then(serde_json::Value::as_f64).unwrap_or(0.1);
    (wins, epsilon)
}

impl Strategy for PromoteAfterN {
    fn choose_variant(&self, params_json: &serde_json::Value, req: ChooseRequest) -> Result<Choice, String> {
        let (_, epsilon) = params(params_json);
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
        if sampler::uniform(rng) < epsilon {
            let i = sampler::index(rng, req.arms.len());
            return Ok(Choice { arm: req.arms[i].arm.clone(), reason: "epsilon-greedy: explore".into() });
        }
        let means: Vec<f64> = req.arms.iter().map(|a| a.posterior.mean()).collect();
        Ok(Choice { arm: req.arms[argmax(&means)].arm.clone(), reason: "epsilon-greedy: best mean".into() })
    }

    fn should_promote(&self, params_json: &serde_json::Value, req: PromoteRequest) -> Result<Verdict, String> {
        let (wins, _) = params(params_json);
        let min = req.rule.min_samples_per_arm();
        let Some(control) = req.arms.iter().find(|a| a.control) else {
            return Ok(Verdict::Continue { reason: "no control arm".into() });
        };
        let rate = |a: &ArmStats| if a.samples == 0 { 0.0 } else { a.successes as f64 / a.samples as f64 };
        let enough = req.arms.iter().all(|a| a.samples >= min);
        if enough {
            for arm in req.arms.iter().filter(|a| !a.control) {
                if arm.successes >= control.successes + wins && rate(arm) > rate(control) {
                    return Ok(Verdict::Promote {
                        arm: arm.arm.clone(),
                        reason: format!(
                            "leads control by {} successes (≥ {}) at a higher rate",
                            arm.successes - control.successes,
                            wins
                        ),
                    });
                }
            }
        }
        if req.max_samples > 0 && req.total_samples >= req.max_samples {
            return Ok(Verdict::KeepControl { reason: format!("no winner within {} samples", req.max_samples) });
        }
        Ok(Verdict::Continue { reason: format!("no variant leads by {wins} successes") })
    }
}

export_strategy!(PromoteAfterN);
