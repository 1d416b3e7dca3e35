//! The [`Workspaces`] conformance suite.
//!
//! A backend's test creates a remote repository whose default branch holds a
//! `README.md`, describes it in a [`WorkspacesFixture`], and calls
//! [`run_all`].

#![allow(clippy::expect_used, reason = "a conformance failure should fail the calling test loudly")]

use std::sync::Arc;

use chrono::Duration;

use crate::{CommitRequest, Error, Project, RunId, Workspaces, WorktreeRequest};

/// Reads a branch's tip commit on the remote, `None` when absent.
pub type RemoteBranch = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the backend's test prepared.
pub struct WorkspacesFixture {
    /// The workspaces under test.
    pub workspaces: Arc<dyn Workspaces>,
    /// A project whose `clone_url` is a remote with `README.md` on its default branch.
    pub project: Project,
    /// Whether the remote has `branch`, and its tip commit.
    pub remote_branch: RemoteBranch,
}

impl std::fmt::Debug for WorkspacesFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspacesFixture").field("project", &self.project.repo).finish_non_exhaustive()
    }
}

/// Every test of the suite.
pub async fn run_all(f: &WorkspacesFixture) {
    worktree_lifecycle(f, RunId(uuid::Uuid::now_v7()), "paid/1-conformance-aaaaaa").await;
    unclonable_remote_is_a_clone_error(f).await;
    sweep_keeps_active_runs(f).await;
}

/// Mirror, worktree (idempotent), changes, commit (none when clean), push
/// (idempotent) and remove (idempotent).
pub async fn worktree_lifecycle(f: &WorkspacesFixture, run_id: RunId, branch: &str) {
    let ws = &f.workspaces;
    ws.ensure_mirror(&f.project).await.expect("mirror");
    ws.ensure_mirror(&f.project).await.expect("mirror again (fetch)");
    let req = WorktreeRequest { project: &f.project, run_id, branch };
    let wt = ws.create_worktree(&req).await.expect("worktree");
    assert_eq!(wt.branch, branch);
    assert!(wt.path.join("README.md").exists(), "the worktree checks out the default branch");
    let again = ws.create_worktree(&req).await.expect("worktree again");
    assert_eq!(again, wt, "create_worktree is idempotent");

    assert!(ws.changed_paths(&wt).await.expect("changed").is_empty());
    std::fs::write(wt.path.join("new.txt"), "hello\n").expect("write");
    std::fs::remove_file(wt.path.join("README.md")).expect("delete");
    assert_eq!(ws.changed_paths(&wt).await.expect("changed"), vec!["README.md".to_string(), "new.txt".to_string()]);

    let commit =
        CommitRequest { worktree: &wt, message: "conformance", author_name: "Paid", author_email: "paid@localhost" };
    let id = ws.commit_all(&commit).await.expect("commit").expect("there were changes");
    assert_eq!(ws.commit_all(&commit).await.expect("commit again"), None, "nothing left to commit");
    assert_eq!(ws.changed_paths(&wt).await.expect("changed"), vec!["README.md".to_string(), "new.txt".to_string()]);

    ws.push(&f.project, &wt).await.expect("push");
    assert_eq!((f.remote_branch)(branch), Some(id.clone()), "the remote has the pushed commit");
    ws.push(&f.project, &wt).await.expect("push is idempotent");

    ws.remove(&wt).await.expect("remove");
    assert!(!wt.path.exists());
    ws.remove(&wt).await.expect("remove is idempotent");
}

/// A remote that cannot be read is [`Error::Clone`], naming the URL.
pub async fn unclonable_remote_is_a_clone_error(f: &WorkspacesFixture) {
    let mut project = f.project.clone();
    project.id = crate::ProjectId(uuid::Uuid::now_v7());
    project.repo = crate::RepoRef::new("conformance", "missing");
    project.clone_url = "/nonexistent/paid-conformance.git".into();
    let err = f.workspaces.ensure_mirror(&project).await.expect_err("cannot clone");
    assert!(matches!(&err, Error::Clone { url, .. } if url.contains("paid-conformance.git")), "{err:?}");
}

/// `sweep_orphans` never removes a worktree of a run it is told to keep.
pub async fn sweep_keeps_active_runs(f: &WorkspacesFixture) {
    let ws = &f.workspaces;
    let run_id = RunId(uuid::Uuid::now_v7());
    let wt = ws
        .create_worktree(&WorktreeRequest { project: &f.project, run_id, branch: "paid/2-sweep-bbbbbb" })
        .await
        .expect("worktree");
    let removed = ws.sweep_orphans(&[run_id], Duration::zero()).await.expect("sweep");
    assert!(!removed.contains(&wt.path), "{removed:?}");
    assert!(wt.path.exists());
    ws.remove(&wt).await.expect("remove");
}
