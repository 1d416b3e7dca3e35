//! The reaper: removes worktrees no active run owns and sandboxes of runs
//! that ended (or that this store never knew), more eagerly under disk
//! pressure.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use paid_core::metrics::{Metrics, ProjectLabels};
use paid_core::{RunFilter, RunId, SandboxHandle, SandboxRuntime, Store, Workspaces};
use serde::Serialize;
use tracing::{info, warn};

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

/// Sweeps orphans.
pub struct Reaper {
    store: Arc<dyn Store>,
    workspaces: Arc<dyn Workspaces>,
    runtime: Arc<dyn SandboxRuntime>,
    docker: Option<paid_runtime_docker::DockerRuntime>,
    settings: ReaperSettings,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Reaper {
    /// A reaper over these parts.
    pub fn new(
        store: Arc<dyn Store>,
        workspaces: Arc<dyn Workspaces>,
        runtime: Arc<dyn SandboxRuntime>,
        docker: Option<paid_runtime_docker::DockerRuntime>,
        settings: ReaperSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, workspaces, runtime, docker, settings, metrics }
    }

    /// Stops what the runtime keeps between runs (the warm pool), at
    /// shutdown, so no idle container outlives the server.
    pub async fn shutdown(&self) -> paid_core::Result<()> {
        if let Some(docker) = &self.docker {
            docker.drain_pool().await;
        }
        Ok(())
    }

    /// One sweep at `pressure`.
    pub async fn sweep(&self, pressure: Pressure) -> paid_core::Result<SweepReport> {
        let mut report = SweepReport::default();
        let active: Vec<RunId> = self
            .store
            .runs(&RunFilter { active_only: true, ..Default::default() })
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let worktree_age = match pressure {
            Pressure::Routine => self.settings.worktree_max_age,
            Pressure::Critical => self.settings.worktree_max_age.min(Duration::from_secs(3600)),
            Pressure::Emergency => Duration::ZERO,
        };
        let older_than = chrono::Duration::from_std(worktree_age).unwrap_or(chrono::Duration::hours(24));
        // A comparison run's candidates have worktrees of their own.
        let keep: Vec<RunId> = active.iter().flat_map(|id| paid_core::engine::worktree_ids(*id)).collect();
        match self.workspaces.sweep_orphans(&keep, older_than).await {
            Ok(paths) => report.worktrees = paths.iter().map(|p| p.display().to_string()).collect(),
            Err(e) => report.notes.push(format!("worktree sweep failed: {e}")),
        }

        let unknown_age = match pressure {
            Pressure::Routine => self.settings.unknown_sandbox_max_age,
            Pressure::Critical => self.settings.unknown_sandbox_max_age.min(Duration::from_secs(300)),
            Pressure::Emergency => self.settings.unknown_sandbox_max_age.min(Duration::from_secs(60)),
        };
        let all_runs: BTreeMap<String, bool> = self
            .store
            .runs(&RunFilter::default())
            .await?
            .into_iter()
            .map(|r| (r.id.to_string(), r.state.is_terminal()))
            .collect();
        let active_set: HashSet<String> = active.iter().map(RunId::to_string).collect();
        let now = chrono::Utc::now();
        let mut live_by_project: BTreeMap<String, i64> = BTreeMap::new();
        match self.runtime.list_managed().await {
            Ok(sandboxes) => {
                for s in sandboxes {
                    let run = s.run_id.clone().unwrap_or_default();
                    let age = s.created_at.map(|c| (now - c).to_std().unwrap_or_default()).unwrap_or_default();
                    let remove = if active_set.contains(&run) {
                        false
                    } else if all_runs.get(&run) == Some(&true) {
                        true
                    } else {
                        // A run this store does not know (another deployment's, or
                        // one being created elsewhere): only once old enough.
                        !run.is_empty() && age >= unknown_age
                    };
                    if remove {
                        let handle = SandboxHandle { id: s.id.clone(), mount_at: String::new() };
                        match self.runtime.remove(&handle).await {
                            Ok(()) => report.sandboxes.push(s.id.clone()),
                            Err(e) => report.notes.push(format!("could not remove sandbox {}: {e}", s.id)),
                        }
                    } else if let Some(p) = &s.project_id {
                        *live_by_project.entry(p.clone()).or_default() += 1;
                    }
                }
            }
            Err(e) => report.notes.push(format!("listing sandboxes failed: {e}")),
        }
        for project in self.store.projects().await? {
            let id = project.id.to_string();
            let n = live_by_project.get(&id).copied().unwrap_or(0);
            self.metrics.active_containers.get_or_create(&ProjectLabels { project_id: id }).set(n);
        }

        if pressure >= Pressure::Critical {
            match &self.docker {
                Some(docker) => {
                    let filters = std::collections::HashMap::from([("dangling".to_string(), vec!["true".to_string()])]);
                    let opts = bollard::query_parameters::PruneImagesOptions { filters: Some(filters) };
                    match docker.client().prune_images(Some(opts)).await {
                        Ok(r) => report.images_pruned = r.space_reclaimed.unwrap_or(0).max(0) as u64,
                        Err(e) => report.notes.push(format!("image prune failed: {e}")),
                    }
                }
                None => report.notes.push("image prune: no Docker engine".into()),
            }
            report.notes.push("old run logs are kept: the Store port has no log pruning".into());
        }
        if !report.worktrees.is_empty() || !report.sandboxes.is_empty() {
            info!(
                ?pressure,
                worktrees = report.worktrees.len(),
                sandboxes = report.sandboxes.len(),
                "reaper removed orphans"
            );
        }
        for n in &report.notes {
            warn!(?pressure, note = %n, "reaper");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use paid_core::testing::{fixtures, instant::InstantRuntime};
    use paid_core::{CommitRequest, Error, Project, RebaseOutcome, Worktree, WorktreeRequest};

    use super::*;

    /// Records what a sweep was told to keep; nothing else is called.
    #[derive(Default)]
    struct KeepRecorder(Mutex<Vec<RunId>>);

    fn unused() -> Error {
        Error::InvalidInput { what: "workspaces".into(), message: "not used by the reaper".into() }
    }

    #[async_trait]
    impl Workspaces for KeepRecorder {
        async fn ensure_mirror(&self, _: &Project) -> paid_core::Result<()> {
            Err(unused())
        }
        async fn create_worktree(&self, _: &WorktreeRequest<'_>) -> paid_core::Result<Worktree> {
            Err(unused())
        }
        async fn commit_all(&self, _: &CommitRequest<'_>) -> paid_core::Result<Option<String>> {
            Err(unused())
        }
        async fn changed_paths(&self, _: &Worktree) -> paid_core::Result<Vec<String>> {
            Err(unused())
        }
        async fn rebase(&self, _: &Project, _: &Worktree) -> paid_core::Result<RebaseOutcome> {
            Err(unused())
        }
        async fn push(&self, _: &Project, _: &Worktree) -> paid_core::Result<()> {
            Err(unused())
        }
        async fn remove(&self, _: &Worktree) -> paid_core::Result<()> {
            Err(unused())
        }
        async fn sweep_orphans(&self, keep: &[RunId], _: chrono::Duration) -> paid_core::Result<Vec<PathBuf>> {
            self.0.lock().unwrap().extend_from_slice(keep);
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_sweep_keeps_the_worktrees_of_comparison_candidates() {
        let store: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
        let project = fixtures::project("widgets");
        store.put_project(&project).await.unwrap();
        store.put_issue(&fixtures::issue(project.id, 1)).await.unwrap();
        let active = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
        let recorder = Arc::new(KeepRecorder::default());
        let settings = ReaperSettings {
            interval: Duration::from_secs(60),
            worktree_max_age: Duration::from_secs(3600),
            unknown_sandbox_max_age: Duration::from_secs(3600),
        };
        let reaper = Reaper::new(
            store,
            recorder.clone(),
            Arc::new(InstantRuntime),
            None,
            settings,
            Arc::new(Metrics::default()),
        );
        reaper.sweep(Pressure::Emergency).await.unwrap();
        let kept = recorder.0.lock().unwrap().clone();
        let expected: Vec<RunId> = paid_core::engine::worktree_ids(active.id).collect();
        assert!(expected.len() > 1, "the run and its candidates");
        assert_eq!(kept, expected, "the run's own worktree and every candidate's are kept");
    }
}
