//! Engine settings, with the design's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ModelCandidate;

/// Time limits per step (DESIGN §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepTimeouts {
    /// Image check, worktree and sandbox creation.
    pub provision: Duration,
    /// Clone or fetch of the mirror.
    pub clone: Duration,
    /// One agent iteration.
    pub agent: Duration,
    /// One verify command.
    pub verify: Duration,
    /// Commit and policy check.
    pub commit: Duration,
    /// Push.
    pub push: Duration,
    /// PR creation.
    pub pr: Duration,
    /// Issue comment and labels.
    pub issue_update: Duration,
    /// Cleanup.
    pub cleanup: Duration,
}

impl Default for StepTimeouts {
    fn default() -> Self {
        Self {
            provision: Duration::from_secs(60),
            clone: Duration::from_secs(180),
            agent: Duration::from_secs(1800),
            verify: Duration::from_secs(600),
            commit: Duration::from_secs(60),
            push: Duration::from_secs(60),
            pr: Duration::from_secs(60),
            issue_update: Duration::from_secs(30),
            cleanup: Duration::from_secs(60),
        }
    }
}

/// Retries of transient step failures: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryConfig {
    /// Attempts after the first.
    pub max_retries: usize,
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_retries: 3, min_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// This worker's lease owner name; unique per worker process.
    pub worker_id: String,
    /// Lease length; a worker that stops heartbeating loses its runs after this.
    pub lease: Duration,
    /// How often leases are renewed (and cancellation checked).
    pub heartbeat_interval: Duration,
    /// Per-run log cap in bytes.
    pub log_cap_bytes: usize,
    /// Agent ⇄ verify iterations before giving up (default 5).
    pub max_iterations: u32,
    /// Step time limits.
    pub timeouts: StepTimeouts,
    /// Step retries.
    pub retry: RetryConfig,
    /// Commit author name.
    pub author_name: String,
    /// Commit author email.
    pub author_email: String,
    /// Models the selector chooses from.
    pub models: Vec<ModelCandidate>,
    /// Per-run budget in micro-USD passed to the selector, if any.
    pub budget_micros: Option<i64>,
    /// What a run's worktree may hold: checked every
    /// [`worktree_check_interval`](Self::worktree_check_interval) while the
    /// agent runs (crossing a cap stops it: the run fails with
    /// `worktree_limit`) and again when the host commits.
    pub worktree_limits: crate::WorktreeLimits,
    /// How often the worktree is checked while the agent runs. Default 2 s.
    pub worktree_check_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", std::process::id()),
            lease: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(15),
            log_cap_bytes: 4 << 20,
            max_iterations: 5,
            timeouts: StepTimeouts::default(),
            retry: RetryConfig::default(),
            author_name: "Paid".into(),
            author_email: "paid@localhost".into(),
            models: Vec::new(),
            budget_micros: None,
            worktree_limits: crate::WorktreeLimits::default(),
            worktree_check_interval: Duration::from_secs(2),
        }
    }
}

/// Longest PR body (GitHub's limit is 65,536; the design keeps a margin).
pub const MAX_PR_BODY: usize = 50_000;
