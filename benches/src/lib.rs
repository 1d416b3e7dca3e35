//! Measurements behind Paid's benchmarks (`cargo bench -p paid-benches`).
//!
//! - [`claim_complete`]: claim + complete throughput of a [`Store`] with N
//!   concurrent claimers, each on its own handle (like separate workers).
//!   "Complete" is what a worker does last: move the run to an end state and
//!   release the lease. Three statements per run.
//! - [`orchestration`]: the engine's own time per run, driving a run through
//!   the whole pipeline with the instant backends (no sandbox, no git): the
//!   time of `run_once` minus the time spent inside the agent.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use paid_benches::{claim_complete, seed};
//! use paid_core::Store;
//!
//! let store: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
//! seed(&*store, 2, 10).await;
//! let took = claim_complete(vec![store], 10).await;
//! assert!(took.as_secs() < 10);
//! # }
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark support: a failed setup fails the run loudly")]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use paid_core::engine::{Engine, EngineConfig};
use paid_core::testing::instant::{self, InstantAgent, InstantBackends};
use paid_core::{
    Agent, AgentContext, AgentOutcome, ClaimRequest, IssueState, NewRun, Project, ProjectId, RunId, RunKind, RunState,
    Store, TrackedIssue, Transition,
};

/// Queues `runs` runs spread over `projects` projects (each allowing far
/// more concurrent runs than any claimer count, so limits are checked but
/// never bind). Returns the projects.
pub async fn seed(store: &dyn Store, projects: usize, runs: usize) -> Vec<Project> {
    let now = chrono::Utc::now();
    let made: Vec<Project> = (0..projects.max(1))
        .map(|i| instant::project(ProjectId(uuid::Uuid::now_v7()), &format!("bench{i}"), 100_000, now))
        .collect();
    for p in &made {
        store.put_project(p).await.unwrap();
    }
    for i in 0..runs {
        let project = &made[i % made.len()];
        store
            .create_run(&NewRun {
                id: RunId(uuid::Uuid::now_v7()),
                project_id: project.id,
                issue_number: 1_000_000 + i as u64,
                kind: RunKind::Build,
                priority: 0,
                created_at: now,
                context: Default::default(),
            })
            .await
            .unwrap();
    }
    made
}

/// Claims and completes runs with one claimer per store handle until
/// `runs` are done; returns the wall time. The runs must be queued already.
pub async fn claim_complete(stores: Vec<Arc<dyn Store>>, runs: usize) -> Duration {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let done = done.clone();
            tokio::spawn(async move {
                let owner = format!("bench-{i}");
                let lease = chrono::Duration::seconds(60);
                while done.load(Ordering::Relaxed) < runs {
                    let now = chrono::Utc::now();
                    let Some(run) = store.claim(&ClaimRequest { owner: owner.clone(), lease, now }).await.unwrap()
                    else {
                        // Another claimer took the last ones.
                        tokio::task::yield_now().await;
                        continue;
                    };
                    store
                        .transition(&Transition {
                            run_id: run.id,
                            from: RunState::Queued,
                            to: RunState::Cancelled,
                            owner: owner.clone(),
                            at: now,
                            patch: Default::default(),
                        })
                        .await
                        .unwrap();
                    store.release(run.id, &owner).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

/// The instant agent, timing itself.
struct TimedAgent {
    inner: Arc<InstantAgent>,
    nanos: Arc<AtomicU64>,
}

#[async_trait]
impl Agent for TimedAgent {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    async fn run(&self, ctx: AgentContext<'_>) -> paid_core::Result<AgentOutcome> {
        let started = Instant::now();
        let out = self.inner.run(ctx).await;
        self.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }
}

/// Per-run times of the engine driving runs through the whole pipeline on
/// `store` with the instant backends.
#[derive(Debug, Clone, Default)]
pub struct Orchestration {
    /// Wall time of each `run_once`.
    pub total: Vec<Duration>,
    /// Of which inside the agent.
    pub agent: Vec<Duration>,
}

impl Orchestration {
    /// Wall time minus agent time, per run.
    pub fn overhead(&self) -> Vec<Duration> {
        self.total.iter().zip(&self.agent).map(|(t, a)| t.saturating_sub(*a)).collect()
    }
}

/// Drives `runs` runs, one after another, through the engine; the issue and
/// run are created before each timed `run_once`.
pub async fn orchestration(store: Arc<dyn Store>, runs: usize, worktrees: &std::path::Path) -> Orchestration {
    let backends = InstantBackends::unrecorded(worktrees);
    let nanos = Arc::new(AtomicU64::new(0));
    let agent = Arc::new(TimedAgent { inner: backends.agent.clone(), nanos: nanos.clone() });
    let engine: Engine = backends
        .engine_builder()
        .agent(agent)
        .store(store.clone())
        .config(EngineConfig { worker_id: "bench".into(), ..EngineConfig::default() })
        .build()
        .unwrap();
    let projects = seed(&*store, 1, 0).await;
    let project = &projects[0];
    let mut out = Orchestration::default();
    for i in 0..runs {
        let number = i as u64 + 1;
        let now = chrono::Utc::now();
        store
            .put_issue(&TrackedIssue {
                project_id: project.id,
                number,
                title: format!("Speed up thing {number}"),
                body: "Please.".into(),
                author: "octocat".into(),
                author_id: Some(paid_core::testing::fixtures::OCTOCAT_ID),
                labels: vec!["paid-build".into()],
                state: IssueState::Open,
                url: format!("https://instant.invalid/issues/{number}"),
                trusted: true,
                updated_at: now,
            })
            .await
            .unwrap();
        store
            .create_run(&NewRun {
                id: RunId(uuid::Uuid::now_v7()),
                project_id: project.id,
                issue_number: number,
                kind: RunKind::Build,
                priority: 0,
                created_at: now,
                context: Default::default(),
            })
            .await
            .unwrap();
        let before = nanos.load(Ordering::Relaxed);
        let started = Instant::now();
        let run = engine.run_once().await.unwrap().expect("a queued run");
        out.total.push(started.elapsed());
        out.agent.push(Duration::from_nanos(nanos.load(Ordering::Relaxed) - before));
        assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    }
    out
}

/// The `p`-th percentile (0..=100) of `samples`, by nearest rank.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Round trips of a trivial read (`Runs::run`), the unit the other
/// figures are compared with.
pub async fn round_trips(store: &dyn Store, n: usize) -> Vec<Duration> {
    let projects = seed(store, 1, 1).await;
    let run = store.runs(&paid_core::RunFilter::all().project(projects[0].id)).await.unwrap();
    let id = run[0].id;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        store.run(id).await.unwrap();
        out.push(started.elapsed());
    }
    out
}

/// A line of the summary, kept for the ratio columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Arc<Mutex<Vec<(String, usize, f64)>>>,
}

impl Table {
    /// Records `runs_per_sec` for `store` with `claimers`.
    pub fn add(&self, store: &str, claimers: usize, runs_per_sec: f64) {
        self.rows.lock().unwrap().push((store.to_string(), claimers, runs_per_sec));
    }

    /// The table, with each figure as a ratio to the same store's single
    /// claimer and to `baseline` (a store name) with as many claimers.
    pub fn render(&self, baseline: &str) -> String {
        let rows = self.rows.lock().unwrap().clone();
        let find = |store: &str, claimers: usize| {
            rows.iter().find(|(s, c, _)| s == store && *c == claimers).map(|(_, _, r)| *r)
        };
        let mut out = format!(
            "{:<22} {:>9} {:>12} {:>14} {:>14}\n",
            "store",
            "claimers",
            "runs/s",
            "x 1 claimer",
            format!("x {baseline}")
        );
        for (store, claimers, rate) in &rows {
            let one = find(store, 1).map(|b| format!("{:.2}", rate / b)).unwrap_or_default();
            let base = find(baseline, *claimers).map(|b| format!("{:.2}", rate / b)).unwrap_or_default();
            out.push_str(&format!("{store:<22} {claimers:>9} {rate:>12.0} {one:>14} {base:>14}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms = |v: &[u64]| v.iter().map(|m| Duration::from_millis(*m)).collect::<Vec<_>>();
        let samples = ms(&[5, 1, 4, 2, 3, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(5));
        assert_eq!(percentile(&samples, 95.0), Duration::from_millis(10));
        assert_eq!(percentile(&samples, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[tokio::test]
    async fn the_engine_drives_instant_runs_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
        let o = orchestration(store, 3, dir.path()).await;
        assert_eq!((o.total.len(), o.agent.len()), (3, 3));
        for (i, (total, agent)) in o.total.iter().zip(&o.agent).enumerate() {
            // The timed agent ran inside each timed `run_once`: some time in
            // it, and no more than the run's wall time.
            assert!(*agent > Duration::ZERO, "run {i}: no time measured in the agent");
            assert!(agent <= total, "run {i}: agent {agent:?} longer than the whole run {total:?}");
            assert_eq!(o.overhead()[i] + *agent, *total, "run {i}: overhead is wall time minus agent time");
        }
    }

    #[test]
    fn overhead_is_wall_time_minus_agent_time_per_run() {
        let ms = Duration::from_millis;
        let o = Orchestration { total: vec![ms(10), ms(7), ms(3)], agent: vec![ms(4), ms(7), ms(5)] };
        // The last agent time is longer than its run (clock skew): zero, not a wrap.
        assert_eq!(o.overhead(), vec![ms(6), ms(0), ms(0)]);
    }
}
