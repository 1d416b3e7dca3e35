//! The reaper: removes worktrees no active run owns and sandboxes of runs
//! that ended (or that this store never knew), more eagerly under disk
//! pressure.

use std::time::Duration;

use paid_core::engine::{Engine, SweepOptions};
use serde::Serialize;
use tracing::warn;

use crate::config::ReaperSettings;

/// How hard to clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pressure {
    /// The periodic sweep.
    Routine,
    /// Disk above the critical threshold.
    Critical,
    /// Disk above the emergency threshold.
    Emergency,
}

/// What one sweep removed (the API's type).
pub use paid_api::SweepReport;

/// Sweeps orphans on a schedule: the engine's [`Engine::sweep`] (which
/// knows what each run owns, comparison candidates included) with ages
/// chosen by disk pressure, plus dangling images under pressure.
pub struct Reaper {
    engine: Engine,
    docker: Option<paid_runtime_docker::DockerRuntime>,
    settings: ReaperSettings,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Reaper {
    /// A reaper for `engine`'s parts; `docker` (when the runtime is the
    /// Docker engine) also prunes images and drains the pool at shutdown.
    pub fn new(engine: Engine, docker: Option<paid_runtime_docker::DockerRuntime>, settings: ReaperSettings) -> Self {
        Self { engine, docker, settings }
    }

    /// Stops what the runtime keeps between runs (the warm pool, and the
    /// egress forwarder once no sandbox uses it) at shutdown, so no idle
    /// container outlives the server.
    pub async fn shutdown(&self) -> paid_core::Result<()> {
        if let Some(docker) = &self.docker {
            let report = docker.shutdown().await;
            if !report.is_empty() {
                tracing::info!(removed = ?report, "drained the sandbox runtime");
            }
        }
        Ok(())
    }

    /// The ages a sweep at `pressure` removes things from.
    pub fn options(&self, pressure: Pressure) -> SweepOptions {
        let s = &self.settings;
        let (worktree, unknown) = match pressure {
            Pressure::Routine => (s.worktree_max_age, s.unknown_sandbox_max_age),
            Pressure::Critical => (
                s.worktree_max_age.min(Duration::from_secs(3600)),
                s.unknown_sandbox_max_age.min(Duration::from_secs(300)),
            ),
            Pressure::Emergency => (Duration::ZERO, s.unknown_sandbox_max_age.min(Duration::from_secs(60))),
        };
        // An ended run's sandbox goes at once; the runtime keeps a kept
        // run's sandbox whatever its age.
        SweepOptions { worktree_min_age: worktree, sandbox_min_age: Duration::ZERO, unknown_sandbox_min_age: unknown }
    }

    /// One sweep at `pressure`.
    pub async fn sweep(&self, pressure: Pressure) -> paid_core::Result<SweepReport> {
        let swept = self.engine.sweep(&self.options(pressure)).await?;
        let mut report = SweepReport {
            worktrees: swept.worktrees.iter().map(|p| p.display().to_string()).collect(),
            sandboxes: swept.runtime.sandboxes.clone(),
            images_pruned: 0,
            notes: swept.notes.clone(),
        };
        report.notes.extend(swept.runtime.errors.iter().cloned());
        if pressure >= Pressure::Critical {
            match &self.docker {
                Some(docker) => match docker.prune_images().await {
                    Ok(r) => report.images_pruned = r.reclaimed_bytes,
                    Err(e) => report.notes.push(format!("image prune failed: {e}")),
                },
                None => report.notes.push("image prune: no Docker engine".into()),
            }
        }
        for n in &report.notes {
            warn!(?pressure, note = %n, "reaper");
        }
        Ok(report)
    }
}
