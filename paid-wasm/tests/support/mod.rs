//! Shared helpers: where the built guests are, and request generators.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use paid_core::RunId;
use paid_core::learning::experiment::{
    self, Allocation, Arm, ArmSample, BayesianRule, Experiment, ExperimentStatus, Metric, PromotionRule, Variant,
    WelchRule,
};
use paid_core::learning::sampler::{self, SplitMix64};
use paid_core::learning::strategy::{ArmStats, ChooseRequest, Posterior, PromoteRequest};
use paid_core::learning::{ExperimentId, PromptVersionId};
use rand::RngCore;
use uuid::Uuid;

/// The built guest `name` (`scripts/build-strategies` puts them in
/// `target/strategies`, or `$PAID_STRATEGIES_DIR`).
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("PAID_STRATEGIES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/strategies"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the strategy guests with scripts/build-strategies (scripts/test does)",
        path.display()
    );
    path
}

fn arm_stats(rng: &mut SplitMix64, name: &str, control: bool, normal: bool) -> ArmStats {
    let samples = rng.next_u64() % 200;
    let successes = if samples == 0 { 0 } else { rng.next_u64() % (samples + 1) };
    let mean_score = sampler::uniform(rng);
    let posterior = if normal {
        Posterior::Normal { mean: mean_score, sd: 0.01 + 0.2 * sampler::uniform(rng) }
    } else {
        Posterior::Beta { alpha: 1.0 + successes as f64, beta: 1.0 + (samples - successes) as f64 }
    };
    ArmStats {
        arm: name.into(),
        control,
        samples,
        successes,
        mean_score,
        score_variance: 0.05 * sampler::uniform(rng),
        posterior,
    }
}

/// A varied `choose_variant` request: 2–4 arms, Beta or Normal posteriors,
/// burn-in or not, top-two or plain Thompson.
pub fn choose_request(i: u64) -> ChooseRequest {
    let mut rng = SplitMix64::new(0xC0FFEE ^ i);
    let n = 2 + (rng.next_u64() % 3) as usize;
    let normal = rng.next_u64().is_multiple_of(3);
    ChooseRequest {
        experiment_id: format!("exp-{i}"),
        issue_key: format!("project#{i}"),
        seed: rng.next_u64(),
        min_samples_per_arm: [0, 10, 30, 100][(rng.next_u64() % 4) as usize],
        top_two: [1.0, 0.5, 0.8][(rng.next_u64() % 3) as usize],
        arms: (0..n).map(|a| arm_stats(&mut rng, &format!("arm{a}"), a == 0, normal)).collect(),
    }
}

/// A varied experiment of `variants` variants with the given rule.
pub fn experiment(rule: PromotionRule, variants: usize, metric: Metric) -> Experiment {
    let arm = |name: String, n: u64| Arm {
        name,
        variant: Variant::Prompt { version: PromptVersionId(Uuid::from_u64_pair(0, n)) },
    };
    Experiment {
        id: ExperimentId(Uuid::from_u64_pair(1, 1)),
        subject: "task".into(),
        project_id: None,
        control: arm("control".into(), 0),
        variants: (1..=variants).map(|i| arm(format!("v{i}"), i as u64)).collect(),
        allocation: Allocation::default(),
        metric,
        success_threshold: 0.5,
        rule,
        max_samples: 400,
        require_approval: false,
        status: ExperimentStatus::Running,
        created_at: chrono::DateTime::UNIX_EPOCH,
        concluded_at: None,
    }
}

/// A varied `should_promote` request, computed by the host's own
/// statistics from random samples.
pub fn promote_request(i: u64) -> PromoteRequest {
    let mut rng = SplitMix64::new(0xFEED ^ i);
    let rule = if rng.next_u64().is_multiple_of(2) {
        PromotionRule::Bayesian(BayesianRule::default())
    } else {
        PromotionRule::Welch(WelchRule::default())
    };
    let metric = if rng.next_u64().is_multiple_of(3) { Metric::Score } else { Metric::Success };
    let exp = experiment(rule, 1 + (rng.next_u64() % 2) as usize, metric);
    let mut samples = Vec::new();
    for arm in exp.arms() {
        let n = rng.next_u64() % 160;
        let rate = 0.3 + 0.4 * sampler::uniform(&mut rng);
        for _ in 0..n {
            let score = if metric == Metric::Score {
                (rate + 0.2 * (sampler::uniform(&mut rng) - 0.5)).clamp(0.0, 1.0)
            } else if sampler::uniform(&mut rng) < rate {
                1.0
            } else {
                0.0
            };
            samples.push(ArmSample {
                experiment_id: exp.id,
                arm: arm.name.clone(),
                run_id: RunId(Uuid::from_u64_pair(2, rng.next_u64())),
                score,
                recorded_at: chrono::DateTime::UNIX_EPOCH,
            });
        }
    }
    experiment::promote_request(&exp, &experiment::arm_stats(&exp, &samples))
}
