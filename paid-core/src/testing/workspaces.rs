//! The [`Workspaces`] conformance suite.
//!
//! A backend's test creates a remote repository whose default branch holds a
//! `README.md`, describes it in a [`WorkspacesFixture`] (with a way to
//! commit on the remote behind the workspaces' back, as another person
//! would), and calls [`run_all`].

#![allow(clippy::expect_used, reason = "a conformance failure should fail the calling test loudly")]

use std::sync::Arc;

use chrono::Duration;
use futures::future::BoxFuture;

use crate::{CommitRequest, Error, Project, RebaseOutcome, RunId, Workspaces, Worktree, WorktreeRequest};

/// Reads a branch's tip commit on the remote, `None` when absent.
pub type RemoteBranch = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Commits `(branch, path, content)` directly on the remote: writes `path`
/// with `content` on top of `branch` and returns the new tip commit.
pub type RemoteCommit = Box<dyn Fn(&str, &str, &str) -> String + Send + Sync>;

/// What the backend's test prepared.
pub struct WorkspacesFixture {
    /// The workspaces under test.
    pub workspaces: Arc<dyn Workspaces>,
    /// A project whose `clone_url` is a remote with `README.md` on its default branch.
    pub project: Project,
    /// Whether the remote has `branch`, and its tip commit.
    pub remote_branch: RemoteBranch,
    /// Commits on the remote (e.g. moves its default branch).
    pub remote_commit: RemoteCommit,
}

impl std::fmt::Debug for WorkspacesFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspacesFixture").field("project", &self.project.repo).finish_non_exhaustive()
    }
}

/// One case of the suite, run against the fixture.
pub type TestFn = for<'a> fn(&'a WorkspacesFixture) -> BoxFuture<'a, ()>;

/// [`worktree_lifecycle`] for a fresh run on a branch of its own.
async fn worktree_lifecycle_of_a_new_run(f: &WorkspacesFixture) {
    worktree_lifecycle(f, RunId(uuid::Uuid::now_v7()), "paid/1-conformance-aaaaaa").await;
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        /// Every case of the suite, with its name, in the order [`run_all`]
        /// runs them.
        pub const TESTS: &[(&str, TestFn)] = &[
            $((stringify!($name), |f| -> BoxFuture<'_, ()> { Box::pin($name(f)) })),*
        ];
    };
}

suite!(
    worktree_lifecycle_of_a_new_run,
    unclonable_remote_is_a_clone_error,
    sweep_keeps_active_runs,
    rebase_of_a_current_branch_is_up_to_date,
    rebase_replays_the_branch_when_the_default_branch_moved,
    rebase_conflicts_are_left_for_the_agent_with_their_paths,
    limits_are_checked_and_a_commit_over_them_takes_nothing,
);

/// Every test of the suite.
pub async fn run_all(f: &WorkspacesFixture) {
    for (_, test) in TESTS {
        test(f).await;
    }
}

/// Creates a worktree for a new run on `branch`, writes `files`, commits
/// and pushes. Returns the worktree and the commit.
async fn push_change(f: &WorkspacesFixture, branch: &str, files: &[(&str, &str)]) -> (Worktree, String) {
    let ws = &f.workspaces;
    ws.ensure_mirror(&f.project).await.expect("mirror");
    let run_id = RunId(uuid::Uuid::now_v7());
    let wt = ws.create_worktree(&WorktreeRequest { project: &f.project, run_id, branch }).await.expect("worktree");
    for (path, content) in files {
        std::fs::write(wt.path.join(path), content).expect("write");
    }
    let commit = CommitRequest {
        worktree: &wt,
        message: "change",
        author_name: "Paid",
        author_email: "paid@localhost",
        limits: Default::default(),
    };
    let id = ws.commit_all(&commit).await.expect("commit").expect("a change");
    ws.push(&f.project, &wt).await.expect("push");
    (wt, id)
}

/// The worktree of a follow-up run on `branch` (a new run id).
async fn follow_up_worktree(f: &WorkspacesFixture, branch: &str) -> Worktree {
    f.workspaces.ensure_mirror(&f.project).await.expect("mirror");
    let run_id = RunId(uuid::Uuid::now_v7());
    f.workspaces.create_worktree(&WorktreeRequest { project: &f.project, run_id, branch }).await.expect("worktree")
}

/// A branch that already contains the default branch's tip is left as is.
pub async fn rebase_of_a_current_branch_is_up_to_date(f: &WorkspacesFixture) {
    let ws = &f.workspaces;
    let branch = "paid/3-rebase-current-cccccc";
    let (wt, id) = push_change(f, branch, &[("current.txt", "current\n")]).await;
    assert_eq!(ws.rebase(&f.project, &wt).await.expect("rebase"), RebaseOutcome::UpToDate);
    ws.push(&f.project, &wt).await.expect("push again");
    assert_eq!((f.remote_branch)(branch), Some(id), "nothing changed");
    ws.remove(&wt).await.expect("remove");
}

/// When the default branch moved after the branch was pushed, a follow-up
/// run's worktree gets the branch's commits replayed on the new tip; the
/// rewritten branch is pushed over the old one (the lease holds), and a
/// second rebase finds it up to date.
pub async fn rebase_replays_the_branch_when_the_default_branch_moved(f: &WorkspacesFixture) {
    let ws = &f.workspaces;
    let branch = "paid/4-rebase-moved-dddddd";
    let (first, pushed) = push_change(f, branch, &[("feature.txt", "feature\n")]).await;
    ws.remove(&first).await.expect("remove");
    let main_tip = (f.remote_commit)(&f.project.default_branch, "upstream.txt", "upstream\n");

    let mut wt = follow_up_worktree(f, branch).await;
    assert!(!wt.path.join("upstream.txt").exists(), "the worktree starts from the branch as pushed");
    let outcome = ws.rebase(&f.project, &wt).await.expect("rebase");
    assert_eq!(outcome, RebaseOutcome::Rebased { onto: main_tip.clone() });
    assert_eq!(std::fs::read_to_string(wt.path.join("upstream.txt")).expect("upstream file"), "upstream\n");
    assert_eq!(std::fs::read_to_string(wt.path.join("feature.txt")).expect("branch file"), "feature\n");
    wt.base_commit = main_tip.clone();
    assert_eq!(ws.changed_paths(&wt).await.expect("changed"), vec!["feature.txt".to_string()]);
    assert_eq!(ws.rebase(&f.project, &wt).await.expect("rebase again"), RebaseOutcome::UpToDate);

    ws.push(&f.project, &wt).await.expect("push the rewritten branch with the lease");
    let tip = (f.remote_branch)(branch).expect("branch on the remote");
    assert_ne!(tip, pushed, "the remote branch was replaced by the rebased one");
    ws.remove(&wt).await.expect("remove");

    // A fresh worktree of the pushed branch contains both.
    let again = follow_up_worktree(f, branch).await;
    assert_eq!(ws.rebase(&f.project, &again).await.expect("rebase"), RebaseOutcome::UpToDate);
    assert!(again.path.join("upstream.txt").exists() && again.path.join("feature.txt").exists());
    ws.remove(&again).await.expect("remove");
}

/// When replaying conflicts, the worktree is left merging the default
/// branch with conflict markers, the conflicted paths are reported (again
/// on a second call), a commit with the markers still in is refused, and
/// the agent's resolution is committed as a merge
/// that contains the default branch's tip.
pub async fn rebase_conflicts_are_left_for_the_agent_with_their_paths(f: &WorkspacesFixture) {
    let ws = &f.workspaces;
    let branch = "paid/5-rebase-conflict-eeeeee";
    let (first, _) = push_change(f, branch, &[("shared.txt", "branch side\n"), ("mine.txt", "mine\n")]).await;
    ws.remove(&first).await.expect("remove");
    let main_tip = (f.remote_commit)(&f.project.default_branch, "shared.txt", "default side\n");

    let mut wt = follow_up_worktree(f, branch).await;
    let outcome = ws.rebase(&f.project, &wt).await.expect("rebase");
    let expected = RebaseOutcome::Conflicts { onto: main_tip.clone(), paths: vec!["shared.txt".to_string()] };
    assert_eq!(outcome, expected);
    let text = std::fs::read_to_string(wt.path.join("shared.txt")).expect("conflicted file");
    assert!(
        text.contains("<<<<<<<") && text.contains("branch side") && text.contains("default side"),
        "conflict markers with both sides: {text}"
    );
    assert_eq!(ws.rebase(&f.project, &wt).await.expect("rebase again"), expected, "reported again");

    // Markers left in place are never committed.
    let commit = CommitRequest {
        worktree: &wt,
        message: "resolve",
        author_name: "Paid",
        author_email: "paid@localhost",
        limits: Default::default(),
    };
    let refused = ws.commit_all(&commit).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("shared.txt")),
        "an unresolved conflict is refused, naming the file: {refused:?}"
    );

    // The agent resolves.
    std::fs::write(wt.path.join("shared.txt"), "both sides\n").expect("resolve");
    wt.base_commit = main_tip.clone();
    let commit = CommitRequest {
        worktree: &wt,
        message: "resolve",
        author_name: "Paid",
        author_email: "paid@localhost",
        limits: Default::default(),
    };
    let merge = ws.commit_all(&commit).await.expect("commit").expect("the merge commit");
    assert_eq!(ws.commit_all(&commit).await.expect("commit again"), None, "the merge is done");
    let mut changed = ws.changed_paths(&wt).await.expect("changed");
    changed.sort();
    assert_eq!(changed, vec!["mine.txt".to_string(), "shared.txt".to_string()], "the branch's own changes only");
    assert_eq!(ws.rebase(&f.project, &wt).await.expect("rebase after"), RebaseOutcome::UpToDate);
    ws.push(&f.project, &wt).await.expect("push (a fast-forward)");
    assert_eq!((f.remote_branch)(branch), Some(merge));
    ws.remove(&wt).await.expect("remove");
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

    let commit = CommitRequest {
        worktree: &wt,
        message: "conformance",
        author_name: "Paid",
        author_email: "paid@localhost",
        limits: Default::default(),
    };
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

/// `sweep_orphans` never removes a worktree of a run it is told to keep,
/// leaves worktrees younger than `older_than` alone, and removes the
/// worktree of a run it was not told to keep once old enough (reporting
/// its path).
pub async fn sweep_keeps_active_runs(f: &WorkspacesFixture) {
    let ws = &f.workspaces;
    let (kept_run, orphan_run) = (RunId(uuid::Uuid::now_v7()), RunId(uuid::Uuid::now_v7()));
    let kept = ws
        .create_worktree(&WorktreeRequest { project: &f.project, run_id: kept_run, branch: "paid/2-sweep-bbbbbb" })
        .await
        .expect("worktree");
    let orphan = ws
        .create_worktree(&WorktreeRequest { project: &f.project, run_id: orphan_run, branch: "paid/3-sweep-cccccc" })
        .await
        .expect("worktree");

    // Too young: nothing of ours is removed.
    let removed = ws.sweep_orphans(&[kept_run], Duration::hours(24)).await.expect("sweep");
    assert!(!removed.contains(&kept.path) && !removed.contains(&orphan.path), "{removed:?}");
    assert!(kept.path.exists() && orphan.path.exists(), "a young worktree was removed");

    let removed = ws.sweep_orphans(&[kept_run], Duration::zero()).await.expect("sweep");
    assert!(!removed.contains(&kept.path), "the kept run's worktree was reported removed: {removed:?}");
    assert!(kept.path.exists(), "the kept run's worktree was removed");
    assert!(removed.contains(&orphan.path), "the orphan was not reported removed: {removed:?}");
    assert!(!orphan.path.exists(), "the orphan's worktree is still there");
    ws.remove(&kept).await.expect("remove");
    ws.remove(&orphan).await.expect("removing a swept worktree is fine");
}

/// A worktree within its limits passes the check and commits; one file
/// over the per-file cap fails the check and the commit with
/// `worktree_limit`, and the commit takes nothing (HEAD stays).
pub async fn limits_are_checked_and_a_commit_over_them_takes_nothing(f: &WorkspacesFixture) {
    let ws = &f.workspaces;
    ws.ensure_mirror(&f.project).await.expect("mirror");
    let run_id = RunId(uuid::Uuid::now_v7());
    let branch = "paid/1-limits-bbbbbb";
    let wt = ws.create_worktree(&WorktreeRequest { project: &f.project, run_id, branch }).await.expect("worktree");
    let limits = crate::WorktreeLimits { file_bytes: 1000, ..Default::default() };
    std::fs::write(wt.path.join("small.txt"), "fine").expect("write");
    ws.check_limits(&wt, &limits).await.expect("within the limits");
    let commit =
        |message| CommitRequest { worktree: &wt, message, author_name: "Paid", author_email: "paid@localhost", limits };
    ws.commit_all(&commit("small")).await.expect("commit").expect("a change");
    let head = std::fs::read_to_string(wt.path.join("small.txt")).expect("read");
    assert_eq!(head, "fine");

    // Sparse: 5 MB apparent, nothing on disk, never read.
    std::fs::File::create(wt.path.join("big.bin")).expect("create").set_len(5_000_000).expect("grow");
    let err = ws.check_limits(&wt, &limits).await.expect_err("over the per-file cap");
    assert_eq!(err.code(), "worktree_limit", "{err}");
    assert!(err.to_string().contains("big.bin"), "{err}");
    std::fs::write(wt.path.join("small.txt"), "changed").expect("write");
    let err = ws.commit_all(&commit("big")).await.expect_err("the commit is refused");
    assert_eq!(err.code(), "worktree_limit", "{err}");
    // Nothing of the refused commit was made: the change is still uncommitted.
    assert!(ws.changed_paths(&wt).await.expect("paths").contains(&"big.bin".to_string()));
    std::fs::remove_file(wt.path.join("big.bin")).expect("remove");
    let id = ws.commit_all(&commit("small again")).await.expect("commit");
    assert!(id.is_some(), "the earlier change was not taken by the refused commit");
    ws.remove(&wt).await.expect("remove");
}
