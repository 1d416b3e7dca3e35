//! Git working copies on the host: the [`Workspaces`] port.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::{Project, Result, RunId};

/// A run's working copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worktree {
    /// The run.
    pub run_id: RunId,
    /// Host path.
    pub path: PathBuf,
    /// The branch checked out.
    pub branch: String,
    /// The commit the branch started from.
    pub base_commit: String,
}

/// A request for a run's worktree.
#[derive(Debug, Clone, PartialEq)]
pub struct WorktreeRequest<'a> {
    /// The project.
    pub project: &'a Project,
    /// The run.
    pub run_id: RunId,
    /// Branch to create (or reuse, if it exists from an earlier attempt).
    pub branch: &'a str,
}

/// A commit to make.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitRequest<'a> {
    /// The worktree.
    pub worktree: &'a Worktree,
    /// Message.
    pub message: &'a str,
    /// Author name.
    pub author_name: &'a str,
    /// Author email.
    pub author_email: &'a str,
    /// What the commit may hold: a file over a cap is refused with
    /// [`crate::Error::WorktreeLimit`] before any of it is read.
    pub limits: crate::WorktreeLimits,
}

/// How [`Workspaces::rebase`] brought a run's branch up to date with the
/// project's default branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RebaseOutcome {
    /// The branch already contains the default branch's tip; nothing changed.
    UpToDate,
    /// The branch's commits were replayed on the default branch's tip
    /// `onto` (or, when the branch holds merge commits, that tip was merged
    /// into it cleanly). The branch was rewritten: the next push needs the
    /// lease.
    Rebased {
        /// The default branch's commit the branch now starts from.
        onto: String,
    },
    /// Replaying conflicted. The branch is unchanged; the default branch's
    /// tip `onto` is being merged into the worktree, with git's conflict
    /// markers in `paths` for the agent to resolve. The next commit is the
    /// merge commit.
    Conflicts {
        /// The default branch's commit being merged.
        onto: String,
        /// The conflicted paths (relative, `/`-separated, sorted).
        paths: Vec<String>,
    },
}

impl RebaseOutcome {
    /// The default branch's commit the worktree now builds on, when it
    /// changed: the worktree's new `base_commit`.
    pub fn onto(&self) -> Option<&str> {
        match self {
            RebaseOutcome::UpToDate => None,
            RebaseOutcome::Rebased { onto } | RebaseOutcome::Conflicts { onto, .. } => Some(onto),
        }
    }
}

/// Mirrors, worktrees, commits and host-side pushes.
#[async_trait]
pub trait Workspaces: Send + Sync + 'static {
    /// Clones (or fetches) the project's mirror. [`crate::Error::Clone`] when
    /// the remote cannot be read.
    async fn ensure_mirror(&self, project: &Project) -> Result<()>;
    /// Creates the run's worktree on `branch` (idempotent: an existing one is
    /// returned as is).
    async fn create_worktree(&self, req: &WorktreeRequest<'_>) -> Result<Worktree>;
    /// Commits every change in the worktree. `None` when there was nothing to commit.
    async fn commit_all(&self, req: &CommitRequest<'_>) -> Result<Option<String>>;
    /// Paths changed on the branch since `base_commit`, plus uncommitted ones.
    async fn changed_paths(&self, worktree: &Worktree) -> Result<Vec<String>>;
    /// Lines added plus removed by the branch's commits since `base_commit`
    /// (comparison runs rank candidates by it). `None` when the backend
    /// cannot tell, which is the default.
    async fn lines_changed(&self, worktree: &Worktree) -> Result<Option<u64>> {
        let _ = worktree;
        Ok(None)
    }
    /// Brings the worktree's branch up to date with the project's default
    /// branch, after fetching the mirror: a follow-up run calls it on its
    /// freshly created worktree. The worktree must have no uncommitted
    /// changes, except from an earlier call that reported conflicts (which
    /// reports them again). On conflicts the worktree is left mid-merge for
    /// the agent to resolve, and [`Workspaces::commit_all`] records the
    /// merge. The caller moves [`Worktree::base_commit`] to
    /// [`RebaseOutcome::onto`].
    async fn rebase(&self, project: &Project, worktree: &Worktree) -> Result<RebaseOutcome>;
    /// Pushes the branch to the project's remote, from the host, with
    /// force-with-lease semantics: a rewritten branch (see
    /// [`Workspaces::rebase`]) replaces the remote one only while that still
    /// points at what Paid last pushed or built on; otherwise the push fails
    /// without touching the remote.
    async fn push(&self, project: &Project, worktree: &Worktree) -> Result<()>;
    /// Checks the worktree against `limits` without reading any file:
    /// [`crate::Error::WorktreeLimit`] at the first cap crossed. The engine
    /// calls it while the agent runs. The default counts every file and
    /// symlink ([`crate::ports::limits::check_tree`]); a backend that knows
    /// what its VCS ignores counts only what a commit would take.
    async fn check_limits(&self, worktree: &Worktree, limits: &crate::WorktreeLimits) -> Result<()> {
        let (root, limits) = (worktree.path.clone(), *limits);
        tokio::task::spawn_blocking(move || crate::ports::limits::check_tree(&root, &limits).map(|_| ()))
            .await
            .map_err(|e| crate::Error::permanent("filesystem", e))?
    }
    /// Removes the worktree (idempotent).
    async fn remove(&self, worktree: &Worktree) -> Result<()>;
    /// Removes worktrees older than `older_than` that belong to no active run
    /// in `keep`. Returns the removed paths.
    async fn sweep_orphans(&self, keep: &[RunId], older_than: Duration) -> Result<Vec<PathBuf>>;
}
