//! `paid demo`: one labeled issue to one pull request, entirely on this
//! machine.
//!
//! The parts are the embedded defaults: a SQLite file, the local Docker
//! engine, a bare git repository as the remote, an in-process fake GitHub and
//! a scripted agent (no model credentials needed). [`DemoSetup`] builds them
//! so tests can vary one part at a time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};
use paid_agents::CommandAgent;
use paid_core::engine::{Engine, EngineBuilder, EngineConfig, EngineEvent};
use paid_core::{Clock, Project, ProjectId, RepoRef, Run, SandboxRuntime, Store, SystemClock};
use paid_github::fake::FakeGitHub;
use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig};
use paid_runtime_docker::{DockerConfig, DockerRuntime};
use paid_store_sqlite::SqliteStore;

/// The scripted agent: fixes `add()` in the sample project the way a model
/// would, by editing the file in the worktree.
pub const FIXER_SCRIPT: &str =
    "sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh && echo 'Fixed add() in calc.sh: it subtracted instead of adding.'";

/// The files of the sample project (a failing test in `test.sh`).
pub const SAMPLE_FILES: &[(&str, &str)] = &[
    ("calc.sh", include_str!("../sample-project/calc.sh")),
    ("test.sh", include_str!("../sample-project/test.sh")),
    ("README.md", include_str!("../sample-project/README.md")),
];

/// What the demo can vary.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Sandbox image.
    pub image: String,
    /// Agent kind registered with the engine.
    pub agent_kind: String,
    /// The agent's shell script.
    pub agent_script: String,
    /// Author of the seeded issue.
    pub issue_author: String,
    /// Logins allowed to trigger runs.
    pub allowed_authors: Vec<String>,
    /// Title of the seeded issue.
    pub issue_title: String,
    /// Clone URL override (default: the bare remote the demo creates).
    pub clone_url: Option<String>,
    /// Verify commands.
    pub verify: Vec<String>,
    /// Engine settings (worker id, lease, timeouts).
    pub engine: EngineConfig,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            image: "paid/agent:bookworm".into(),
            agent_kind: "scripted-fixer".into(),
            agent_script: FIXER_SCRIPT.into(),
            issue_author: "demo-user".into(),
            allowed_authors: vec!["demo-user".into()],
            issue_title: "add() returns the wrong result".into(),
            clone_url: None,
            verify: vec!["sh test.sh".into()],
            engine: EngineConfig { worker_id: "demo-worker".into(), ..EngineConfig::default() },
        }
    }
}

/// The demo's parts, ready to build engines from.
pub struct DemoSetup {
    /// The working directory.
    pub dir: PathBuf,
    /// The bare repository acting as the remote.
    pub remote: PathBuf,
    /// The SQLite file.
    pub db_path: PathBuf,
    /// The fake GitHub server.
    pub github: FakeGitHub,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The Docker runtime.
    pub runtime: Arc<dyn SandboxRuntime>,
    /// The project.
    pub project: Project,
    /// The seeded issue's number.
    pub issue: u64,
    config: DemoConfig,
}

impl std::fmt::Debug for DemoSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSetup").field("dir", &self.dir).field("project", &self.project).finish_non_exhaustive()
    }
}

/// The owner/name of the demo repository on the fake forge.
pub const DEMO_REPO: (&str, &str) = ("paid-demo", "calc");

impl DemoSetup {
    /// Creates the sample repository, its bare remote, the fake forge with one
    /// labeled issue, the SQLite store and the project, under `dir`.
    pub async fn create(dir: &Path, config: DemoConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = std::path::absolute(dir)?;
        let remote = dir.join("remote.git");
        if !remote.exists() {
            create_sample_remote(&dir, &remote)?;
        }
        let runtime = DockerRuntime::connect(DockerConfig::default()).await?;
        let github = FakeGitHub::start().await?;
        let issue = github.add_issue(
            DEMO_REPO.0,
            DEMO_REPO.1,
            1,
            &config.issue_title,
            "Running `sh test.sh` fails: `add 2 3` prints -1 instead of 5. Please fix add() in calc.sh.",
            &config.issue_author,
            &["paid-build"],
        );
        let db_path = dir.join("paid.db");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path)?);
        let clock = SystemClock;
        let mut project = Project::new(
            ProjectId(uuid::Uuid::now_v7()),
            RepoRef::new(DEMO_REPO.0, DEMO_REPO.1),
            config.clone_url.clone().unwrap_or_else(|| remote.display().to_string()),
            clock.now(),
        );
        project.allowed_authors = config.allowed_authors.clone();
        project.image = config.image.clone();
        project.agent = config.agent_kind.clone();
        project.verify = config.verify.clone();
        project.validate()?;
        store.put_project(&project).await?;
        Ok(Self { dir, remote, db_path, github, store, runtime: Arc::new(runtime), project, issue, config })
    }

    /// An engine on these parts with the given settings.
    pub fn engine_with(&self, config: EngineConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Engine> {
        Ok(self.builder_with(config, clock)?.build()?)
    }

    /// An engine builder on these parts, to add more (credentials, a planner).
    pub fn builder_with(&self, config: EngineConfig, clock: Arc<dyn Clock>) -> anyhow::Result<EngineBuilder> {
        let forge = GitHubForge::new(
            GitHubConfig::new().base_uri(self.github.base_url()).token("demo-token".to_string().into()),
        )?;
        let workspaces = GitWorkspaces::new(GitWorkspacesConfig::new(self.dir.join("workspaces")));
        Ok(Engine::builder()
            .store(self.store.clone())
            .runtime(self.runtime.clone())
            .forge(Arc::new(forge))
            .workspaces(Arc::new(workspaces))
            .agent(Arc::new(CommandAgent::new(self.config.agent_kind.clone(), self.config.agent_script.clone())?))
            .clock(clock)
            .config(config))
    }

    /// The demo's engine settings.
    pub fn engine_config(&self) -> EngineConfig {
        self.config.engine.clone()
    }

    /// An engine with the demo's settings and the system clock.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        self.engine_with(self.config.engine.clone(), Arc::new(SystemClock))
    }
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Paid Demo")
        .env("GIT_AUTHOR_EMAIL", "demo@localhost")
        .env("GIT_COMMITTER_NAME", "Paid Demo")
        .env("GIT_COMMITTER_EMAIL", "demo@localhost")
        .output()
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Creates the sample project's bare repository at `<dir>/remote.git` (the
/// remote `paid demo` works on; the daemon tests use it too). Returns its path.
pub fn create_sample_remote_in(dir: &Path) -> anyhow::Result<PathBuf> {
    let remote = dir.join("remote.git");
    create_sample_remote(dir, &remote)?;
    Ok(remote)
}

fn create_sample_remote(dir: &Path, remote: &Path) -> anyhow::Result<()> {
    let work = dir.join("sample");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    for (name, text) in SAMPLE_FILES {
        std::fs::write(work.join(name), text)?;
    }
    git(&work, &["init", "-q", "-b", "main"])?;
    git(&work, &["add", "."])?;
    git(&work, &["commit", "-q", "-m", "Sample project with a failing test"])?;
    git(dir, &["clone", "-q", "--bare", "sample", "remote.git"])?;
    std::fs::remove_dir_all(&work)?;
    let _ = remote;
    Ok(())
}

/// What the demo did.
#[derive(Debug)]
pub struct DemoReport {
    /// The finished run.
    pub run: Run,
    /// The PR URL on the fake forge.
    pub pr_url: Option<String>,
    /// The pushed branch.
    pub branch: Option<String>,
    /// The bare remote.
    pub remote: PathBuf,
    /// The SQLite file.
    pub db_path: PathBuf,
}

/// Runs the demo in `dir`, printing progress through `say` as it goes.
pub async fn run(dir: &Path, say: Arc<dyn Fn(&str) + Send + Sync>) -> anyhow::Result<DemoReport> {
    let config = DemoConfig::default();
    say(&format!("Setting up in {}", dir.display()));
    let setup = DemoSetup::create(dir, config).await?;
    setup.runtime.ensure_image(&setup.project.image).await?;
    say(&format!(
        "Fake GitHub at {} holds issue #{} on {}/{}, labeled paid-build",
        setup.github.base_url(),
        setup.issue,
        DEMO_REPO.0,
        DEMO_REPO.1
    ));
    let engine = setup.engine()?;
    let mut events = engine.subscribe();
    let printer = tokio::spawn({
        let say = say.clone();
        async move {
            while let Ok(event) = events.recv().await {
                match event {
                    EngineEvent::Queued { issue, run_id, .. } => {
                        say(&format!("Queued run {run_id} for issue #{issue}"))
                    }
                    EngineEvent::Transition { to, .. } => say(&format!("  → {to}")),
                    EngineEvent::Note { message, .. } => say(&format!("  · {message}")),
                    EngineEvent::Untrusted { issue, author, .. } => {
                        say(&format!("Ignored issue #{issue}: {author} is not an allowed author"))
                    }
                    _ => {}
                }
            }
        }
    });
    let report = engine.poll_project(setup.project.id).await?;
    if report.queued.is_empty() {
        bail!("the poll queued nothing (untrusted: {:?}, skipped: {:?})", report.untrusted, report.skipped);
    }
    let runs = engine.run_until_idle().await?;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    printer.abort();
    let run = runs.into_iter().last().context("no run finished")?;
    Ok(DemoReport {
        pr_url: run.pr_url.clone(),
        branch: run.branch.clone(),
        run,
        remote: setup.remote.clone(),
        db_path: setup.db_path.clone(),
    })
}
