//! SQLite + Docker + GitHub, the production wiring, in under 60 lines: queue a run for each issue labeled `paid-build`
//! by an allowed author and drive every run (agent in a Docker sandbox, verify, push, PR) to its end. Needs Docker and
//! `paid/agent:bookworm` (`scripts/build-images`). `GITHUB_TOKEN=... PAID_REPO=owner/name PAID_ALLOWED_AUTHORS=alice
//! PAID_AGENT='my-cli --fix "$PAID_PROMPT"' PAID_VERIFY='sh test.sh' cargo run -p paid-examples --example production`;
//! optional: `GITHUB_API_URL`, `PAID_CLONE_URL`, `PAID_DATA_DIR`. `tests/embedding.rs` runs this file on a fake GitHub.
use anyhow::Context;
use paid_core::{Clock, Ids, Project, ProjectId, RandomIds, RepoRef, Run, SystemClock, engine::Engine};
use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig};
use std::{env::var, path::PathBuf, sync::Arc};

/// The settings, one per environment variable above (`verify`: one command per line of `PAID_VERIFY`).
#[allow(missing_docs)]
pub struct Settings {
    pub github_token: secrecy::SecretString,
    pub github_api: String,
    pub repo: RepoRef,
    pub clone_url: String,
    pub data_dir: PathBuf,
    pub allowed_authors: Vec<String>,
    pub agent: String,
    pub verify: Vec<String>,
}

/// Wires the engine, registers the project once, polls it and returns the runs it drove to their end.
pub async fn run(s: Settings) -> anyhow::Result<Vec<Run>> {
    std::fs::create_dir_all(&s.data_dir).with_context(|| format!("creating {}", s.data_dir.display()))?;
    let engine = Engine::builder()
        .store(Arc::new(paid_store_sqlite::SqliteStore::open(s.data_dir.join("paid.db"))?))
        .runtime(Arc::new(paid_runtime_docker::DockerRuntime::connect_local().await?))
        .forge(Arc::new(GitHubForge::new(GitHubConfig::new().base_uri(s.github_api).token(s.github_token.clone()))?))
        .workspaces(Arc::new(GitWorkspaces::new(GitWorkspacesConfig::new(&s.data_dir).token(s.github_token))))
        .agent(Arc::new(paid_agents::CommandAgent::new("command", s.agent)?)) // the kind projects default to
        .build()?;
    let known = engine.store().projects().await?.into_iter().find(|p| p.repo == s.repo);
    let mut project = known.unwrap_or_else(|| Project::new(ProjectId(RandomIds.uuid()), s.repo, "", SystemClock.now()));
    (project.clone_url, project.allowed_authors, project.verify) = (s.clone_url, s.allowed_authors, s.verify);
    project.validate()?;
    engine.store().put_project(&project).await?;
    engine.poll_project(project.id).await?;
    Ok(engine.run_until_idle().await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |key: &str| var(key).with_context(|| format!("set {key}; see the top of production.rs"));
    let repo = RepoRef::parse(&env("PAID_REPO")?)?;
    let settings = Settings {
        github_token: env("GITHUB_TOKEN")?.into(),
        github_api: env("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".into()),
        clone_url: env("PAID_CLONE_URL").unwrap_or_else(|_| format!("https://github.com/{repo}.git")),
        data_dir: env("PAID_DATA_DIR").unwrap_or_else(|_| "paid-data".into()).into(),
        allowed_authors: env("PAID_ALLOWED_AUTHORS")?.split(',').map(|a| a.trim().into()).collect(),
        agent: env("PAID_AGENT")?,
        verify: env("PAID_VERIFY").map(|v| v.lines().map(String::from).collect()).unwrap_or_default(),
        repo,
    };
    run(settings).await?.iter().for_each(|r| println!("#{} {} {:?}", r.issue_number, r.state, r.pr_url));
    Ok(())
}
