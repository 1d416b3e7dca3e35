//! The quality score of a run: a weighted mean of its outcome signals, with
//! the weights as data (DESIGN §7).
//!
//! Each signal maps to `[0, 1]`:
//!
//! | signal | value |
//! | --- | --- |
//! | `pr_merged` | merged 1, closed unmerged 0 |
//! | `ci_passed`, `lint_clean`, `tests_passing` | passed 1, failed 0 |
//! | `human_vote` | +1 → 1.0, no vote → 0.5, −1 → 0.0 |
//! | `iterations` | `max(1 − 0.1·(n − 1), 0)`; 0 iterations count as 1 |
//!
//! **Unknown signals** (`None` in the [`Outcome`]) are left out, and the
//! weights of the known ones are renormalized to sum to 1. An unknown signal
//! is neither evidence for nor against the run, and leaving it out keeps a
//! project without CI or a linter from scoring every run lower. Two signals
//! are always known: the iteration count, and the human vote, where "no
//! vote" is the neutral 0.5 of the design. [`Score::coverage`] tells how
//! much of the total weight was known; a run that opened no PR should be
//! recorded with `pr_merged: Some(false)`, not `None`.
//!
//! ```
//! use paid_core::learning::score::ScoreWeights;
//! # use paid_core::{Outcome, ProjectId, RunId};
//! # let outcome = Outcome {
//! #     run_id: RunId(uuid::Uuid::nil()), project_id: ProjectId(uuid::Uuid::nil()),
//! #     pr_merged: None, ci_passed: None, lint_clean: None, tests_passing: None,
//! #     human_vote: None, iterations: 1, cost_micros: None, quality_score: None,
//! #     recorded_at: chrono::DateTime::UNIX_EPOCH,
//! # };
//! let weights = ScoreWeights::default();
//! let perfect = Outcome { pr_merged: Some(true), ci_passed: Some(true), lint_clean: Some(true),
//!     tests_passing: Some(true), human_vote: Some(1), iterations: 1, ..outcome.clone() };
//! assert!((weights.score(&perfect).value - 1.0).abs() < 1e-12);
//!
//! // Only the vote (none: 0.5) and one iteration (1.0) are known.
//! let open = weights.score(&outcome);
//! assert!((open.value - (0.20 * 0.5 + 0.15 * 1.0) / 0.35).abs() < 1e-12);
//! assert!((open.coverage - 0.35).abs() < 1e-12);
//! ```

use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, ProjectLabels, PromptLabels};
use crate::{Error, Outcome, ProjectId, Result};

/// How much each outcome signal counts. Stored as data; the default is the
/// table of DESIGN §7. Weights need not sum to 1: they are normalized.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreWeights {
    /// The PR was merged (vs closed unmerged).
    pub pr_merged: f64,
    /// CI passed.
    pub ci_passed: f64,
    /// A human voted +1 (0.5 without a vote).
    pub human_vote: f64,
    /// Few agent iterations.
    pub iterations: f64,
    /// Lint was clean.
    pub lint_clean: f64,
    /// Tests passed.
    pub tests_passing: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            pr_merged: 0.30,
            ci_passed: 0.20,
            human_vote: 0.20,
            iterations: 0.15,
            lint_clean: 0.10,
            tests_passing: 0.05,
        }
    }
}

/// A computed quality score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The score in `[0, 1]`.
    pub value: f64,
    /// The share of the total weight whose signals were known, in `(0, 1]`.
    pub coverage: f64,
}

impl ScoreWeights {
    /// Fails unless every weight is finite and non-negative, and the weights
    /// of the always-known signals (`human_vote`, `iterations`) are not both
    /// zero, so every outcome has a score.
    pub fn validate(&self) -> Result<()> {
        let all = [
            ("pr_merged", self.pr_merged),
            ("ci_passed", self.ci_passed),
            ("human_vote", self.human_vote),
            ("iterations", self.iterations),
            ("lint_clean", self.lint_clean),
            ("tests_passing", self.tests_passing),
        ];
        for (name, w) in all {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::InvalidInput {
                    what: format!("score weights: {name}"),
                    message: format!("{w} is not a finite, non-negative number"),
                });
            }
        }
        if self.human_vote + self.iterations <= 0.0 {
            return Err(Error::InvalidInput {
                what: "score weights".into(),
                message: "human_vote and iterations may not both be 0: they are the signals every run has".into(),
            });
        }
        Ok(())
    }

    fn total(&self) -> f64 {
        self.pr_merged + self.ci_passed + self.human_vote + self.iterations + self.lint_clean + self.tests_passing
    }

    /// Scores an outcome (see the module documentation for the rules).
    /// Invalid weights (see [`ScoreWeights::validate`]) fall back to the
    /// default weights.
    pub fn score(&self, outcome: &Outcome) -> Score {
        let weights = if self.validate().is_ok() { *self } else { ScoreWeights::default() };
        let bool_signal = |v: Option<bool>| v.map(|b| if b { 1.0 } else { 0.0 });
        let signals = [
            (weights.pr_merged, bool_signal(outcome.pr_merged)),
            (weights.ci_passed, bool_signal(outcome.ci_passed)),
            (weights.human_vote, Some(vote_value(outcome.human_vote))),
            (weights.iterations, Some(iterations_value(outcome.iterations))),
            (weights.lint_clean, bool_signal(outcome.lint_clean)),
            (weights.tests_passing, bool_signal(outcome.tests_passing)),
        ];
        let (mut known, mut sum) = (0.0, 0.0);
        for (w, v) in signals {
            if let Some(v) = v {
                known += w;
                sum += w * v;
            }
        }
        let total = weights.total();
        Score { value: (sum / known).clamp(0.0, 1.0), coverage: known / total }
    }
}

/// The human vote as a signal: +1 → 1.0, none (or 0) → 0.5, −1 → 0.0.
pub fn vote_value(vote: Option<i8>) -> f64 {
    match vote {
        Some(v) if v > 0 => 1.0,
        Some(v) if v < 0 => 0.0,
        _ => 0.5,
    }
}

/// The iteration count as a signal: `max(1 − 0.1·(n − 1), 0)`, with 0
/// counted as 1.
pub fn iterations_value(n: u32) -> f64 {
    let n = f64::from(n.max(1));
    (1.0 - 0.1 * (n - 1.0)).max(0.0)
}

/// Aggregates over a set of outcomes, for `paid_quality_score` and
/// `paid_pr_merge_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    /// Outcomes counted.
    pub outcomes: usize,
    /// Mean quality score (each outcome's stored score, or computed with the
    /// weights when none is stored); `None` without outcomes.
    pub mean_quality: Option<f64>,
    /// Merged PRs over resolved PRs (merged or closed); `None` when no PR is
    /// resolved yet.
    pub merge_rate: Option<f64>,
}

/// Summarizes outcomes for the quality metrics.
pub fn summarize(weights: &ScoreWeights, outcomes: &[Outcome]) -> QualitySummary {
    let scores: Vec<f64> = outcomes.iter().map(|o| o.quality_score.unwrap_or_else(|| weights.score(o).value)).collect();
    let resolved: Vec<bool> = outcomes.iter().filter_map(|o| o.pr_merged).collect();
    QualitySummary {
        outcomes: outcomes.len(),
        mean_quality: (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64),
        merge_rate: (!resolved.is_empty())
            .then(|| resolved.iter().filter(|m| **m).count() as f64 / resolved.len() as f64),
    }
}

/// Sets `paid_quality_score{project_id,prompt_slug}` and
/// `paid_pr_merge_rate{project_id}` from a summary of the project's outcomes
/// (gauges without a value are left alone).
pub fn export_metrics(metrics: &Metrics, project: ProjectId, prompt_slug: &str, summary: &QualitySummary) {
    if let Some(mean) = summary.mean_quality {
        let labels = PromptLabels { project_id: project.to_string(), prompt_slug: prompt_slug.to_string() };
        metrics.quality_score.get_or_create(&labels).set(mean);
    }
    if let Some(rate) = summary.merge_rate {
        metrics.pr_merge_rate.get_or_create(&ProjectLabels { project_id: project.to_string() }).set(rate);
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use uuid::Uuid;

    use super::*;
    use crate::RunId;

    fn outcome() -> Outcome {
        Outcome {
            run_id: RunId(Uuid::nil()),
            project_id: ProjectId(Uuid::nil()),
            pr_merged: Some(true),
            ci_passed: Some(true),
            lint_clean: Some(true),
            tests_passing: Some(true),
            human_vote: Some(1),
            iterations: 1,
            cost_micros: Some(10),
            quality_score: None,
            recorded_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn default_weights_are_the_design_table() {
        let w = ScoreWeights::default();
        assert_eq!(
            (w.pr_merged, w.ci_passed, w.human_vote, w.iterations, w.lint_clean, w.tests_passing),
            (0.30, 0.20, 0.20, 0.15, 0.10, 0.05)
        );
        assert!(close(w.total(), 1.0));
        w.validate().unwrap();
    }

    #[test]
    fn weights_round_trip_as_data_and_missing_fields_default() {
        let w: ScoreWeights = serde_json::from_str(r#"{"pr_merged": 0.5}"#).unwrap();
        assert_eq!(w, ScoreWeights { pr_merged: 0.5, ..ScoreWeights::default() });
        let back: ScoreWeights = serde_json::from_value(serde_json::to_value(w).unwrap()).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn signal_values() {
        assert_eq!((vote_value(Some(1)), vote_value(None), vote_value(Some(-1))), (1.0, 0.5, 0.0));
        assert_eq!(vote_value(Some(0)), 0.5);
        assert!(close(iterations_value(1), 1.0));
        assert!(close(iterations_value(0), 1.0));
        assert!(close(iterations_value(3), 0.8));
        assert!(close(iterations_value(11), 0.0));
        assert!(close(iterations_value(50), 0.0));
    }

    #[test]
    fn full_outcomes() {
        let w = ScoreWeights::default();
        assert_eq!(w.score(&outcome()), Score { value: 1.0, coverage: 1.0 });
        let bad = Outcome {
            pr_merged: Some(false),
            ci_passed: Some(false),
            lint_clean: Some(false),
            tests_passing: Some(false),
            human_vote: Some(-1),
            iterations: 20,
            ..outcome()
        };
        assert_eq!(w.score(&bad), Score { value: 0.0, coverage: 1.0 });
        // Merged, CI green, no vote, 3 iterations, lint failed, tests passed.
        let mixed = Outcome { human_vote: None, iterations: 3, lint_clean: Some(false), ..outcome() };
        let want = 0.30 + 0.20 + 0.20 * 0.5 + 0.15 * 0.8 + 0.0 + 0.05;
        assert!(close(w.score(&mixed).value, want));
    }

    #[test]
    fn unknown_signals_renormalize() {
        let w = ScoreWeights::default();
        let no_ci = Outcome { ci_passed: None, lint_clean: None, ..outcome() };
        let s = w.score(&no_ci);
        assert!(close(s.value, 1.0), "unknown signals do not pull a perfect run down");
        assert!(close(s.coverage, 0.70));
        let failed_no_ci = Outcome { pr_merged: Some(false), ci_passed: None, human_vote: None, ..outcome() };
        let s = w.score(&failed_no_ci);
        let want = (0.0 + 0.20 * 0.5 + 0.15 + 0.10 + 0.05) / 0.80;
        assert!(close(s.value, want));
    }

    #[test]
    fn invalid_weights_are_rejected_and_fall_back() {
        let neg = ScoreWeights { ci_passed: -1.0, ..ScoreWeights::default() };
        assert!(matches!(neg.validate(), Err(Error::InvalidInput { .. })));
        let no_base = ScoreWeights { human_vote: 0.0, iterations: 0.0, ..ScoreWeights::default() };
        assert!(no_base.validate().is_err());
        assert_eq!(neg.score(&outcome()), ScoreWeights::default().score(&outcome()));
    }

    #[test]
    fn summaries() {
        let w = ScoreWeights::default();
        let open = Outcome { pr_merged: None, quality_score: Some(0.4), ..outcome() };
        let closed = Outcome { pr_merged: Some(false), quality_score: Some(0.2), ..outcome() };
        let s = summarize(&w, &[outcome(), open, closed]);
        assert_eq!(s.outcomes, 3);
        assert!(close(s.mean_quality.unwrap(), (1.0 + 0.4 + 0.2) / 3.0));
        assert!(close(s.merge_rate.unwrap(), 0.5));
        assert_eq!(summarize(&w, &[]), QualitySummary { outcomes: 0, mean_quality: None, merge_rate: None });

        let metrics = Metrics::default();
        let project = ProjectId(Uuid::nil());
        export_metrics(&metrics, project, "task", &s);
        let labels = PromptLabels { project_id: project.to_string(), prompt_slug: "task".into() };
        assert!(close(metrics.quality_score.get_or_create(&labels).get(), (1.0 + 0.4 + 0.2) / 3.0));
        let project_labels = ProjectLabels { project_id: project.to_string() };
        assert!(close(metrics.pr_merge_rate.get_or_create(&project_labels).get(), 0.5));
    }
}
