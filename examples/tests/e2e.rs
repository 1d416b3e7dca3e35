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

/// Polls `probe` every 50 ms until it gives `Ok`, for at most `limit`; then
/// fails naming `what` and the last thing `probe` saw (its `Err`).
async fn wait_for<T, F, Fut>(what: &str, limit: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(seen) if std::time::Instant::now() >= deadline => panic!("{what}: not within {limit:?}; saw {seen}"),
            // not an assertion: the poll interval of a deadline-bounded wait
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
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
    let mut states = vec![run.state];
    while states.last() != Some(&RunState::OpeningPr) {
        // One step per state and one agent iteration: far fewer than this.
        assert!(states.len() < 30, "never reached opening_pr; went through {states:?}");
        let state = first.advance(run.id).await.unwrap().state;
        states.push(state);
        assert!(!state.is_terminal(), "ended early; went through {states:?}");
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
    let minute = std::time::Duration::from_secs(60);
    let run_id = wait_for("a run in running_agent", minute, || async {
        let runs = s.store.runs(&RunFilter::default()).await.unwrap();
        match runs.iter().find(|r| r.state == RunState::RunningAgent) {
            Some(r) => Ok(r.id),
            None => Err(format!("runs {:?}", runs.iter().map(|r| (r.state, &r.failure)).collect::<Vec<_>>())),
        }
    })
    .await;
    wait_for("the agent's `sleep 300` in its sandbox", minute, || async {
        if sandbox_runs(&s, run_id, "sleep 300").await {
            return Ok(());
        }
        let run = s.store.run(run_id).await.unwrap();
        let sandboxes = s.runtime.list_managed().await.unwrap();
        Err(format!("run in {} ({:?}), sandboxes {sandboxes:?}", run.state, run.failure))
    })
    .await;
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
/// refused a request. It hands out `token` as the run token.
struct OverBudget {
    token: &'static str,
    revoked: std::sync::Mutex<Vec<paid_core::RunId>>,
}

#[async_trait::async_trait]
impl paid_core::RunCredentials for OverBudget {
    async fn issue(
        &self,
        _run: paid_core::RunId,
        _project: paid_core::ProjectId,
        _valid_for: std::time::Duration,
    ) -> paid_core::Result<paid_core::ProxyEndpoint> {
        Ok(paid_core::ProxyEndpoint { base_url: "http://proxy.invalid".into(), token: self.token.to_string().into() })
    }

    async fn revoke(&self, run: paid_core::RunId) -> paid_core::Result<()> {
        self.revoked.lock().unwrap().push(run);
        Ok(())
    }

    async fn budget_exceeded(&self, _run: paid_core::RunId) -> paid_core::Result<Option<String>> {
        Ok(Some("run cost cap of $0.01 reached".into()))
    }
}

/// The agent's check of its environment: the proxy endpoint and the run
/// token it expects, and no provider key. It prints `proxy-env: ok` and
/// exits 0, or prints `proxy-env: wrong` with what it saw and exits 42.
const PROXY_ENV_CHECK: &str = "if [ \"$PAID_PROXY_URL\" = http://proxy.invalid ] \
     && [ \"$PAID_RUN_TOKEN\" = run-token-for-test ] \
     && [ -z \"${OPENAI_API_KEY:-}${ANTHROPIC_API_KEY:-}\" ]; \
     then echo 'proxy-env: ok'; \
     else echo \"proxy-env: wrong: url=$PAID_PROXY_URL token of ${#PAID_RUN_TOKEN} chars\"; exit 42; fi";

/// Runs issue 1 with [`PROXY_ENV_CHECK`] as the agent and credentials
/// handing out `token`, which report the run over budget: returns the run,
/// its `running_agent` journal output and its log.
async fn run_over_budget(token: &'static str) -> (paid_core::Run, serde_json::Value, String) {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), DemoConfig { agent_script: PROXY_ENV_CHECK.into(), ..DemoConfig::default() }).await;
    let credentials = Arc::new(OverBudget { token, revoked: std::sync::Mutex::new(Vec::new()) });
    let engine = s
        .builder_with(s.engine_config(), Arc::new(paid_core::SystemClock))
        .unwrap()
        .credentials(credentials.clone())
        .build()
        .unwrap();
    engine.poll_project(s.project.id).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();
    // Whatever the agent saw, the breach ends the run: the state alone
    // cannot tell whether the environment was right.
    assert_eq!(run.state, RunState::BudgetExceeded, "{:?}", run.failure);
    let failure = run.failure.clone().unwrap();
    assert_eq!(failure.code, "budget_exceeded");
    assert!(failure.message.contains("cost cap"), "{}", failure.message);
    assert_eq!(*credentials.revoked.lock().unwrap(), vec![run.id]);
    assert!(s.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty());
    assert_cleaned_up(&s, run.id).await;

    let steps = s.store.steps(run.id).await.unwrap();
    let agent: Vec<_> = steps.iter().filter(|st| st.step == RunState::RunningAgent).collect();
    assert_eq!(agent.len(), 1, "one agent iteration: {steps:#?}");
    assert_eq!(agent[0].status, StepStatus::Done, "{:#?}", agent[0]);
    let log: String = s.store.logs(run.id, 0).await.unwrap().iter().map(|l| l.text.as_str()).collect();
    (run, agent[0].output.clone(), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_breach_ends_the_run_as_budget_exceeded_and_revokes_its_token() {
    // The agent sees the proxy endpoint and its run token, never a provider key.
    let (_, agent, log) = run_over_budget("run-token-for-test").await;
    let outcome = &agent["outcome"];
    assert_eq!(outcome["exit"]["kind"], "completed", "the agent's check failed: {outcome:#}\n{log}");
    assert_eq!(outcome["summary"], "proxy-env: ok", "{outcome:#}");
    // Lines the agent printed (the log also echoes the script itself).
    assert!(log.lines().any(|l| l == "proxy-env: ok"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("proxy-env: wrong")), "{log}");
}

/// The negative control of the test above: with another token the same
/// check fails, visibly, though the run ends the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_proxy_check_fails_visibly_on_a_wrong_token() {
    let (_, agent, log) = run_over_budget("some-other-token").await;
    let outcome = &agent["outcome"];
    assert_eq!(outcome["exit"]["kind"], "failed", "{outcome:#}\n{log}");
    let message = outcome["exit"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("exited with 42"), "{outcome:#}");
    assert_eq!(outcome["summary"], "proxy-env: wrong: url=http://proxy.invalid token of 16 chars", "{outcome:#}");
    assert!(log.lines().any(|l| l.starts_with("proxy-env: wrong")), "{log}");
    assert!(!log.lines().any(|l| l == "proxy-env: ok"), "{log}");
}
