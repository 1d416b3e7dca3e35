//! Shared parts of the engine tests: the SQLite store, the instant forge,
//! and a runtime, workspaces and agent that do just enough real work for
//! candidates to differ (files written into worktrees, a verify command
//! that checks for a `PASS` file).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use paid_core::engine::{EngineBuilder, EngineConfig, RetryConfig};
use paid_core::testing::instant::{self, InstantBackends};
use paid_core::{
    Agent, AgentContext, AgentExit, AgentOutcome, Clock, CommentRequest, CommitRequest, ExecEvent, ExecExit,
    ExecRequest, Forge, ForgeIssue, LabelChange, PollRequest, PrRequest, Project, ProjectId, PullRequest, RepoRef,
    Result, RunId, SandboxHandle, SandboxInfo, SandboxRuntime, SandboxSpec, Store, SystemClock, Workspaces, Worktree,
    WorktreeRequest,
};
use paid_store_sqlite::SqliteStore;

/// The agent kind of [`ScriptedAgent`].
pub const AGENT: &str = "scripted";

/// What the scripted agent does for a model.
#[derive(Debug, Clone)]
pub struct Behavior {
    /// Files it writes.
    pub files: Vec<String>,
    /// Whether it also writes `PASS` (what the verify command checks).
    pub passes: bool,
    /// Cost it reports per iteration.
    pub cost_micros: i64,
    /// Fail instead.
    pub fails: bool,
    /// Take this long first.
    pub delay: Option<Duration>,
    /// The summary it reports (default: `{model} made a change.`).
    pub summary: Option<String>,
    /// What it says when it fails (default: `gave up`).
    pub failure: Option<String>,
}

impl Behavior {
    pub fn new(files: &[&str], passes: bool, cost_micros: i64) -> Self {
        Self {
            files: files.iter().map(|f| f.to_string()).collect(),
            passes,
            cost_micros,
            fails: false,
            delay: None,
            summary: None,
            failure: None,
        }
    }
}

/// What the agent was asked.
#[derive(Debug, Clone)]
pub struct Call {
    pub run_id: RunId,
    pub model: String,
    pub prompt: String,
    pub iteration: u32,
}

/// An agent that writes files by model and records its prompts.
#[derive(Default)]
pub struct ScriptedAgent {
    pub behaviors: HashMap<String, Behavior>,
    pub calls: Mutex<Vec<Call>>,
}

impl ScriptedAgent {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Agent for ScriptedAgent {
    fn kind(&self) -> &str {
        AGENT
    }

    async fn run(&self, ctx: AgentContext<'_>) -> Result<AgentOutcome> {
        let model = ctx.model.unwrap_or_default().to_string();
        self.calls.lock().unwrap().push(Call {
            run_id: ctx.run_id,
            model: model.clone(),
            prompt: ctx.prompt.to_string(),
            iteration: ctx.iteration,
        });
        let behavior = self.behaviors.get(&model).cloned().unwrap_or_else(|| Behavior::new(&["fix.txt"], true, 1_000));
        if let Some(delay) = behavior.delay {
            tokio::select! {
                // not an assertion: the fake agent's scripted working time (cancellable)
                () = tokio::time::sleep(delay) => {}
                () = ctx.cancel.cancelled() => return Err(paid_core::Error::Cancelled),
            }
        }
        if behavior.fails {
            return Ok(AgentOutcome {
                exit: AgentExit::Failed {
                    class: paid_core::FailureClass::Permanent,
                    message: behavior.failure.clone().unwrap_or_else(|| "gave up".into()),
                },
                summary: String::new(),
                usage: None,
                cost_micros: Some(behavior.cost_micros),
            });
        }
        let mut files = behavior.files.clone();
        if behavior.passes {
            files.push("PASS".into());
        }
        for f in files {
            ctx.sandbox.exec(ExecRequest::shell(format!("write {f}"))).await?;
        }
        Ok(AgentOutcome {
            exit: AgentExit::Completed,
            summary: behavior.summary.clone().unwrap_or_else(|| format!("{model} made a change.")),
            usage: None,
            cost_micros: Some(behavior.cost_micros),
        })
    }
}

/// A runtime whose `write F` creates `F` in the sandbox's worktree and whose
/// `check` passes when `PASS` exists there. Tracks live sandboxes.
#[derive(Default)]
pub struct FileRuntime {
    next: AtomicU64,
    live: Mutex<BTreeMap<String, (PathBuf, RunId, paid_core::Timestamp)>>,
    pub created: AtomicU64,
}

impl FileRuntime {
    pub fn live(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    /// The runs of the live sandboxes, one entry per sandbox, sorted.
    pub fn live_runs(&self) -> Vec<RunId> {
        let mut runs: Vec<RunId> = self.live.lock().unwrap().values().map(|(_, run, _)| *run).collect();
        runs.sort();
        runs
    }
}

#[async_trait]
impl SandboxRuntime for FileRuntime {
    async fn ensure_image(&self, _image: &str) -> Result<()> {
        Ok(())
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        let id = format!("sbx-{}", self.next.fetch_add(1, Ordering::SeqCst));
        self.created.fetch_add(1, Ordering::SeqCst);
        self.live.lock().unwrap().insert(id.clone(), (spec.worktree.clone(), spec.run_id, SystemClock.now()));
        Ok(SandboxHandle { id, mount_at: spec.mount_at.clone() })
    }

    async fn exec(&self, sandbox: &SandboxHandle, req: ExecRequest) -> Result<BoxStream<'static, Result<ExecEvent>>> {
        let dir = self.live.lock().unwrap().get(&sandbox.id).map(|(p, _, _)| p.clone());
        let Some(dir) = dir else {
            return Err(paid_core::Error::NotFound { entity: "sandbox", id: sandbox.id.clone() });
        };
        let script = req.cmd.last().cloned().unwrap_or_default();
        let code = if let Some(file) = script.strip_prefix("write ") {
            std::fs::write(dir.join(file), "x\n").unwrap();
            0
        } else if script == "check" {
            if dir.join("PASS").exists() { 0 } else { 1 }
        } else {
            0
        };
        let out = if code == 0 { "ok\n" } else { "FAIL: no PASS file\n" };
        Ok(Box::pin(stream::iter([Ok(ExecEvent::Stdout(Bytes::from(out))), Ok(ExecEvent::Exit(ExecExit::Code(code)))])))
    }

    async fn is_running(&self, sandbox: &SandboxHandle) -> Result<bool> {
        Ok(self.live.lock().unwrap().contains_key(&sandbox.id))
    }

    async fn stop(&self, _sandbox: &SandboxHandle) -> Result<()> {
        Ok(())
    }

    async fn remove(&self, sandbox: &SandboxHandle) -> Result<()> {
        self.live.lock().unwrap().remove(&sandbox.id);
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<SandboxInfo>> {
        Ok(self
            .live
            .lock()
            .unwrap()
            .iter()
            .map(|(id, (_, run, created))| SandboxInfo {
                id: id.clone(),
                run_id: Some(run.to_string()),
                project_id: None,
                created_at: Some(*created),
                running: true,
            })
            .collect())
    }
}

/// The instant workspaces, with changed paths read from the worktree
/// directory (the files the agent wrote).
pub struct FileWorkspaces {
    pub inner: Arc<instant::InstantWorkspaces>,
}

#[async_trait]
impl Workspaces for FileWorkspaces {
    async fn ensure_mirror(&self, project: &Project) -> Result<()> {
        self.inner.ensure_mirror(project).await
    }

    async fn create_worktree(&self, req: &WorktreeRequest<'_>) -> Result<Worktree> {
        self.inner.create_worktree(req).await
    }

    async fn commit_all(&self, req: &CommitRequest<'_>) -> Result<Option<String>> {
        self.inner.commit_all(req).await
    }

    async fn changed_paths(&self, worktree: &Worktree) -> Result<Vec<String>> {
        let mut paths: Vec<String> = std::fs::read_dir(&worktree.path)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        paths.sort();
        Ok(paths)
    }

    async fn rebase(
        &self,
        project: &Project,
        worktree: &Worktree,
    ) -> Result<paid_core::ports::workspaces::RebaseOutcome> {
        self.inner.rebase(project, worktree).await
    }

    async fn push(&self, project: &Project, worktree: &Worktree) -> Result<()> {
        self.inner.push(project, worktree).await
    }

    async fn remove(&self, worktree: &Worktree) -> Result<()> {
        self.inner.remove(worktree).await
    }

    async fn sweep_orphans(&self, keep: &[RunId], older_than: chrono::Duration) -> Result<Vec<PathBuf>> {
        self.inner.sweep_orphans(keep, older_than).await
    }
}

/// The instant forge, keeping the PR bodies and comments it was sent.
pub struct CapturingForge {
    pub inner: Arc<instant::InstantForge>,
    pub prs: Mutex<Vec<PrRequest>>,
    pub comments: Mutex<Vec<CommentRequest>>,
    /// What `pr_feedback` answers for every PR.
    pub feedback: Mutex<Option<paid_core::PrFeedback>>,
    /// The feedback requests it was sent.
    pub feedback_requests: Mutex<Vec<paid_core::PrFeedbackRequest>>,
}

#[async_trait]
impl Forge for CapturingForge {
    async fn poll_triggered(&self, req: &PollRequest) -> Result<Vec<ForgeIssue>> {
        self.inner.poll_triggered(req).await
    }

    async fn issue(&self, repo: &RepoRef, number: u64) -> Result<ForgeIssue> {
        self.inner.issue(repo, number).await
    }

    async fn upsert_comment(&self, req: &CommentRequest) -> Result<u64> {
        self.comments.lock().unwrap().push(req.clone());
        self.inner.upsert_comment(req).await
    }

    async fn set_labels(&self, req: &LabelChange) -> Result<()> {
        self.inner.set_labels(req).await
    }

    async fn find_or_create_pr(&self, req: &PrRequest) -> Result<PullRequest> {
        self.prs.lock().unwrap().push(req.clone());
        self.inner.find_or_create_pr(req).await
    }

    async fn pr_feedback(&self, req: &paid_core::PrFeedbackRequest) -> Result<paid_core::PrFeedback> {
        self.feedback_requests.lock().unwrap().push(req.clone());
        let canned = self.feedback.lock().unwrap().clone();
        match canned {
            Some(f) => Ok(f),
            None => self.inner.pr_feedback(req).await,
        }
    }
}

/// A store, backends and a project, ready for engines.
pub struct World {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub backends: InstantBackends,
    pub runtime: Arc<FileRuntime>,
    pub workspaces: Arc<FileWorkspaces>,
    pub agent: Arc<ScriptedAgent>,
    pub forge: Arc<CapturingForge>,
    pub project: Project,
}

impl World {
    pub async fn new(behaviors: &[(&str, Behavior)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("paid.db")).unwrap());
        let backends = InstantBackends::recording(store.clone(), dir.path().join("worktrees"));
        let mut project = instant::project(ProjectId(uuid::Uuid::now_v7()), "widgets", 4, SystemClock.now());
        project.agent = AGENT.into();
        project.verify = vec!["check".into()];
        store.put_project(&project).await.unwrap();
        let agent = Arc::new(ScriptedAgent {
            behaviors: behaviors.iter().map(|(m, b)| (m.to_string(), b.clone())).collect(),
            calls: Mutex::default(),
        });
        Self {
            runtime: Arc::new(FileRuntime::default()),
            workspaces: Arc::new(FileWorkspaces { inner: backends.workspaces.clone() }),
            forge: Arc::new(CapturingForge {
                inner: backends.forge.clone(),
                prs: Mutex::default(),
                comments: Mutex::default(),
                feedback: Mutex::default(),
                feedback_requests: Mutex::default(),
            }),
            dir,
            store,
            backends,
            agent,
            project,
        }
    }

    /// A builder with these parts, worker `worker`, fast retries.
    pub fn builder(&self, worker: &str) -> EngineBuilder {
        EngineBuilder::new()
            .store(self.store.clone())
            .runtime(self.runtime.clone())
            .workspaces(self.workspaces.clone())
            .forge(self.forge.clone())
            .agent(self.agent.clone())
            .config(EngineConfig {
                worker_id: worker.into(),
                max_iterations: 2,
                retry: RetryConfig {
                    max_retries: 1,
                    min_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(5),
                },
                ..EngineConfig::default()
            })
    }

    /// Branches pushed (recorded by the instant workspaces).
    pub async fn pushed(&self) -> Vec<String> {
        instant::effects(&*self.store, self.project.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == instant::EffectKind::Push)
            .map(|e| e.key)
            .collect()
    }

    /// Worktree directories left.
    pub fn worktrees_left(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("worktrees"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}
