//! Planning runs end to end: a `paid-plan` issue on the fake forge is split
//! by a scripted model into sub-issues, created under the parent (sub-issue
//! API, or a task list where it is missing) and labeled for execution; a run
//! resumed after a crash creates no duplicates. SQLite and the real Docker
//! runtime (for cleanup) are used: these tests fail (never skip) without
//! Docker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use paid_agents::CommandAgent;
use paid_core::engine::{Engine, EngineConfig};
use paid_core::{
    ChatEvent, ChatRequest, ChatResponse, Clock, CommentRequest, Error, Forge, ForgeIssue, LabelChange, LlmProvider,
    ManualClock, PollRequest, PrFeedback, PrFeedbackRequest, PrRequest, PullRequest, RepoRef, RunKind, RunState,
    StepStatus, SubIssue, SubIssueRequest, Timestamp, Usage,
};
use paid_examples::demo::{DEMO_REPO, DemoConfig, DemoSetup};
use paid_github::fake::{FakeConfig, FakeGitHub, SubIssueSupport};
use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig};
use tokio::sync::Notify;

const OWNER: &str = DEMO_REPO.0;
const REPO: &str = DEMO_REPO.1;
/// The `paid-plan` issue the tests seed.
const PARENT: u64 = 2;

const PLAN: &str = r#"Here is the plan:
```json
{"sub_issues": [
  {"title": "Parse the config file", "body": "Read `calc.toml`.", "acceptance_criteria": ["invalid files are refused"]},
  {"title": "Add a --precision flag", "body": "Round results.", "acceptance_criteria": ["--precision 2 rounds to 2 places"]},
  {"title": "Document the options", "body": "", "acceptance_criteria": []}
]}
```"#;

/// A model that always answers with [`PLAN`] and counts its calls.
#[derive(Default)]
struct ScriptedPlanner {
    calls: AtomicUsize,
}

#[async_trait]
impl LlmProvider for ScriptedPlanner {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn complete(&self, req: &ChatRequest) -> paid_core::Result<ChatResponse> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let prompt = &req.messages[0].content;
        assert!(prompt.contains("Feature #2: Configurable calculator"), "{prompt}");
        assert!(prompt.contains("TRUSTED-FEATURE-TEXT"), "{prompt}");
        Ok(ChatResponse {
            content: PLAN.into(),
            tool_calls: Vec::new(),
            stop_reason: "end_turn".into(),
            usage: Usage { input: 100, output: 200, ..Usage::default() },
        })
    }

    async fn stream(&self, _req: &ChatRequest) -> paid_core::Result<BoxStream<'static, paid_core::Result<ChatEvent>>> {
        Err(Error::Backend { backend: "scripted", message: "no streaming".into(), retryable: false, source: None })
    }
}

/// A forge that hangs forever on the third sub-issue the first time, like a
/// worker that dies in the middle of the planning step.
struct CrashingForge {
    inner: Arc<dyn Forge>,
    armed: AtomicBool,
    hung: Arc<Notify>,
}

#[async_trait]
impl Forge for CrashingForge {
    async fn poll_triggered(&self, req: &PollRequest) -> paid_core::Result<Vec<ForgeIssue>> {
        self.inner.poll_triggered(req).await
    }
    async fn issue(&self, repo: &RepoRef, number: u64) -> paid_core::Result<ForgeIssue> {
        self.inner.issue(repo, number).await
    }
    async fn upsert_comment(&self, req: &CommentRequest) -> paid_core::Result<u64> {
        self.inner.upsert_comment(req).await
    }
    async fn set_labels(&self, req: &LabelChange) -> paid_core::Result<()> {
        self.inner.set_labels(req).await
    }
    async fn find_or_create_pr(&self, req: &PrRequest) -> paid_core::Result<PullRequest> {
        self.inner.find_or_create_pr(req).await
    }
    async fn create_sub_issue(&self, req: &SubIssueRequest) -> paid_core::Result<SubIssue> {
        if req.key.ends_with(":2") && self.armed.swap(false, Ordering::SeqCst) {
            self.hung.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.create_sub_issue(req).await
    }
    async fn pr_feedback(&self, req: &PrFeedbackRequest) -> paid_core::Result<PrFeedback> {
        self.inner.pr_feedback(req).await
    }
    async fn closed_issues(&self, repo: &RepoRef, since: Timestamp) -> paid_core::Result<Vec<ForgeIssue>> {
        self.inner.closed_issues(repo, since).await
    }
}

async fn setup(dir: &Path) -> DemoSetup {
    match DemoSetup::create(dir, DemoConfig::default()).await {
        Ok(s) => s,
        Err(e) => panic!("demo setup failed (is Docker running? CI={:?}): {e:#}", std::env::var("CI").ok()),
    }
}

fn seed_parent(github: &FakeGitHub) {
    github.add_issue(
        OWNER,
        REPO,
        PARENT,
        "Configurable calculator",
        "TRUSTED-FEATURE-TEXT: make the calculator configurable.",
        "demo-user",
        &["paid-plan"],
    );
}

fn forge(github: &FakeGitHub) -> Arc<dyn Forge> {
    Arc::new(
        GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).token("demo-token".to_string().into()))
            .unwrap(),
    )
}

fn engine(
    s: &DemoSetup,
    forge: Arc<dyn Forge>,
    worker: &str,
    clock: Arc<dyn Clock>,
    planner: Option<Arc<dyn LlmProvider>>,
) -> Engine {
    let mut builder = Engine::builder()
        .store(s.store.clone())
        .runtime(s.runtime.clone())
        .forge(forge)
        .workspaces(Arc::new(GitWorkspaces::new(GitWorkspacesConfig::new(s.dir.join("workspaces")))))
        .agent(Arc::new(CommandAgent::new("scripted-fixer", "true").unwrap()))
        .clock(clock)
        .config(EngineConfig {
            worker_id: worker.into(),
            lease: std::time::Duration::from_secs(30),
            ..EngineConfig::default()
        });
    if let Some(p) = planner {
        builder = builder.planner(p);
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_creates_linked_sub_issues_once_even_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path()).await;
    seed_parent(&s.github);
    let planner = Arc::new(ScriptedPlanner::default());
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let hung = Arc::new(Notify::new());
    let crashing =
        Arc::new(CrashingForge { inner: forge(&s.github), armed: AtomicBool::new(true), hung: hung.clone() });
    let before = s.github.issue_count(OWNER, REPO);

    // Worker A plans until it "dies" in the middle of creating sub-issues.
    let first = engine(&s, crashing, "worker-a", clock.clone(), Some(planner.clone()));
    let run = first.enqueue(s.project.id, PARENT).await.unwrap();
    assert_eq!(run.kind, RunKind::Plan);
    let claimed = first.claim_next().await.unwrap().unwrap();
    assert_eq!(claimed.id, run.id);
    assert_eq!(first.advance(run.id).await.unwrap().state, RunState::SelectingModel);
    assert_eq!(first.advance(run.id).await.unwrap().state, RunState::Planning);
    let task = tokio::spawn({
        let first = first.clone();
        async move { first.advance(run.id).await }
    });
    tokio::time::timeout(std::time::Duration::from_secs(30), hung.notified()).await.unwrap();
    task.abort();
    let _ = task.await;
    drop(first);
    assert_eq!(s.github.issue_count(OWNER, REPO), before + 2, "two sub-issues made it before the crash");
    let steps = s.store.steps(run.id).await.unwrap();
    let last = steps.last().unwrap();
    assert_eq!((last.step, last.status), (RunState::Planning, StepStatus::Started), "{steps:#?}");

    // Worker B resumes once A's lease expired, and finishes the plan.
    let second = engine(&s, forge(&s.github), "worker-b", clock.clone(), Some(planner.clone()));
    clock.advance(chrono::Duration::seconds(31));
    let resumed = second.claim_next().await.unwrap().expect("the expired lease is re-claimable");
    assert_eq!((resumed.id, resumed.state), (run.id, RunState::Planning));
    let done = second.drive(run.id).await.unwrap();
    assert_eq!(done.state, RunState::Succeeded, "{:?}", done.failure);
    assert_eq!(planner.calls.load(Ordering::SeqCst), 2, "the resumed step asked again");

    // Exactly three sub-issues, linked, labeled for execution.
    assert_eq!(s.github.issue_count(OWNER, REPO), before + 3, "no duplicates");
    let subs = s.github.sub_issues(OWNER, REPO, PARENT);
    assert_eq!(subs.len(), 3, "{subs:?}");
    for n in &subs {
        let labels = s.github.issue_labels(OWNER, REPO, *n);
        assert!(labels.contains(&"paid-build".to_string()), "#{n}: {labels:?}");
    }
    let body = s.github.issue_body(OWNER, REPO, subs[0]).unwrap();
    assert!(body.contains("Read `calc.toml`."), "{body}");
    assert!(body.contains("- [ ] invalid files are refused"), "{body}");
    assert!(body.contains("Part of #2"), "{body}");

    // The parent got one comment listing them and its labels moved.
    let comments = s.github.comments(OWNER, REPO, PARENT);
    assert_eq!(comments.len(), 1, "{comments:?}");
    for n in &subs {
        assert!(comments[0].body.contains(&format!("#{n} ")), "{}", comments[0].body);
    }
    let labels = s.github.issue_labels(OWNER, REPO, PARENT);
    assert!(labels.contains(&"paid-done".to_string()), "{labels:?}");
    assert!(!labels.contains(&"paid-in-progress".to_string()), "{labels:?}");
    assert!(!labels.contains(&"paid-plan".to_string()), "{labels:?}");

    // Plan runs record the model's usage, but no build outcome.
    assert_eq!(s.store.usage(run.id).await.unwrap().len(), 2);
    assert!(s.store.outcomes(s.project.id).await.unwrap().is_empty());

    // Planning never provisions: the plan run took no branch or sandbox.
    assert_eq!(done.branch, None);
    let states: Vec<RunState> = s.store.steps(run.id).await.unwrap().iter().map(|st| st.step).collect();
    assert!(!states.contains(&RunState::Provisioning), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_configured_without_sub_issues_makes_the_plan_a_task_list() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path()).await;
    let github = FakeGitHub::start_with(FakeConfig::new().sub_issues(SubIssueSupport::NotFound)).await.unwrap();
    seed_parent(&github);
    let planner = Arc::new(ScriptedPlanner::default());
    // Sub-issues are a capability the operator configures, never guessed from a 404.
    let config = GitHubConfig::new()
        .base_uri(github.base_url())
        .token("demo-token".to_string().into())
        .capabilities(paid_github::Capabilities::new().sub_issues(false));
    let forge: Arc<dyn Forge> = Arc::new(GitHubForge::new(config).unwrap());
    let engine = engine(&s, forge, "worker", Arc::new(paid_core::SystemClock), Some(planner.clone()));
    engine.enqueue(s.project.id, PARENT).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.failure);

    assert!(github.sub_issues(OWNER, REPO, PARENT).is_empty());
    let parent = github.issue_body(OWNER, REPO, PARENT).unwrap();
    assert!(parent.starts_with("TRUSTED-FEATURE-TEXT"), "{parent}");
    let tasks: Vec<&str> = parent.lines().filter(|l| l.starts_with("- [ ] #")).collect();
    assert_eq!(tasks.len(), 3, "{parent}");
    assert!(tasks[1].ends_with("Add a --precision flag"), "{parent}");
    assert_eq!(github.issue_count(OWNER, REPO), 4);
    // Advancing the finished run again changes nothing.
    assert!(engine.run_once().await.unwrap().is_none());
    assert_eq!(github.issue_count(OWNER, REPO), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_run_without_a_planner_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path()).await;
    seed_parent(&s.github);
    let engine = engine(&s, forge(&s.github), "worker", Arc::new(paid_core::SystemClock), None);
    engine.enqueue(s.project.id, PARENT).await.unwrap();
    let run = engine.run_until_idle().await.unwrap().pop().unwrap();
    assert_eq!(run.state, RunState::Failed);
    let failure = run.failure.unwrap();
    assert_eq!(failure.step, RunState::Planning);
    assert_eq!(failure.code, "invalid_input", "{failure:?}");
    assert!(failure.message.contains("EngineBuilder::planner"), "{}", failure.message);
    let labels = s.github.issue_labels(OWNER, REPO, PARENT);
    assert!(labels.contains(&"paid-failed".to_string()), "{labels:?}");
}
