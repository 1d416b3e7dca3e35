//! Nested retries, at the engine level: a GitHub that keeps answering `502`
//! is retried by the forge's one retry layer ([`RetryPolicy`]) and by no one
//! else. The step fails after the policy's documented attempts, and the
//! engine's per-step retry, which would retry a retryable error, leaves
//! the non-retryable `RetriesExhausted` alone. Before there was one retry
//! layer, each of the engine's 4 step attempts made the forge's 5: 20 HTTP
//! requests for one step.
//!
//! Instant runtime, workspaces and agent, the SQLite store, a real
//! [`GitHubForge`] on the fake GitHub: no Docker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use paid_core::engine::{EngineConfig, RetryConfig};
use paid_core::testing::fixtures;
use paid_core::testing::instant::{self, InstantBackends};
use paid_core::{Clock, Project, RepoRef, RunState, StepStatus, Store, SystemClock};
use paid_github::fake::{FakeFault, FakeGitHub};
use paid_github::{GitHubConfig, GitHubForge, RetryPolicy};
use paid_store_sqlite::SqliteStore;
use pretty_assertions::assert_eq;

const OWNER: &str = "octo";
const REPO: &str = "app";
/// What `find_or_create_pr` sends first: `GET .../pulls?head=...`, idempotent.
const PULLS: &str = "/repos/octo/app/pulls";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_502_makes_five_http_attempts_in_one_step_not_twenty() {
    let dir = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue(OWNER, REPO, 1, "Fix the build", "It fails.", "octocat", &["paid-build"]);

    // The forge: the default policy's attempts, with millisecond backoffs
    // instead of 0.5, 1, 2, 4 s.
    let policy = RetryPolicy::new().delays(Duration::from_millis(1), Duration::from_millis(5));
    assert_eq!(policy.attempts(), RetryPolicy::new().attempts());
    assert_eq!(RetryPolicy::new().attempts(), 5, "the documented default: 1 + 4 retries");
    let forge = Arc::new(GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).retry(policy)).unwrap());

    // The engine: its default step retry (3 retries of a retryable error,
    // so 4 attempts of the step), with millisecond backoffs.
    let retry = RetryConfig {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryConfig::default()
    };
    assert_eq!(retry.max_retries, 3, "the engine would try a retryable failure 4 times: 4 x 5 = 20 requests");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let backends = InstantBackends::recording(store.clone(), dir.path().join("worktrees"));
    let project = Project {
        repo: RepoRef::new(OWNER, REPO),
        ..instant::project(fixtures::project_id(), REPO, 1, SystemClock.now())
    };
    store.put_project(&project).await.unwrap();
    let engine = backends
        .engine_builder()
        .forge(forge.clone())
        .store(store.clone())
        .config(EngineConfig { retry, ..EngineConfig::default() })
        .build()
        .unwrap();

    // GitHub is up for the intake, then down for the whole run.
    let report = engine.poll_project(project.id).await.unwrap();
    assert_eq!(report.queued.len(), 1, "{report:?}");
    github.fail_always(FakeFault::Status(502));
    let before = github.request_count();
    let runs = engine.run_until_idle().await.unwrap();

    // The run failed in the PR step, with the forge's give-up as its error.
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.state, RunState::Failed, "{run:#?}");
    let failure = run.failure.as_ref().unwrap();
    assert_eq!((failure.step, failure.code.as_str()), (RunState::OpeningPr, "backend"));
    assert!(
        failure.message.contains(PULLS)
            && failure.message.contains("502")
            && failure.message.contains("gave up after 5 attempts"),
        "{}",
        failure.message
    );

    // That step sent its first request 5 times, and nothing after it: one
    // retry layer, not the engine's 4 attempts times the forge's 5.
    let during = github.requests().split_off(before);
    let step: Vec<(&str, &str, u16)> =
        during.iter().filter(|r| r.path == PULLS).map(|r| (r.method.as_str(), r.path.as_str(), r.status)).collect();
    assert_eq!(step, vec![("GET", PULLS, 502); 5], "{during:#?}");
    assert!(during.iter().all(|r| r.status == 502), "{during:#?}");
    // No request of the run (the best-effort failure report in cleaning
    // included) was sent more than the policy's 5 times.
    let mut sent: BTreeMap<(&str, &str, Option<&str>), usize> = BTreeMap::new();
    for r in &during {
        *sent.entry((r.method.as_str(), r.path.as_str(), r.query.as_deref())).or_default() += 1;
    }
    assert!(sent.values().all(|&n| n <= 5), "{sent:#?}");

    // One journal record for the step, failed with that error.
    let steps = store.steps(run.id).await.unwrap();
    let pr_steps: Vec<_> = steps.iter().filter(|s| s.step == RunState::OpeningPr).collect();
    assert_eq!(pr_steps.len(), 1, "{steps:#?}");
    assert_eq!(pr_steps[0].status, StepStatus::Failed);
    assert!(pr_steps[0].error.as_deref().is_some_and(|e| e.contains("gave up after 5 attempts")), "{:?}", pr_steps[0]);
    assert!(github.pull_requests(OWNER, REPO).is_empty());

    // Once GitHub is back, the same engine and forge open the PR.
    github.recover();
    engine.enqueue(project.id, 1).await.unwrap();
    let runs = engine.run_until_idle().await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Succeeded, "{:?}", runs[0].failure);
    let prs = github.pull_requests(OWNER, REPO);
    assert_eq!(prs.len(), 1, "{prs:?}");
    assert_eq!(Some(&prs[0].head), runs[0].branch.as_ref());
    assert_eq!(runs[0].pr_url.as_deref(), Some(prs[0].html_url.as_str()));
}
