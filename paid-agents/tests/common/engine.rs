//! A whole engine on this machine, for agents run through the verify/fix
//! loop: SQLite in memory, the local Docker engine, a bare git repository as
//! the remote, and the fake GitHub with one labeled issue.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use paid_core::engine::{Engine, EngineConfig};
use paid_core::{
    Agent, Clock, FixedSelector, Project, ProjectId, RepoRef, Run, RunCredentials, SandboxRuntime, Store, SystemClock,
};
use paid_github::fake::FakeGitHub;
use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig};
use paid_store_sqlite::SqliteStore;

use super::{CALC, docker_required};

/// The fake forge's repository.
pub const REPO: (&str, &str) = ("acme", "calc");

/// The parts an engine is built from.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub remote: PathBuf,
    pub github: FakeGitHub,
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn SandboxRuntime>,
    pub project: Project,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

impl Harness {
    /// The sample project (a failing `sh test.sh`) behind issue #1, for the
    /// agent of `kind` in `image`.
    pub async fn new(image: &str, kind: &str) -> Self {
        let runtime: Arc<dyn SandboxRuntime> = Arc::new(docker_required(image).await);
        let dir = tempfile::tempdir().unwrap();
        let sample = dir.path().join("sample");
        std::fs::create_dir_all(&sample).unwrap();
        for (name, text) in CALC {
            std::fs::write(sample.join(name), text).unwrap();
        }
        git(&sample, &["init", "-q", "-b", "main"]);
        git(&sample, &["add", "."]);
        git(&sample, &["commit", "-q", "-m", "Sample project with a failing test"]);
        git(dir.path(), &["clone", "-q", "--bare", "sample", "remote.git"]);
        let remote = dir.path().join("remote.git");

        let github = FakeGitHub::start().await.unwrap();
        github.add_issue(
            REPO.0,
            REPO.1,
            1,
            "add() returns the wrong result",
            "`sh test.sh` fails: `add 2 3` prints -1 instead of 5. Fix add() in calc.sh.",
            "octocat",
            &["paid-build"],
        );
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let mut project = Project::new(
            ProjectId(uuid::Uuid::now_v7()),
            RepoRef::new(REPO.0, REPO.1),
            remote.display().to_string(),
            SystemClock.now(),
        );
        project.allowed_authors = vec!["octocat".into()];
        project.image = image.to_string();
        project.agent = kind.to_string();
        project.verify = vec!["sh test.sh".into()];
        project.validate().unwrap();
        store.put_project(&project).await.unwrap();
        Self { dir, remote, github, store, runtime, project }
    }

    /// An engine running `agent` with the model `model` and at most
    /// `max_iterations` agent ⇄ verify iterations.
    pub fn engine(&self, agent: Arc<dyn Agent>, model: &str, max_iterations: u32) -> Engine {
        self.engine_with(agent, model, max_iterations, None)
    }

    /// [`engine`](Self::engine), with the metering proxy's credentials.
    pub fn engine_with(
        &self,
        agent: Arc<dyn Agent>,
        model: &str,
        max_iterations: u32,
        credentials: Option<Arc<dyn RunCredentials>>,
    ) -> Engine {
        let forge =
            GitHubForge::new(GitHubConfig::new().base_uri(self.github.base_url()).token("t".to_string().into()))
                .unwrap();
        let workspaces = GitWorkspaces::new(GitWorkspacesConfig::new(self.dir.path().join("workspaces")));
        let mut builder = Engine::builder();
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        builder
            .store(self.store.clone())
            .runtime(self.runtime.clone())
            .forge(Arc::new(forge))
            .workspaces(Arc::new(workspaces))
            .agent(agent)
            .selector(Arc::new(FixedSelector { provider: "test".into(), model: model.into() }))
            .config(EngineConfig { worker_id: "agents-test".into(), max_iterations, ..EngineConfig::default() })
            .build()
            .unwrap()
    }

    /// The workspaces the engines of this harness use.
    pub fn workspaces(&self) -> GitWorkspaces {
        GitWorkspaces::new(GitWorkspacesConfig::new(self.dir.path().join("workspaces")))
    }

    /// An engine running `agent` with `workspaces` and `config`.
    pub fn engine_from(
        &self,
        agent: Arc<dyn Agent>,
        workspaces: Arc<dyn paid_core::Workspaces>,
        config: EngineConfig,
    ) -> Engine {
        let forge =
            GitHubForge::new(GitHubConfig::new().base_uri(self.github.base_url()).token("t".to_string().into()))
                .unwrap();
        Engine::builder()
            .store(self.store.clone())
            .runtime(self.runtime.clone())
            .forge(Arc::new(forge))
            .workspaces(workspaces)
            .agent(agent)
            .selector(Arc::new(FixedSelector { provider: "test".into(), model: "none".into() }))
            .config(config)
            .build()
            .unwrap()
    }

    /// Queues issue #1 and runs it to its end.
    pub async fn run(&self, engine: &Engine) -> Run {
        engine.poll_project(self.project.id).await.unwrap();
        let mut runs = engine.run_until_idle().await.unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs.remove(0)
    }

    /// `file` on `branch` of the remote.
    pub fn remote_file(&self, branch: &str, file: &str) -> String {
        git(&self.remote, &["show", &format!("{branch}:{file}")])
    }

    /// The commit subjects on `branch` of the remote, newest first.
    pub fn remote_log(&self, branch: &str) -> Vec<String> {
        git(&self.remote, &["log", "--format=%s", branch]).lines().map(str::to_string).collect()
    }

    /// The whole run log.
    pub async fn log(&self, run: &Run) -> String {
        self.store.logs(run.id, 0).await.unwrap().iter().map(|c| c.text.clone()).collect()
    }
}
