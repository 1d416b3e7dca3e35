//! Instant, in-process backends (feature `testing`): a sandbox runtime,
//! workspaces, a forge and an agent that do no real work, so the engine and
//! the store can be driven through thousands of runs in seconds.
//!
//! What they do instead is *record*: every side effect (a branch push, a PR
//! creation, an issue comment) is an [`AuditEvent`] written to the store the
//! engine uses, in the same database, by whichever worker process performed
//! it. A test then reads the trail back with [`effects`] and proves
//! exactly-once: each idempotency key (branch, PR head, comment marker) was
//! *created* once, and, with no failures injected, *invoked* once.
//!
//! The forge and workspaces are idempotent the way the real ones are: a
//! second push of a branch changes nothing, a second `find_or_create_pr` for
//! a head finds the first PR, a second comment with a marker edits the first
//! one. They look up earlier effects in the store's audit trail.
//!
//! ```no_run
//! # async fn example(store: std::sync::Arc<dyn paid_core::Store>, project: paid_core::ProjectId)
//! # -> paid_core::Result<()> {
//! use std::time::Duration;
//! use paid_core::testing::instant::{self, InstantBackends};
//!
//! let backends = InstantBackends::recording(store.clone(), std::env::temp_dir().join("paid-instant"))
//!     .slow_issue(7, Duration::from_secs(30)); // the agent dawdles on issue #7
//! let engine = backends.engine_builder().store(store.clone()).build()?;
//! engine.run_until_idle().await?;
//! let trail = instant::effects(&*store, project).await?;
//! assert!(trail.iter().all(|e| e.created), "nothing was done twice");
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Duration as ChronoDuration;
use futures::stream::{self, BoxStream};
use serde::{Deserialize, Serialize};

use crate::engine::EngineBuilder;
use crate::ports::forge::PollRequest;
use crate::{
    Agent, AgentContext, AgentExit, AgentOutcome, AuditEvent, Clock, CommentRequest, CommitRequest, Error, ExecEvent,
    ExecExit, ExecRequest, Forge, ForgeIssue, IssueState, LabelChange, PrRequest, Project, ProjectId, PullRequest,
    RepoRef, Result, RunId, SandboxHandle, SandboxInfo, SandboxRuntime, SandboxSpec, Store, SystemClock, Workspaces,
    Worktree, WorktreeRequest,
};

/// The agent kind [`InstantAgent`] registers under; projects name it.
pub const AGENT_KIND: &str = "instant";

/// The audit actor of every recorded effect.
pub const ACTOR: &str = "instant";

/// A side effect the instant backends perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    /// A branch pushed to the remote (key: the branch).
    Push,
    /// A pull request found or created (key: the head branch).
    PullRequest,
    /// An issue comment created or edited (key: its hidden marker).
    Comment,
    /// The agent started an iteration (key: the run id). Not a side effect
    /// on the forge; recorded to show where a run resumed.
    Agent,
}

impl EffectKind {
    /// The audit action: `effect.push`, `effect.pull_request`, ...
    pub fn action(self) -> &'static str {
        match self {
            EffectKind::Push => "effect.push",
            EffectKind::PullRequest => "effect.pull_request",
            EffectKind::Comment => "effect.comment",
            EffectKind::Agent => "effect.agent",
        }
    }

    fn parse(action: &str) -> Option<Self> {
        [EffectKind::Push, EffectKind::PullRequest, EffectKind::Comment, EffectKind::Agent]
            .into_iter()
            .find(|k| k.action() == action)
    }
}

/// One recorded invocation of a side effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// What it was.
    pub kind: EffectKind,
    /// Its idempotency key.
    pub key: String,
    /// Whether this invocation created it (false: it existed already and
    /// the call was a no-op, or an edit).
    pub created: bool,
    /// A unique id of the invocation, so a retried audit write is not
    /// counted twice.
    pub event: String,
    /// The worker (process id) that performed it.
    pub pid: u32,
}

/// Invocations and creations of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCount {
    /// Calls that reached the backend.
    pub invoked: usize,
    /// Calls that created the thing.
    pub created: usize,
}

/// The effects recorded for `project`, oldest first, each invocation once.
pub async fn effects(store: &dyn Store, project: ProjectId) -> Result<Vec<Effect>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for event in store.audit_events(Some(project)).await? {
        if event.actor != ACTOR {
            continue;
        }
        let Some(kind) = EffectKind::parse(&event.action) else { continue };
        let event_id = event.details.get("event").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        if !seen.insert(event_id.clone()) {
            continue;
        }
        out.push(Effect {
            kind,
            key: event.subject,
            created: event.details.get("created").and_then(|v| v.as_bool()).unwrap_or(false),
            event: event_id,
            pid: event.details.get("pid").and_then(|v| v.as_u64()).and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        });
    }
    Ok(out)
}

/// Counts effects per kind and key.
pub fn count(effects: &[Effect]) -> BTreeMap<(EffectKind, String), KeyCount> {
    let mut counts: BTreeMap<(EffectKind, String), KeyCount> = BTreeMap::new();
    for e in effects {
        let c = counts.entry((e.kind, e.key.clone())).or_default();
        c.invoked += 1;
        c.created += usize::from(e.created);
    }
    counts
}

/// Writes effects to the store's audit trail and looks earlier ones up.
/// Without a store (benchmarks), nothing is recorded and every effect
/// counts as new.
#[derive(Clone)]
struct Recorder {
    store: Option<Arc<dyn Store>>,
    clock: Arc<dyn Clock>,
    projects: Arc<Mutex<HashMap<RepoRef, ProjectId>>>,
}

impl Recorder {
    async fn project_of(&self, repo: &RepoRef) -> Result<Option<ProjectId>> {
        let Some(store) = &self.store else { return Ok(None) };
        if let Some(id) = self.projects.lock().unwrap_or_else(|p| p.into_inner()).get(repo) {
            return Ok(Some(*id));
        }
        let found = store.projects().await?.into_iter().find(|p| &p.repo == repo).map(|p| p.id);
        if let Some(id) = found {
            self.projects.lock().unwrap_or_else(|p| p.into_inner()).insert(repo.clone(), id);
        }
        Ok(found)
    }

    /// Whether `key` was created before, and the details it was created with.
    async fn existing(
        &self,
        project: Option<ProjectId>,
        kind: EffectKind,
        key: &str,
    ) -> Result<Option<serde_json::Value>> {
        let (Some(store), Some(project)) = (&self.store, project) else { return Ok(None) };
        Ok(store
            .audit_events(Some(project))
            .await?
            .into_iter()
            .find(|e| {
                e.actor == ACTOR
                    && e.action == kind.action()
                    && e.subject == key
                    && e.details.get("created").and_then(|v| v.as_bool()) == Some(true)
            })
            .map(|e| e.details))
    }

    async fn record(
        &self,
        project: Option<ProjectId>,
        kind: EffectKind,
        key: &str,
        created: bool,
        extra: serde_json::Value,
    ) -> Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        let mut details = serde_json::json!({
            "created": created,
            "event": uuid::Uuid::now_v7().to_string(),
            "pid": std::process::id(),
        });
        if let (Some(d), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra) {
            d.extend(extra);
        }
        store
            .audit(&AuditEvent {
                at: self.clock.now(),
                project_id: project,
                actor: ACTOR.into(),
                action: kind.action().into(),
                subject: key.into(),
                details,
            })
            .await
    }
}

/// The four instant backends, sharing one recorder.
#[derive(Clone)]
pub struct InstantBackends {
    /// The sandbox runtime.
    pub runtime: Arc<InstantRuntime>,
    /// The workspaces.
    pub workspaces: Arc<InstantWorkspaces>,
    /// The forge.
    pub forge: Arc<InstantForge>,
    /// The agent.
    pub agent: Arc<InstantAgent>,
}

impl std::fmt::Debug for InstantBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstantBackends").field("agent", &self.agent).finish_non_exhaustive()
    }
}

impl InstantBackends {
    /// Backends that record every effect in `store`'s audit trail (use the
    /// store the engine uses), with worktrees as empty directories under
    /// `worktrees`.
    pub fn recording(store: Arc<dyn Store>, worktrees: impl Into<PathBuf>) -> Self {
        Self::build(Some(store), worktrees.into())
    }

    /// Backends that record nothing: for measuring the engine alone.
    pub fn unrecorded(worktrees: impl Into<PathBuf>) -> Self {
        Self::build(None, worktrees.into())
    }

    fn build(store: Option<Arc<dyn Store>>, worktrees: PathBuf) -> Self {
        let recorder = Recorder { store, clock: Arc::new(SystemClock), projects: Arc::new(Mutex::new(HashMap::new())) };
        Self {
            runtime: Arc::new(InstantRuntime),
            workspaces: Arc::new(InstantWorkspaces { root: worktrees, recorder: recorder.clone() }),
            forge: Arc::new(InstantForge { recorder: recorder.clone() }),
            agent: Arc::new(InstantAgent { delays: HashMap::new(), recorder }),
        }
    }

    /// Makes the agent take `delay` on issue `number` (to hold a run in
    /// `running_agent`, e.g. to kill its worker there).
    pub fn slow_issue(mut self, number: u64, delay: Duration) -> Self {
        let agent = Arc::make_mut(&mut self.agent);
        agent.delays.insert(number, delay);
        self
    }

    /// An engine builder with these backends and the agent registered; add
    /// the store (and config) and build.
    pub fn engine_builder(&self) -> EngineBuilder {
        EngineBuilder::new()
            .runtime(self.runtime.clone())
            .workspaces(self.workspaces.clone())
            .forge(self.forge.clone())
            .agent(self.agent.clone())
    }
}

/// A project set up for the instant backends: agent [`AGENT_KIND`], no
/// verify commands, `max_concurrent_runs` as given.
pub fn project(id: ProjectId, name: &str, max_concurrent_runs: u32, now: crate::Timestamp) -> Project {
    Project {
        agent: AGENT_KIND.into(),
        allowed_authors: vec!["octocat".into()],
        max_concurrent_runs,
        ..Project::new(id, RepoRef::new("instant", name), format!("https://instant.invalid/instant/{name}.git"), now)
    }
}

/// A runtime whose sandboxes are names and whose commands succeed at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstantRuntime;

#[async_trait]
impl SandboxRuntime for InstantRuntime {
    async fn ensure_image(&self, _image: &str) -> Result<()> {
        Ok(())
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        Ok(SandboxHandle { id: format!("instant-{}", spec.run_id), mount_at: spec.mount_at.clone() })
    }

    async fn exec(&self, _sandbox: &SandboxHandle, req: ExecRequest) -> Result<BoxStream<'static, Result<ExecEvent>>> {
        let out = format!("instant: {}\n", req.cmd.join(" "));
        Ok(Box::pin(stream::iter([Ok(ExecEvent::Stdout(Bytes::from(out))), Ok(ExecEvent::Exit(ExecExit::Code(0)))])))
    }

    async fn is_running(&self, _sandbox: &SandboxHandle) -> Result<bool> {
        Ok(true)
    }

    async fn stop(&self, _sandbox: &SandboxHandle) -> Result<()> {
        Ok(())
    }

    async fn remove(&self, _sandbox: &SandboxHandle) -> Result<()> {
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<SandboxInfo>> {
        Ok(Vec::new())
    }
}

/// Workspaces whose worktrees are empty directories, whose commits change
/// `src/lib.rs`, and whose pushes are recorded effects.
#[derive(Clone)]
pub struct InstantWorkspaces {
    root: PathBuf,
    recorder: Recorder,
}

impl std::fmt::Debug for InstantWorkspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstantWorkspaces").field("root", &self.root).finish_non_exhaustive()
    }
}

impl InstantWorkspaces {
    /// Where worktrees go.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn io_error(what: String, e: std::io::Error) -> Error {
    Error::Backend { backend: "instant", message: format!("{what}: {e}"), retryable: false, source: Some(Box::new(e)) }
}

#[async_trait]
impl Workspaces for InstantWorkspaces {
    async fn ensure_mirror(&self, _project: &Project) -> Result<()> {
        Ok(())
    }

    async fn create_worktree(&self, req: &WorktreeRequest<'_>) -> Result<Worktree> {
        let path = self.root.join(req.run_id.to_string());
        tokio::fs::create_dir_all(&path).await.map_err(|e| io_error(format!("create {}", path.display()), e))?;
        Ok(Worktree { run_id: req.run_id, path, branch: req.branch.to_string(), base_commit: "0".repeat(40) })
    }

    async fn commit_all(&self, req: &CommitRequest<'_>) -> Result<Option<String>> {
        Ok(Some(format!("instant-{}", req.worktree.run_id)))
    }

    async fn changed_paths(&self, _worktree: &Worktree) -> Result<Vec<String>> {
        Ok(vec!["src/lib.rs".into()])
    }

    /// The instant remote's default branch never moves: always up to date.
    async fn rebase(&self, _project: &Project, _worktree: &Worktree) -> Result<crate::RebaseOutcome> {
        Ok(crate::RebaseOutcome::UpToDate)
    }

    async fn push(&self, project: &Project, worktree: &Worktree) -> Result<()> {
        let r = &self.recorder;
        let created = r.existing(Some(project.id), EffectKind::Push, &worktree.branch).await?.is_none();
        r.record(
            Some(project.id),
            EffectKind::Push,
            &worktree.branch,
            created,
            serde_json::json!({ "run": worktree.run_id.to_string() }),
        )
        .await
    }

    async fn remove(&self, worktree: &Worktree) -> Result<()> {
        match tokio::fs::remove_dir_all(&worktree.path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(format!("remove {}", worktree.path.display()), e)),
        }
    }

    /// Removes the worktree directories (named by run id) of runs outside
    /// `keep` whose modification time is at least `older_than` ago.
    async fn sweep_orphans(&self, keep: &[RunId], older_than: ChronoDuration) -> Result<Vec<PathBuf>> {
        let min_age = older_than.to_std().unwrap_or(Duration::ZERO);
        let keep: std::collections::HashSet<String> = keep.iter().map(RunId::to_string).collect();
        let list = |e| io_error(format!("list {}", self.root.display()), e);
        let mut entries = match tokio::fs::read_dir(&self.root).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(list(e)),
        };
        let mut removed = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(list)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<uuid::Uuid>().is_err() || keep.contains(&name) {
                continue;
            }
            let path = entry.path();
            let meta = entry.metadata().await.map_err(|e| io_error(format!("stat {}", path.display()), e))?;
            let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
            if !meta.is_dir() || age < min_age {
                continue;
            }
            tokio::fs::remove_dir_all(&path).await.map_err(|e| io_error(format!("remove {}", path.display()), e))?;
            removed.push(path);
        }
        removed.sort();
        Ok(removed)
    }
}

/// A forge with no issues of its own, whose PRs and comments are recorded
/// effects.
#[derive(Clone)]
pub struct InstantForge {
    recorder: Recorder,
}

impl std::fmt::Debug for InstantForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstantForge").finish_non_exhaustive()
    }
}

/// A stable PR number for a head branch.
fn pr_number(head: &str) -> u64 {
    // FNV-1a: stable across processes and builds.
    head.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) % 1_000_000
        + 1
}

#[async_trait]
impl Forge for InstantForge {
    async fn poll_triggered(&self, _req: &PollRequest) -> Result<Vec<ForgeIssue>> {
        Ok(Vec::new())
    }

    async fn issue(&self, repo: &RepoRef, number: u64) -> Result<ForgeIssue> {
        Ok(ForgeIssue {
            number,
            title: format!("Instant issue #{number}"),
            body: "Nothing to do, quickly.".into(),
            author: "octocat".into(),
            author_id: Some(crate::testing::fixtures::OCTOCAT_ID),
            labels: vec!["paid-build".into()],
            state: IssueState::Open,
            url: format!("https://instant.invalid/{repo}/issues/{number}"),
        })
    }

    async fn upsert_comment(&self, req: &CommentRequest) -> Result<u64> {
        let r = &self.recorder;
        let project = r.project_of(&req.repo).await?;
        let created = r.existing(project, EffectKind::Comment, &req.marker).await?.is_none();
        r.record(project, EffectKind::Comment, &req.marker, created, serde_json::json!({ "issue": req.number }))
            .await?;
        Ok(pr_number(&req.marker))
    }

    async fn set_labels(&self, _req: &LabelChange) -> Result<()> {
        Ok(())
    }

    async fn find_or_create_pr(&self, req: &PrRequest) -> Result<PullRequest> {
        let r = &self.recorder;
        let project = r.project_of(&req.repo).await?;
        let created = r.existing(project, EffectKind::PullRequest, &req.head).await?.is_none();
        let number = pr_number(&req.head);
        r.record(project, EffectKind::PullRequest, &req.head, created, serde_json::json!({ "number": number })).await?;
        Ok(PullRequest {
            number,
            url: format!("https://instant.invalid/{}/pull/{number}", req.repo),
            head: req.head.clone(),
            created,
        })
    }
}

/// An agent that runs one instant command in the sandbox and completes,
/// after an optional delay per issue.
#[derive(Clone)]
pub struct InstantAgent {
    delays: HashMap<u64, Duration>,
    recorder: Recorder,
}

impl std::fmt::Debug for InstantAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstantAgent").field("delays", &self.delays).finish_non_exhaustive()
    }
}

#[async_trait]
impl Agent for InstantAgent {
    fn kind(&self) -> &str {
        AGENT_KIND
    }

    async fn run(&self, ctx: AgentContext<'_>) -> Result<AgentOutcome> {
        self.recorder
            .record(
                Some(ctx.project.id),
                EffectKind::Agent,
                &ctx.run_id.to_string(),
                true,
                serde_json::json!({ "iteration": ctx.iteration }),
            )
            .await?;
        if let Some(delay) = self.delays.get(&ctx.issue.number) {
            tokio::select! {
                // not an assertion: the instant agent's scripted working time (cancellable)
                () = tokio::time::sleep(*delay) => {}
                () = ctx.cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
        let out = ctx.sandbox.exec(ExecRequest::shell("instant-agent --fix").with_cancel(ctx.cancel.clone())).await?;
        let exit = if out.exit.success() {
            AgentExit::Completed
        } else {
            AgentExit::Failed { class: crate::FailureClass::Permanent, message: format!("{:?}", out.exit) }
        };
        Ok(AgentOutcome { exit, summary: "Instant change.".into(), usage: None, cost_micros: None })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Stable across processes and builds: the numbers are the published
    /// 64-bit FNV-1a test vectors (`""` is 0xcbf29ce484222325, `"a"` is
    /// 0xaf63dc4c8601ec8c, `"foobar"` is 0x85944171f73967e8) modulo
    /// 1,000,000, plus one, hard-coded rather than recomputed.
    #[test]
    fn pr_numbers_are_fnv1a_of_the_head_modulo_a_million_plus_one() {
        assert_eq!(pr_number(""), 656_038);
        assert_eq!(pr_number("a"), 641_997);
        assert_eq!(pr_number("foobar"), 436_969);
        // Branch names as the engine makes them: distinct heads, distinct PRs.
        assert_eq!(pr_number("paid/1-a-000001"), 564_416);
        assert_eq!(pr_number("paid/2-a-000001"), 984_421);
    }

    #[test]
    fn counts_invocations_and_creations_per_key() {
        let e = |kind, key: &str, created, event: &str| Effect {
            kind,
            key: key.into(),
            created,
            event: event.into(),
            pid: 1,
        };
        let trail = [
            e(EffectKind::Push, "b1", true, "1"),
            e(EffectKind::Push, "b1", false, "2"),
            e(EffectKind::PullRequest, "b1", true, "3"),
        ];
        let counts = count(&trail);
        assert_eq!(counts[&(EffectKind::Push, "b1".to_string())], KeyCount { invoked: 2, created: 1 });
        assert_eq!(counts[&(EffectKind::PullRequest, "b1".to_string())], KeyCount { invoked: 1, created: 1 });
    }
}
