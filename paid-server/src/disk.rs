//! The disk guard: measures what Paid keeps on disk, cleans up harder as the
//! filesystem fills, and stops claiming new runs at the emergency level
//! until space is back.
//!
//! Logs of runs that ended longer ago than the retention
//! (`disk.log_retention_days`, default 30) are deleted ([`DiskGuard::prune_logs`],
//! on the reaper's schedule and at each measurement from the critical level
//! on). The retention shrinks as the disk fills: a quarter of it at the
//! critical level (85%), a thirtieth at the emergency level (95%).
//!
//! The filesystem is read through [`FsProbe`], and the thresholds are
//! settings, so tests can simulate pressure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use paid_core::metrics::{DiskLabels, Metrics, ProjectLabels};
use paid_core::{RunId, Store};
use tracing::{error, info, warn};

use crate::config::DiskSettings;
use crate::reaper::{Pressure, Reaper};

pub use paid_api::{DiskLevel as Level, DiskReport, FsUsage};

/// Reads a filesystem's usage.
pub trait FsProbe: Send + Sync + 'static {
    /// The filesystem holding `path`.
    fn usage(&self, path: &Path) -> std::io::Result<FsUsage>;
}

/// The real filesystem, through `statvfs(3)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StatvfsProbe;

impl FsProbe for StatvfsProbe {
    fn usage(&self, path: &Path) -> std::io::Result<FsUsage> {
        let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
        Ok(FsUsage { total: s.f_blocks * s.f_frsize, available: s.f_bavail * s.f_frsize })
    }
}

/// The disk guard's arithmetic on a [`Level`].
pub trait LevelExt: Sized {
    /// The level of `percent` under `s`.
    fn of(percent: f64, s: &DiskSettings) -> Self;
    /// How long logs of ended runs are kept at this level, out of the
    /// configured `retention`.
    fn log_retention(self, retention: Duration) -> Duration;
    /// The level stored as `v` (`as u8`).
    fn from_u8(v: u8) -> Self;
}

impl LevelExt for Level {
    fn of(percent: f64, s: &DiskSettings) -> Self {
        if percent >= s.emergency_percent {
            Level::Emergency
        } else if percent >= s.critical_percent {
            Level::Critical
        } else if percent >= s.warning_percent {
            Level::Warning
        } else {
            Level::Normal
        }
    }

    fn log_retention(self, retention: Duration) -> Duration {
        match self {
            Level::Normal | Level::Warning => retention,
            Level::Critical => retention / 4,
            Level::Emergency => retention / 30,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Level::Warning,
            2 => Level::Critical,
            3 => Level::Emergency,
            _ => Level::Normal,
        }
    }
}

/// Where Paid's bytes are.
#[derive(Debug, Clone)]
pub struct DiskPaths {
    /// Mirror clones.
    pub repos: PathBuf,
    /// Worktrees.
    pub worktrees: PathBuf,
    /// The database file(s) holding run logs (SQLite; none for PostgreSQL).
    pub database: Option<PathBuf>,
}

/// The guard.
pub struct DiskGuard {
    settings: DiskSettings,
    probe: Arc<dyn FsProbe>,
    paths: DiskPaths,
    docker: Option<paid_runtime_docker::DockerRuntime>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    level: AtomicU8,
    last: tokio::sync::Mutex<Option<DiskReport>>,
}

impl std::fmt::Debug for DiskGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskGuard")
            .field("settings", &self.settings)
            .field("level", &self.level())
            .finish_non_exhaustive()
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

impl DiskGuard {
    /// A guard over `paths` on the filesystem of `settings.path`.
    pub fn new(
        settings: DiskSettings,
        probe: Arc<dyn FsProbe>,
        paths: DiskPaths,
        docker: Option<paid_runtime_docker::DockerRuntime>,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            settings,
            probe,
            paths,
            docker,
            metrics,
            store,
            level: AtomicU8::new(Level::Normal as u8),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The level of the last measurement.
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::SeqCst))
    }

    /// Whether new runs may be claimed.
    pub fn accepting_runs(&self) -> bool {
        self.level() < Level::Emergency
    }

    /// Deletes the logs of runs that ended longer ago than the retention
    /// at the current level. Returns how many chunks were deleted.
    pub async fn prune_logs(&self) -> paid_core::Result<u64> {
        let keep = self.level().log_retention(self.settings.log_retention);
        let cutoff = chrono::Duration::from_std(keep)
            .ok()
            .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let n = self.store.prune_logs(cutoff).await?;
        if n > 0 {
            info!(chunks = n, keep_days = keep.as_secs_f64() / 86_400.0, level = ?self.level(), "pruned old run logs");
        }
        Ok(n)
    }

    /// The last report.
    pub async fn last(&self) -> Option<DiskReport> {
        self.last.lock().await.clone()
    }

    /// Measures, records metrics, and cleans up as the level asks.
    pub async fn tick(&self, reaper: Option<&Reaper>) -> DiskReport {
        let probe = self.probe.clone();
        let paths = self.paths.clone();
        let fs_path = self.settings.path.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let fs = probe.usage(&fs_path);
            let repos = dir_size(&paths.repos);
            let worktrees = dir_size(&paths.worktrees);
            let logs = paths
                .database
                .as_ref()
                .map(|db| {
                    let wal = PathBuf::from(format!("{}-wal", db.display()));
                    dir_size(db) + dir_size(&wal)
                })
                .unwrap_or(0);
            let worktree_runs: Vec<String> = std::fs::read_dir(&paths.worktrees)
                .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect())
                .unwrap_or_default();
            (fs, repos, worktrees, logs, worktree_runs)
        })
        .await;
        let (fs, repos, worktrees, logs, worktree_runs) = match measured {
            Ok(m) => m,
            Err(e) => (Err(std::io::Error::other(e)), 0, 0, 0, Vec::new()),
        };
        let images = self.image_bytes().await;
        let mut bytes = std::collections::BTreeMap::new();
        bytes.insert("repos".to_string(), repos);
        bytes.insert("worktrees".to_string(), worktrees);
        bytes.insert("logs".to_string(), logs);
        bytes.insert("images".to_string(), images);
        let fs = match fs {
            Ok(u) => Some(u),
            Err(e) => {
                warn!(path = %self.settings.path.display(), error = %e, "cannot measure the filesystem");
                None
            }
        };
        if let Some(u) = fs {
            bytes.insert("filesystem_used".to_string(), u.total.saturating_sub(u.available));
            bytes.insert("filesystem_size".to_string(), u.total);
        }
        for (k, v) in &bytes {
            self.metrics.disk_usage_bytes.get_or_create(&DiskLabels { r#type: k.clone() }).set(*v as i64);
        }
        self.count_worktrees(&worktree_runs).await;
        let percent = fs.map(|u| u.percent_used()).unwrap_or(0.0);
        let level = Level::of(percent, &self.settings);
        let was = self.level();
        self.level.store(level as u8, Ordering::SeqCst);
        if level != was {
            match level {
                Level::Emergency => error!(percent, "disk emergency: no new runs are claimed until space is back"),
                Level::Critical => warn!(percent, "disk critical: cleaning up aggressively"),
                Level::Warning => warn!(percent, "disk filling up: routine cleanup"),
                Level::Normal => info!(percent, "disk usage back to normal"),
            }
        }
        let pressure = match level {
            Level::Normal | Level::Warning => Pressure::Routine,
            Level::Critical => Pressure::Critical,
            Level::Emergency => Pressure::Emergency,
        };
        let cleanup = match (reaper, level) {
            (Some(r), l) if l >= Level::Warning => match r.sweep(pressure).await {
                Ok(rep) => Some(rep),
                Err(e) => {
                    warn!(error = %e, "disk cleanup failed");
                    None
                }
            },
            _ => None,
        };
        let logs_pruned = if level >= Level::Critical {
            match self.prune_logs().await {
                Ok(n) => Some(n),
                Err(e) => {
                    warn!(error = %e, "cannot prune old logs");
                    None
                }
            }
        } else {
            None
        };
        let report = DiskReport {
            path: self.settings.path.clone(),
            filesystem: fs,
            percent_used: percent,
            level,
            bytes,
            cleanup,
            logs_pruned,
        };
        *self.last.lock().await = Some(report.clone());
        report
    }

    async fn image_bytes(&self) -> u64 {
        let Some(docker) = &self.docker else { return 0 };
        match docker.images().await {
            Ok(images) => images.iter().map(|i| i.size_bytes).sum(),
            Err(e) => {
                warn!(error = %e, "cannot list images");
                0
            }
        }
    }

    async fn count_worktrees(&self, run_dirs: &[String]) {
        let mut by_project: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        for name in run_dirs {
            if let Ok(id) = RunId::parse(name)
                && let Ok(run) = self.store.run(id).await
            {
                *by_project.entry(run.project_id.to_string()).or_default() += 1;
            }
        }
        if let Ok(projects) = self.store.projects().await {
            for p in projects {
                let id = p.id.to_string();
                let n = by_project.get(&id).copied().unwrap_or(0);
                self.metrics.worktrees.get_or_create(&ProjectLabels { project_id: id }).set(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use paid_core::Project;

    use super::*;

    struct FakeFs(Mutex<FsUsage>);

    impl FsProbe for FakeFs {
        fn usage(&self, _: &Path) -> std::io::Result<FsUsage> {
            Ok(*self.0.lock().unwrap())
        }
    }

    fn settings() -> DiskSettings {
        DiskSettings {
            path: PathBuf::from("/"),
            interval: Duration::from_secs(1),
            warning_percent: 75.0,
            critical_percent: 85.0,
            emergency_percent: 95.0,
            log_retention: Duration::from_secs(30 * 86_400),
        }
    }

    #[test]
    fn levels() {
        let s = settings();
        assert_eq!(Level::of(10.0, &s), Level::Normal);
        assert_eq!(Level::of(75.0, &s), Level::Warning);
        assert_eq!(Level::of(90.0, &s), Level::Critical);
        assert_eq!(Level::of(99.0, &s), Level::Emergency);
    }

    #[tokio::test]
    async fn emergency_stops_claims_until_space_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FakeFs(Mutex::new(FsUsage { total: 100, available: 50 })));
        let store: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
        let metrics = Arc::new(Metrics::default());
        let paths = DiskPaths { repos: dir.path().join("r"), worktrees: dir.path().join("w"), database: None };
        let guard = DiskGuard::new(settings(), fs.clone(), paths, None, metrics.clone(), store);
        assert_eq!(guard.tick(None).await.level, Level::Normal);
        assert!(guard.accepting_runs());
        *fs.0.lock().unwrap() = FsUsage { total: 100, available: 3 };
        let r = guard.tick(None).await;
        assert_eq!(r.level, Level::Emergency);
        assert_eq!(r.percent_used, 97.0);
        assert!(!guard.accepting_runs());
        *fs.0.lock().unwrap() = FsUsage { total: 100, available: 40 };
        guard.tick(None).await;
        assert!(guard.accepting_runs());
        let used = metrics.disk_usage_bytes.get_or_create(&DiskLabels { r#type: "filesystem_used".into() }).get();
        assert_eq!(used, 60);
    }

    /// A run of `project` that ended `ago` ago with one log chunk.
    async fn ended_run(store: &dyn Store, project: paid_core::ProjectId, issue: u64, ago: chrono::Duration) -> RunId {
        use paid_core::testing::fixtures;
        use paid_core::{AppendLog, ClaimRequest, LogStream, RunState, Transition};
        let when = chrono::Utc::now() - ago;
        store.put_issue(&fixtures::issue(project, issue)).await.unwrap();
        let run = store.create_run(&fixtures::new_run(project, issue)).await.unwrap();
        let req = ClaimRequest { owner: "w".into(), lease: chrono::Duration::hours(1), now: when };
        assert_eq!(store.claim(&req).await.unwrap().map(|r| r.id), Some(run.id));
        let log =
            AppendLog { run_id: run.id, stream: LogStream::Stdout, text: "hello\n", cap_bytes: 1 << 20, at: when };
        store.append_log(&log).await.unwrap();
        let t = Transition {
            run_id: run.id,
            from: RunState::Queued,
            to: RunState::Failed,
            owner: "w".into(),
            at: when,
            patch: Default::default(),
        };
        store.transition(&t).await.unwrap();
        run.id
    }

    #[tokio::test]
    async fn old_logs_are_pruned_and_retention_shrinks_as_the_disk_fills() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FakeFs(Mutex::new(FsUsage { total: 100, available: 50 })));
        let store: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
        let project = paid_core::testing::fixtures::project("widgets");
        store.put_project(&Project { max_concurrent_runs: 100, ..project.clone() }).await.unwrap();
        let days = chrono::Duration::days;
        let month_old = ended_run(store.as_ref(), project.id, 1, days(40)).await;
        let ten_days = ended_run(store.as_ref(), project.id, 2, days(10)).await;
        let two_days = ended_run(store.as_ref(), project.id, 3, days(2)).await;
        let hour_old = ended_run(store.as_ref(), project.id, 4, chrono::Duration::hours(1)).await;
        // An active run with an old log line keeps it at every level.
        store.put_issue(&paid_core::testing::fixtures::issue(project.id, 5)).await.unwrap();
        let active = store.create_run(&paid_core::testing::fixtures::new_run(project.id, 5)).await.unwrap();
        let old_line = paid_core::AppendLog {
            run_id: active.id,
            stream: paid_core::LogStream::System,
            text: "queued\n",
            cap_bytes: 1 << 20,
            at: chrono::Utc::now() - days(60),
        };
        store.append_log(&old_line).await.unwrap();
        let has_logs = |id: RunId| {
            let store = store.clone();
            async move { !store.logs(id, 0).await.unwrap().is_empty() }
        };

        let paths = DiskPaths { repos: dir.path().join("r"), worktrees: dir.path().join("w"), database: None };
        let guard = DiskGuard::new(settings(), fs.clone(), paths, None, Arc::new(Metrics::default()), store.clone());
        // Normal: the reaper's schedule prunes beyond 30 days; a measurement does not.
        let r = guard.tick(None).await;
        assert_eq!((r.level, r.logs_pruned), (Level::Normal, None));
        assert!(has_logs(month_old).await);
        assert_eq!(guard.prune_logs().await.unwrap(), 1);
        assert!(!has_logs(month_old).await);
        assert!(has_logs(ten_days).await);

        // Critical (90%): a quarter of 30 days is kept, at each measurement.
        *fs.0.lock().unwrap() = FsUsage { total: 100, available: 10 };
        let r = guard.tick(None).await;
        assert_eq!((r.level, r.logs_pruned), (Level::Critical, Some(1)));
        assert!(!has_logs(ten_days).await);
        assert!(has_logs(two_days).await);

        // Emergency (97%): a thirtieth, one day.
        *fs.0.lock().unwrap() = FsUsage { total: 100, available: 3 };
        let r = guard.tick(None).await;
        assert_eq!((r.level, r.logs_pruned), (Level::Emergency, Some(1)));
        assert!(!has_logs(two_days).await);
        assert!(has_logs(hour_old).await, "a run that ended an hour ago keeps its logs");
        assert!(has_logs(active.id).await, "an active run keeps its logs");
        assert_eq!(guard.prune_logs().await.unwrap(), 0);
    }

    #[test]
    fn retention_by_level() {
        let r = Duration::from_secs(30 * 86_400);
        assert_eq!(Level::Warning.log_retention(r), r);
        assert_eq!(Level::Critical.log_retention(r), Duration::from_secs(30 * 86_400 / 4));
        assert_eq!(Level::Emergency.log_retention(r), Duration::from_secs(86_400));
    }
}
