//! End to end: a labeled issue on the fake forge becomes a pushed branch, a
//! PR, a comment and label changes, with real Docker, real git and SQLite.
//! Docker is required: these tests fail (never skip) without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use paid_core::engine::EngineConfig;
use paid_core::{Error, ManualClock, RunFilter, RunState, StepStatus};
use paid_examples::demo::{DEMO_REPO, DemoConfig, DemoSetup, FIXER_SCRIPT};

async fn setup(dir: &Path, config: DemoConfig) -> DemoSetup {
    match DemoSetup::create(dir, config).await {
        Ok(s) => s,
        Err(e) => panic!("demo setup failed (is Docker running? CI={:?}): {e:#}", std::env::var("CI").ok()),
    }
}

fn remote_branches(remote: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args(["for-each-ref", "--format=%(refname:short)", "refs/heads"])
        .current_dir(remote)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

fn remote_file(remote: &Path, branch: &str, file: &str) -> String {
    let out = Command::new("git").args(["show", &format!("{branch}:{file}")]).current_dir(remote).output().unwrap();
    assert!(out.status.success(), "git show {branch}:{file}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Whether a process of `run_id`'s sandbox runs a command line containing
/// `command` (`docker top`).
async fn sandbox_runs(s: &DemoSetup, run_id: paid_core::RunId, command: &str) -> bool {
    let run = run_id.to_string();
    let sandboxes = s.runtime.list_managed().await.unwrap();
    sandboxes.iter().filter(|b| b.run_id.as_deref() == Some(run.as_str())).any(|b| {
        Command::new("docker")
            .args(["top", &b.id])
            .output()
            .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains(command))
    })
}

async fn assert_cleaned_up(s: &DemoSetup, run_id: paid_core::RunId) {
    let sandboxes = s.runtime.list_managed().await.unwrap();
    assert!(
        !sandboxes.iter().any(|b| b.run_id.as_deref() == Some(run_id.to_string().as_str())),
        "a sandbox of run {run_id} is still there: {sandboxes:?}"
    );
    let worktrees = s.dir.join("workspaces").join("worktrees");
    let left: Vec<_> =
        std::fs::read_dir(&worktrees).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "worktrees left behind: {left:?}");
    let steps = s.store.steps(run_id).await.unwrap();
    assert!(steps.iter().all(|st| st.status != StepStatus::Started), "half-written journal: {steps:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labeled_issue_becomes_a_pull_request() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), DemoConfig::default()).await;
    let engine = s.engine().unwrap();

    let report = engine.poll_project(s.project.id).await.unwrap();
    assert_eq!(report.queued.len(), 1);
    let runs = engine.run_until_idle().await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.state, RunState::Succeeded, "failure: {:?}", run.failure);
    assert_eq!(run.iterations, 1);

    // The branch is in the bare remote, with the fix.
    let branch = run.branch.clone().unwrap();
    assert!(branch.starts_with("paid/1-add-returns-the-wrong-result-"), "{branch}");
    assert!(remote_branches(&s.remote).contains(&branch));
    assert!(remote_file(&s.remote, &branch, "calc.sh").contains("$(( $1 + $2 ))"));

    // The PR on the forge closes the issue and is labeled.
    let prs = s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1);
    assert_eq!(prs.len(), 1, "{prs:?}");
    let pr = &prs[0];
    assert_eq!(pr.head, branch);
    assert_eq!(pr.base, "main");
    assert_eq!(pr.title, "Fix #1: add() returns the wrong result");
    assert!(pr.body.contains("Closes #1"), "{}", pr.body);
    assert!(pr.body.contains("Fixed add() in calc.sh"), "{}", pr.body);
    assert_eq!(run.pr_url.as_deref(), Some(pr.html_url.as_str()));

    // The issue got one comment and its labels moved.
    let comments = s.github.comments(DEMO_REPO.0, DEMO_REPO.1, 1);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].body.contains(&pr.html_url), "{}", comments[0].body);
    let labels = s.github.issue_labels(DEMO_REPO.0, DEMO_REPO.1, 1);
    assert!(labels.contains(&"paid-done".to_string()), "{labels:?}");
    assert!(!labels.contains(&"paid-build".to_string()), "{labels:?}");
    assert!(!labels.contains(&"paid-in-progress".to_string()), "{labels:?}");

    // The verify output reached the run log.
    let logs = s.store.logs(run.id, 0).await.unwrap();
    let text: String = logs.iter().map(|l| l.text.as_str()).collect();
    assert!(text.contains("ok: add 2 3"), "{text}");

    assert_cleaned_up(&s, run.id).await;

    // The outcome known at the end is recorded for scoring.
    let outcomes = s.store.outcomes(s.project.id).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].run_id, run.id);
    assert_eq!(outcomes[0].tests_passing, Some(true));
    assert_eq!(outcomes[0].iterations, 1);
    assert_eq!(outcomes[0].pr_merged, None);

    // A second poll queues nothing: the issue is handled.
    let again = engine.poll_project(s.project.id).await.unwrap();
    assert!(again.queued.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_dropped_after_push_resumes_with_one_pr_and_one_comment() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), DemoConfig::default()).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let config = |id: &str| EngineConfig {
        worker_id: id.into(),
        lease: std::time::Duration::from_secs(30),
        ..EngineConfig::default()
    };

    let first = s.engine_with(config("worker-a"), clock.clone()).unwrap();
    first.poll_project(s.project.id).await.unwrap();
    let run = first.claim_next().await.unwrap().unwrap();
    let mut state = run.state;
    while state != RunState::OpeningPr {
        state = first.advance(run.id).await.unwrap().state;
        assert!(!state.is_terminal(), "ended early: {state}");
    }
    // The push happened; the worker dies before opening the PR.
    drop(first);
    assert!(s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty());

    let second = s.engine_with(config("worker-b"), clock.clone()).unwrap();
    assert!(second.claim_next().await.unwrap().is_none(), "the lease of worker-a must still hold");
    clock.advance(chrono::Duration::seconds(31));
    let claimed = second.claim_next().await.unwrap().expect("expired lease is re-claimable");
    assert_eq!(claimed.id, run.id);
    assert_eq!(claimed.state, RunState::OpeningPr);
    let done = second.drive(run.id).await.unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{:?}", done.failure);

    assert_eq!(s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).len(), 1);
    assert_eq!(s.github.comments(DEMO_REPO.0, DEMO_REPO.1, 1).len(), 1);
    // Replaying the PR and report steps once more changes nothing either.
    let third = s.engine_with(config("worker-c"), clock.clone()).unwrap();
    assert!(third.run_once().await.unwrap().is_none());
    assert_eq!(s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).len(), 1);
    assert_cleaned_up(&s, run.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_author_triggers_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = DemoConfig { issue_author: "mallory".into(), ..DemoConfig::default() };
    let s = setup(tmp.path(), config).await;
    let engine = s.engine().unwrap();

    let err = engine.enqueue(s.project.id, 1).await.unwrap_err();
    assert!(matches!(&err, Error::Untrusted { author, .. } if author == "mallory"), "{err}");
    assert!(err.to_string().contains("untrusted author \"mallory\""), "{err}");
    let report = engine.poll_project(s.project.id).await.unwrap();
    assert_eq!(report.untrusted, vec![1]);
    assert!(report.queued.is_empty());

    assert!(s.store.runs(&RunFilter::default()).await.unwrap().is_empty());
    let issue = s.store.issue(s.project.id, 1).await.unwrap();
    assert!(!issue.trusted);
    assert!(issue.body.is_empty(), "untrusted text must not be kept for prompts");
    let audit = s.store.audit_events(Some(s.project.id)).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "issue.untrusted").count(), 1, "{audit:?}");
    assert!(s.github.comments(DEMO_REPO.0, DEMO_REPO.1, 1).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_path_fails_the_run_and_pushes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config =
        DemoConfig { agent_script: format!("echo API_KEY=leaked > .env && {FIXER_SCRIPT}"), ..DemoConfig::default() };
    let s = setup(tmp.path(), config).await;
    let engine = s.engine().unwrap();
    engine.poll_project(s.project.id).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();

    assert_eq!(run.state, RunState::Failed);
    let failure = run.failure.clone().unwrap();
    assert_eq!(failure.code, "policy_violation");
    assert_eq!(failure.step, RunState::PolicyCheck);
    assert!(failure.message.contains(".env"), "{}", failure.message);
    assert_eq!(remote_branches(&s.remote), vec!["main".to_string()], "nothing may be pushed");
    assert!(s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty());
    let labels = s.github.issue_labels(DEMO_REPO.0, DEMO_REPO.1, 1);
    assert!(labels.contains(&"paid-failed".to_string()), "{labels:?}");
    let audit = s.store.audit_events(Some(s.project.id)).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "policy.forbidden_paths"), "{audit:?}");
    assert_cleaned_up(&s, run.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_fails_with_the_build_command() {
    let tmp = tempfile::tempdir().unwrap();
    let config = DemoConfig { image: "paid/does-not-exist:never".into(), ..DemoConfig::default() };
    let s = setup(tmp.path(), config).await;
    let engine = s.engine().unwrap();
    engine.poll_project(s.project.id).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();

    assert_eq!(run.state, RunState::Failed);
    let failure = run.failure.clone().unwrap();
    assert_eq!(failure.code, "image_missing");
    assert_eq!(failure.step, RunState::Provisioning);
    assert!(failure.message.contains("paid/does-not-exist:never"), "{}", failure.message);
    assert!(failure.message.contains("scripts/build-images"), "{}", failure.message);
    assert_cleaned_up(&s, run.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclonable_repository_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-repo.git");
    let config = DemoConfig { clone_url: Some(missing.display().to_string()), ..DemoConfig::default() };
    let s = setup(tmp.path(), config).await;
    let engine = s.engine().unwrap();
    engine.poll_project(s.project.id).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();

    assert_eq!(run.state, RunState::Failed);
    let failure = run.failure.clone().unwrap();
    assert_eq!(failure.code, "clone_failed", "{failure:?}");
    assert!(failure.message.contains("no-such-repo.git"), "{}", failure.message);
    assert_cleaned_up(&s, run.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_failures_are_fed_back_until_the_agent_fixes_them() {
    let tmp = tempfile::tempdir().unwrap();
    // Fails verification on the first iteration; fixes only once it has feedback.
    let script = format!(
        "if [ \"$PAID_ITERATION\" = 1 ]; then echo 'first try: no change'; \
         else case \"$PAID_FEEDBACK\" in *'FAIL: add 2 3'*) {FIXER_SCRIPT};; *) exit 3;; esac; fi"
    );
    let s = setup(tmp.path(), DemoConfig { agent_script: script, ..DemoConfig::default() }).await;
    let engine = s.engine().unwrap();
    engine.poll_project(s.project.id).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.failure);
    assert_eq!(run.iterations, 2);
    let steps = s.store.steps(run.id).await.unwrap();
    let verifies: Vec<_> = steps.iter().filter(|st| st.step == RunState::Verifying).collect();
    assert_eq!(verifies.len(), 2);
    assert_eq!(verifies[0].output["passed"], false);
    assert_eq!(verifies[1].output["passed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_that_never_passes_stops_at_max_iterations() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = DemoConfig { agent_script: "echo 'I changed nothing'".into(), ..DemoConfig::default() };
    config.engine.max_iterations = 3;
    let s = setup(tmp.path(), config).await;
    let engine = s.engine().unwrap();
    engine.poll_project(s.project.id).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.iterations, 3);
    let failure = run.failure.unwrap();
    assert_eq!(failure.code, "verify_failed");
    assert!(failure.message.contains("after 3 iterations"), "{}", failure.message);
    assert!(failure.message.contains("FAIL: add 2 3"), "{}", failure.message);
    assert_cleaned_up(&s, run.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_agent_stops_it_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = DemoConfig { agent_script: "sleep 300".into(), ..DemoConfig::default() };
    config.engine.heartbeat_interval = std::time::Duration::from_millis(200);
    let s = setup(tmp.path(), config).await;
    let engine = s.engine().unwrap();
    engine.poll_project(s.project.id).await.unwrap();
    let worker = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run_once().await }
    });
    // Wait until the agent is running: its process is up in the sandbox.
    let run_id = loop {
        let runs = s.store.runs(&RunFilter::default()).await.unwrap();
        if let Some(r) = runs.iter().find(|r| r.state == RunState::RunningAgent) {
            break r.id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sandbox_runs(&s, run_id, "sleep 300").await {
        assert!(std::time::Instant::now() < deadline, "the agent's process never started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let asked = std::time::Instant::now();
    engine.cancel(run_id).await.unwrap();
    let run =
        tokio::time::timeout(std::time::Duration::from_secs(20), worker).await.unwrap().unwrap().unwrap().unwrap();
    let took = asked.elapsed();
    assert_eq!(run.state, RunState::Cancelled, "{:?}", run.failure);
    assert!(took < std::time::Duration::from_secs(5), "cancel took {took:?}");
    assert_cleaned_up(&s, run.id).await;
    assert!(s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty());
}

/// Credentials whose proxy reports the run over budget after its first
/// agent iteration, as `paid_llm::proxy::ProxyCredentials` does once a cap
/// refused a request.
struct OverBudget {
    revoked: std::sync::Mutex<Vec<paid_core::RunId>>,
}

#[async_trait::async_trait]
impl paid_core::RunCredentials for OverBudget {
    async fn issue(
        &self,
        _run: paid_core::RunId,
        _project: paid_core::ProjectId,
    ) -> paid_core::Result<paid_core::ProxyEndpoint> {
        Ok(paid_core::ProxyEndpoint {
            base_url: "http://proxy.invalid".into(),
            token: "run-token-for-test".to_string().into(),
        })
    }

    async fn revoke(&self, run: paid_core::RunId) -> paid_core::Result<()> {
        self.revoked.lock().unwrap().push(run);
        Ok(())
    }

    async fn budget_exceeded(&self, _run: paid_core::RunId) -> paid_core::Result<Option<String>> {
        Ok(Some("run cost cap of $0.01 reached".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_breach_ends_the_run_as_budget_exceeded_and_revokes_its_token() {
    let tmp = tempfile::tempdir().unwrap();
    // The agent sees the proxy endpoint and its run token, never a provider key.
    let script = "test \"$PAID_PROXY_URL\" = http://proxy.invalid && test \"$PAID_RUN_TOKEN\" = run-token-for-test";
    let s = setup(tmp.path(), DemoConfig { agent_script: script.into(), ..DemoConfig::default() }).await;
    let credentials = Arc::new(OverBudget { revoked: std::sync::Mutex::new(Vec::new()) });
    let engine = s
        .builder_with(s.engine_config(), Arc::new(paid_core::SystemClock))
        .unwrap()
        .credentials(credentials.clone())
        .build()
        .unwrap();
    engine.poll_project(s.project.id).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();
    assert_eq!(run.state, RunState::BudgetExceeded, "{:?}", run.failure);
    let failure = run.failure.unwrap();
    assert_eq!(failure.code, "budget_exceeded");
    assert!(failure.message.contains("cost cap"), "{}", failure.message);
    assert_eq!(*credentials.revoked.lock().unwrap(), vec![run.id]);
    assert!(s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty());
    assert_cleaned_up(&s, run.id).await;
}
