use serde::{Deserialize, Serialize};

use crate::{ProjectId, RunId, Timestamp};

/// What became of a run's PR: the input to quality scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The run.
    pub run_id: RunId,
    /// The project.
    pub project_id: ProjectId,
    /// Merged (`Some(true)`), closed unmerged (`Some(false)`) or still open.
    pub pr_merged: Option<bool>,
    /// CI result, if known.
    pub ci_passed: Option<bool>,
    /// Lint result, if known.
    pub lint_clean: Option<bool>,
    /// Test result, if known.
    pub tests_passing: Option<bool>,
    /// Human vote: 1, -1, or none.
    pub human_vote: Option<i8>,
    /// Agent iterations.
    pub iterations: u32,
    /// Cost in micro-USD, if known.
    pub cost_micros: Option<i64>,
    /// The computed quality score in [0, 1], if scored.
    pub quality_score: Option<f64>,
    /// When recorded.
    pub recorded_at: Timestamp,
}
