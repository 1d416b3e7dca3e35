//! `GET /api/v1/status` and the disk guard's report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The server's version.
    pub version: String,
    /// Its worker id (lease owner name).
    pub worker_id: String,
    /// Whether it claims new runs (the disk guard stops it in an emergency).
    pub accepting_runs: bool,
    /// The disk guard's last measurement.
    pub disk: Option<DiskReport>,
    /// Agent kinds it has.
    pub agents: Vec<String>,
    /// The id of the master key secrets are encrypted under.
    pub master_key_id: Option<String>,
}

/// Size and free space of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsUsage {
    /// Bytes in total.
    pub total: u64,
    /// Bytes available to this user.
    pub available: u64,
}

impl FsUsage {
    /// Used share in percent.
    pub fn percent_used(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            (self.total.saturating_sub(self.available)) as f64 * 100.0 / self.total as f64
        }
    }
}

/// How full the filesystem is, against the disk guard's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskLevel {
    /// Below the warning threshold.
    Normal,
    /// Routine cleanup.
    Warning,
    /// Aggressive cleanup.
    Critical,
    /// Aggressive cleanup, and no new runs.
    Emergency,
}

/// One measurement of the disk guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskReport {
    /// The filesystem measured.
    pub path: PathBuf,
    /// Its usage.
    pub filesystem: Option<FsUsage>,
    /// Used share in percent.
    pub percent_used: f64,
    /// The level.
    pub level: DiskLevel,
    /// Bytes by type: repos, worktrees, logs, images.
    pub bytes: BTreeMap<String, u64>,
    /// What cleanup did, if any ran.
    pub cleanup: Option<SweepReport>,
    /// Log chunks deleted at this measurement (from the critical level on).
    pub logs_pruned: Option<u64>,
}

/// What one reaper sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Worktrees removed.
    pub worktrees: Vec<String>,
    /// Sandboxes removed.
    pub sandboxes: Vec<String>,
    /// Dangling images pruned (critical pressure and above).
    pub images_pruned: u64,
    /// What could not be done.
    pub notes: Vec<String>,
}
