//! What the host does with a worktree a compromised agent had, through the
//! whole engine on real Docker and git:
//! - a `setsid` background process the agent left is dead before the
//!   commit step starts (nothing writes to the worktree while the host
//!   reads it);
//! - a 2 GiB sparse file, and 200 000 small files, each end the run as
//!   `worktree_limit`, while this process (the daemon) stays within 100 MiB
//!   of its idle memory: nothing of them is read into it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Duration as ChronoDuration;
use common::engine::Harness;
use paid_agents::CommandAgent;
use paid_core::engine::EngineConfig;
use paid_core::{
    CommitRequest, Project, RebaseOutcome, Result, RunId, RunState, Workspaces, Worktree, WorktreeLimits,
    WorktreeRequest,
};

/// The fix, after a background writer is started in a new session: it
/// appends to `ticks` every 20 ms for as long as it lives.
const LEAVES_A_WRITER: &str = "setsid sh -c 'while :; do echo t >> ticks; sleep 0.02; done' </dev/null >/dev/null 2>&1 & \
     sleep 0.3; sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh && echo fixed";

/// Workspaces that, when the commit starts, watch `ticks` for 500 ms.
struct Watching {
    inner: paid_github::GitWorkspaces,
    seen: Mutex<Option<(u64, u64)>>,
}

fn size(path: &PathBuf) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[async_trait]
impl Workspaces for Watching {
    async fn ensure_mirror(&self, project: &Project) -> Result<()> {
        self.inner.ensure_mirror(project).await
    }
    async fn create_worktree(&self, req: &WorktreeRequest<'_>) -> Result<Worktree> {
        self.inner.create_worktree(req).await
    }
    async fn commit_all(&self, req: &CommitRequest<'_>) -> Result<Option<String>> {
        let ticks = req.worktree.path.join("ticks");
        let before = size(&ticks);
        // not an assertion: the observation window of `before == after` in the test;
        // a live writer appends every 20 ms, ~25 times in it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        *self.seen.lock().unwrap() = Some((before, size(&ticks)));
        self.inner.commit_all(req).await
    }
    async fn changed_paths(&self, worktree: &Worktree) -> Result<Vec<String>> {
        self.inner.changed_paths(worktree).await
    }
    async fn lines_changed(&self, worktree: &Worktree) -> Result<Option<u64>> {
        self.inner.lines_changed(worktree).await
    }
    async fn rebase(&self, project: &Project, worktree: &Worktree) -> Result<RebaseOutcome> {
        self.inner.rebase(project, worktree).await
    }
    async fn push(&self, project: &Project, worktree: &Worktree) -> Result<()> {
        self.inner.push(project, worktree).await
    }
    async fn check_limits(&self, worktree: &Worktree, limits: &WorktreeLimits) -> Result<()> {
        self.inner.check_limits(worktree, limits).await
    }
    async fn remove(&self, worktree: &Worktree) -> Result<()> {
        self.inner.remove(worktree).await
    }
    async fn sweep_orphans(&self, keep: &[RunId], older_than: ChronoDuration) -> Result<Vec<PathBuf>> {
        self.inner.sweep_orphans(keep, older_than).await
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        worker_id: "host-safety".into(),
        max_iterations: 1,
        worktree_check_interval: Duration::from_millis(200),
        ..EngineConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_writer_is_dead_before_the_commit_starts() {
    let h = Harness::new(&common::image(), "writer").await;
    let workspaces = Arc::new(Watching { inner: h.workspaces(), seen: Mutex::new(None) });
    let agent = Arc::new(CommandAgent::new("writer", LEAVES_A_WRITER).unwrap());
    let engine = h.engine_from(agent, workspaces.clone(), config());
    let run = h.run(&engine).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}\n{}", run.failure, h.log(&run).await);
    let (before, after) = workspaces.seen.lock().unwrap().expect("the commit step ran");
    assert!(before > 0, "the writer ran (ticks is empty)");
    assert_eq!(before, after, "something still wrote to the worktree while the host committed it");
    // What was committed is what the writer had written when it died.
    let branch = run.branch.clone().unwrap();
    assert_eq!(h.remote_file(&branch, "ticks").len() as u64, before);
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sparse_file_or_too_many_files_end_the_run_as_worktree_limit() {
    for (kind, script) in [
        // Written, then the agent keeps working: the watch stops it.
        ("sparse", "truncate -s 2G big.bin && sleep 60"),
        ("many", "mkdir many && cd many && seq 1 200000 | xargs touch && sleep 60"),
    ] {
        let h = Harness::new(&common::image(), kind).await;
        let agent = Arc::new(CommandAgent::new(kind, script).unwrap());
        let engine = h.engine_from(agent, Arc::new(h.workspaces()), config());
        let idle = rss();
        let started = std::time::Instant::now();
        let run = h.run(&engine).await;
        let grown = rss().saturating_sub(idle);
        let failure = run.failure.clone().expect("the run failed");
        assert_eq!(failure.code, "worktree_limit", "{kind}: {failure:?}\n{}", h.log(&run).await);
        assert!(started.elapsed() < Duration::from_secs(50), "{kind}: the watch did not stop the agent");
        assert!(grown < 100 << 20, "{kind}: RSS grew by {grown} bytes");
        assert!(h.github.pull_requests(common::engine::REPO.0, common::engine::REPO.1).is_empty());
        eprintln!("{kind}: worktree_limit after {:?}, RSS +{} KiB", started.elapsed(), grown / 1024);
    }
}
