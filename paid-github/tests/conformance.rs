//! The shared Forge and Workspaces conformance suites from
//! `paid_core::testing`, run against this crate's backends: `GitHubForge`
//! on the fake GitHub server, and `GitWorkspaces` on real git with a bare
//! repository as the remote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use paid_core::testing::forge::ForgeFixture;
use paid_core::testing::workspaces::WorkspacesFixture;
use paid_core::{Project, ProjectId, RepoRef};
use paid_github::fake::FakeGitHub;
use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@localhost")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@localhost")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn github_forge_passes_the_forge_suite() {
    let github = Arc::new(FakeGitHub::start().await.unwrap());
    let (owner, name) = ("conformance", "repo");
    github.add_issue(owner, name, 1, "Build me", "body", "alice", &["paid-build"]);
    github.add_issue(owner, name, 2, "Plan me", "body", "alice", &["paid-plan"]);
    github.add_issue(owner, name, 3, "Leave me", "body", "bob", &["bug"]);
    github.add_issue(owner, name, 4, "Done already", "body", "alice", &["paid-build"]);
    assert!(github.close_issue(owner, name, 4));
    let forge =
        GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).token("t".to_string().into()).per_page(1))
            .unwrap();
    let (comments, reviews, votes) = (github.clone(), github.clone(), github.clone());
    let fixture = ForgeFixture {
        forge: Arc::new(forge),
        repo: RepoRef::new(owner, name),
        build_issue: 1,
        plan_issue: 2,
        other_issue: 3,
        closed_issue: 4,
        head: "paid/1-build-me-abcdef".into(),
        base: "main".into(),
        comment_body: Box::new(move |number, id| {
            comments.comments(owner, name, number).into_iter().find(|c| c.id == id).map(|c| c.body)
        }),
        seed_review_comment: Box::new(move |pr, author, path, line, body| {
            reviews.add_review_comment(owner, name, pr, author, path, line, body, None).unwrap();
        }),
        seed_vote: Box::new(move |pr, author, up| {
            votes.add_reaction(owner, name, pr, author, if up { "+1" } else { "-1" }).unwrap();
        }),
    };
    paid_core::testing::forge::run_all(&fixture).await;
}

#[tokio::test]
async fn git_workspaces_pass_the_workspaces_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("README.md"), "hello\n").unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "init"]);
    git(tmp.path(), &["clone", "-q", "--bare", "seed", "remote.git"]);
    let remote = tmp.path().join("remote.git");

    let mut project = Project::new(
        ProjectId(paid_core::Ids::uuid(&paid_core::RandomIds)),
        RepoRef::new("conformance", "repo"),
        remote.display().to_string(),
        chrono::Utc::now(),
    );
    project.default_branch = "main".into();
    let workspaces = GitWorkspaces::new(GitWorkspacesConfig::new(tmp.path().join("ws")));
    let (scratch, pushed_to) = (tmp.path().join("others"), remote.clone());
    let remote_commit = Box::new(move |branch: &str, file: &str, content: &str| {
        // Someone else's clone: commit on `branch` and push it.
        if !scratch.exists() {
            git(scratch.parent().unwrap(), &["clone", "-q", pushed_to.to_str().unwrap(), "others"]);
        }
        git(&scratch, &["fetch", "-q", "origin"]);
        git(&scratch, &["checkout", "-q", "-B", branch, &format!("origin/{branch}")]);
        std::fs::write(scratch.join(file), content).unwrap();
        git(&scratch, &["add", "-A"]);
        git(&scratch, &["commit", "-q", "-m", &format!("someone else changed {file}")]);
        git(&scratch, &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")]);
        git(&scratch, &["rev-parse", "HEAD"])
    });
    let fixture = WorkspacesFixture {
        remote_commit,
        workspaces: Arc::new(workspaces),
        project,
        remote_branch: Box::new(move |branch| {
            let out = Command::new("git")
                .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")])
                .current_dir(&remote)
                .output()
                .ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        }),
    };
    paid_core::testing::workspaces::run_all(&fixture).await;
}
