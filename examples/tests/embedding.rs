//! The embedding examples, run as they are: each example file is compiled into this test and its
//! library part driven against the fake GitHub (requiring a token), a local bare git remote holding
//! the sample project, SQLite and the real Docker engine. Docker and the `paid/agent:bookworm` image
//! (`scripts/build-images`) are required: these tests fail, never skip, without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The very files `cargo run --example ...` runs. Their `main` only reads the environment or the
// command line and is not called here.
#[allow(dead_code)]
#[path = "../examples/production.rs"]
mod production;
#[allow(dead_code)]
#[path = "../examples/server.rs"]
mod server;

use paid_core::store::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use paid_core::{RepoRef, RunFilter, RunState};
use paid_examples::demo::{DEMO_REPO, FIXER_SCRIPT, create_sample_remote_in};
use paid_github::fake::{FakeConfig, FakeGitHub};

const TOKEN: &str = "ghp_embedding_test_token";

fn git(remote: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(remote).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The Docker containers carrying `label` (`key=value`).
fn sandboxes(label: &str) -> Vec<String> {
    let out = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label={label}")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Removes the sandboxes of a label prefix when a test ends, passed or failed.
struct RemoveSandboxes(String);

impl Drop for RemoveSandboxes {
    fn drop(&mut self) {
        let ids = sandboxes(&format!("{}.managed=true", self.0));
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_example_turns_one_labeled_issue_into_one_pull_request() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = create_sample_remote_in(tmp.path()).unwrap();
    let github = FakeGitHub::start_with(FakeConfig::new().token(TOKEN)).await.unwrap();
    let (owner, name) = DEMO_REPO;
    let body = "Running `sh test.sh` fails: `add 2 3` prints -1 instead of 5. Please fix add() in calc.sh.";
    github.add_issue(owner, name, 1, "add() returns the wrong result", body, "alice", &["paid-build"]);
    github.add_issue(owner, name, 2, "Not for the bot", "No trigger label here.", "alice", &["bug"]);
    let settings = || production::Settings {
        github_token: TOKEN.to_string().into(),
        github_api: github.base_url().to_string(),
        repo: RepoRef::new(owner, name),
        clone_url: remote.display().to_string(),
        data_dir: tmp.path().join("paid-data"),
        allowed_authors: vec!["alice".into()],
        agent: FIXER_SCRIPT.into(),
        verify: vec!["sh test.sh".into()],
    };

    let started = std::time::Instant::now();
    let runs = production::run(settings()).await.unwrap();
    println!("production::run took {:?}", started.elapsed());

    // One run, for the labeled issue, that succeeded.
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!((run.issue_number, run.state), (1, RunState::Succeeded), "{:?}", run.failure);

    // Its branch is in the bare remote, with the agent's fix.
    let branch = run.branch.clone().unwrap();
    let heads = git(&remote, &["for-each-ref", "--format=%(refname:short)", "refs/heads"]);
    assert_eq!(heads.lines().filter(|h| *h == branch).count(), 1, "{branch} not in {heads}");
    assert!(git(&remote, &["show", &format!("{branch}:calc.sh")]).contains("$(( $1 + $2 ))"));

    // Exactly one PR, from that branch to main, and it is the run's.
    let prs = github.pull_requests(owner, name);
    assert_eq!(prs.len(), 1, "{prs:#?}");
    assert_eq!((prs[0].head.as_str(), prs[0].base.as_str()), (branch.as_str(), "main"));
    assert!(prs[0].body.contains("Closes #1"), "{}", prs[0].body);
    assert_eq!(run.pr_url.as_deref(), Some(prs[0].html_url.as_str()));
    assert!(github.issue_labels(owner, name, 2).iter().all(|l| !l.starts_with("paid-")));

    // The verify command ran in the sandbox, and passed.
    let store = paid_store_sqlite::SqliteStore::open(tmp.path().join("paid-data/paid.db")).unwrap();
    let log: String = store.logs(run.id, 0).await.unwrap().iter().map(|l| l.text.as_str()).collect();
    assert!(log.contains("ok: add 2 3"), "{log}");
    assert_eq!(sandboxes(&format!("paid.run_id={}", run.id)), Vec::<String>::new(), "sandbox left behind");

    // A second pass finds the project it registered and nothing left to do.
    let again = production::run(settings()).await.unwrap();
    assert!(again.is_empty(), "{again:#?}");
    assert_eq!(github.pull_requests(owner, name).len(), 1);
    let projects = store.projects().await.unwrap();
    assert_eq!(projects.len(), 1, "{projects:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_example_runs_its_own_agent_next_to_the_configured_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = create_sample_remote_in(dir).unwrap();
    let github = FakeGitHub::start_with(FakeConfig::new().token(TOKEN)).await.unwrap();
    let (owner, name) = DEMO_REPO;
    github.add_issue(owner, name, 1, "Document the calculator", "Please.", "alice", &["paid-build"]);
    std::fs::write(dir.join("api-token"), "embedding-test-api-token-0123456789").unwrap();
    std::fs::write(dir.join("github-token"), TOKEN).unwrap();
    paid_server::vault::write_new_key(&dir.join("master.key")).unwrap();
    // Its own label prefix: the server's reaper must not touch other tests' sandboxes.
    let prefix = format!("pe{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let text = format!(
        r#"
data_dir = "data"
concurrency = 1
shutdown_grace_secs = 30
[api]
bind = "127.0.0.1:0"
token_file = "api-token"
[keys]
master_key_file = "master.key"
[github]
api_url = "{github}"
token_file = "github-token"
[docker]
label_prefix = "{prefix}"
[disk]
warning_percent = 98
critical_percent = 99
emergency_percent = 100
[[projects]]
repo = "{owner}/{name}"
clone_url = "{remote}"
allowed_authors = ["alice"]
agent = "changelog"
verify = ["grep -qxF -- '- Document the calculator (#1)' CHANGELOG.md"]
"#,
        github = github.base_url(),
        remote = remote.display(),
    );
    std::fs::write(dir.join("paid.toml"), text).unwrap();
    let env = BTreeMap::from([("PAID_POLL_INTERVAL_MS".to_string(), "300".to_string())]);
    let config = paid_server::Config::load_with_env(&dir.join("paid.toml"), &env).unwrap();

    let _cleanup = RemoveSandboxes(prefix.clone());
    let server = server::build(config).await.unwrap();
    let store = server.engine().store().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(server.run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let runs = store.runs(&RunFilter::default()).await.unwrap();
        if let Some(run) = runs.iter().find(|r| r.state.is_terminal()) {
            break run.clone();
        }
        assert!(!running.is_finished(), "the server stopped: {:?}", running.await);
        assert!(Instant::now() < deadline, "no run ended within 120 s: {runs:#?}");
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), running).await.unwrap().unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.failure);
    assert_eq!(sandboxes(&format!("{prefix}.managed=true")), Vec::<String>::new(), "sandboxes left behind");

    let prs = github.pull_requests(owner, name);
    assert_eq!(prs.len(), 1, "{prs:#?}");
    let changelog = git(&remote, &["show", &format!("{}:CHANGELOG.md", prs[0].head)]);
    assert_eq!(changelog, "- Document the calculator (#1)\n");
    assert!(prs[0].body.contains("Added #1 to CHANGELOG.md."), "{}", prs[0].body);
}
