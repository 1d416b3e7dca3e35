//! `GitWorkspaces` exports `paid_worktrees{project_id}` itself: the gauge
//! follows worktree creation, removal and the orphan sweep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use paid_core::metrics::Metrics;
use paid_core::{Project, ProjectId, RepoRef, RunId, Workspaces, WorktreeRequest};
use paid_github::{GitWorkspaces, GitWorkspacesConfig};
use prometheus_client::registry::Registry;

fn git(dir: &Path, args: &[&str]) {
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
}

/// The gauge's sample for `project`, from a scrape of `registry`.
fn gauge(registry: &Registry, project: ProjectId) -> Option<i64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    assert!(text.contains("# TYPE paid_worktrees gauge"), "{text}");
    let prefix = format!("paid_worktrees{{project_id=\"{project}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn the_worktree_gauge_follows_create_remove_and_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("README.md"), "hello\n").unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-q", "-m", "init"]);
    git(tmp.path(), &["clone", "-q", "--bare", "seed", "remote.git"]);
    let mut project = Project::new(
        ProjectId(paid_core::Ids::uuid(&paid_core::RandomIds)),
        RepoRef::new("gauge", "repo"),
        tmp.path().join("remote.git").display().to_string(),
        chrono::Utc::now(),
    );
    project.default_branch = "main".into();

    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let ws = GitWorkspaces::new(GitWorkspacesConfig::new(tmp.path().join("ws")).metrics(metrics.clone()));

    ws.ensure_mirror(&project).await.unwrap();
    let create = |n: u32| {
        let (ws, project) = (&ws, &project);
        async move {
            let branch = format!("paid/{n}-gauge-abcdef");
            let run_id = RunId(paid_core::Ids::uuid(&paid_core::RandomIds));
            ws.create_worktree(&WorktreeRequest { project, run_id, branch: &branch }).await.unwrap()
        }
    };
    let a = create(1).await;
    assert_eq!(gauge(&registry, project.id), Some(1));
    let b = create(2).await;
    let c = create(3).await;
    assert_eq!(gauge(&registry, project.id), Some(3));
    ws.create_worktree(&WorktreeRequest { project: &project, run_id: b.run_id, branch: &b.branch }).await.unwrap();
    assert_eq!(gauge(&registry, project.id), Some(3), "an idempotent create counts once");

    ws.remove(&a).await.unwrap();
    assert_eq!(gauge(&registry, project.id), Some(2));
    let removed = ws.sweep_orphans(&[c.run_id], chrono::Duration::zero()).await.unwrap();
    assert_eq!(removed, vec![b.path.clone()]);
    assert_eq!(gauge(&registry, project.id), Some(1), "the sweep kept the active run's worktree");
    ws.remove(&c).await.unwrap();
    assert_eq!(gauge(&registry, project.id), Some(0));
}
