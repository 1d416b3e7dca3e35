use serde::{Deserialize, Serialize};

use crate::{RunId, RunState, Timestamp};

/// Where a journaled step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Journaled before the side effect.
    Started,
    /// The side effect happened.
    Done,
    /// The side effect failed.
    Failed,
}

/// One entry of a run's step journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The run.
    pub run_id: RunId,
    /// Position in the journal, from 1.
    pub seq: u64,
    /// The step (the state it implements).
    pub step: RunState,
    /// The key that makes the side effect idempotent (branch, PR head, comment marker).
    pub idempotency_key: Option<String>,
    /// Where it is.
    pub status: StepStatus,
    /// What the step produced (e.g. the PR URL), once done.
    pub output: serde_json::Value,
    /// Error message, when failed.
    pub error: Option<String>,
    /// Journaled at.
    pub started_at: Timestamp,
    /// Finished at.
    pub finished_at: Option<Timestamp>,
}

impl StepRecord {
    /// Marks it finished at `at` with `result`: done with its output, or
    /// failed with its error.
    pub fn finish(&mut self, result: Result<serde_json::Value, String>, at: Timestamp) {
        match result {
            Ok(output) => {
                self.status = StepStatus::Done;
                self.output = output;
            }
            Err(error) => {
                self.status = StepStatus::Failed;
                self.error = Some(error);
            }
        }
        self.finished_at = Some(at);
    }
}
