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
    /// Pushes the branch to the project's remote, from the host.
    async fn push(&self, project: &Project, worktree: &Worktree) -> Result<()>;
    /// Removes the worktree (idempotent).
    async fn remove(&self, worktree: &Worktree) -> Result<()>;
    /// Removes worktrees older than `older_than` that belong to no active run
    /// in `keep`. Returns the removed paths.
    async fn sweep_orphans(&self, keep: &[RunId], older_than: Duration) -> Result<Vec<PathBuf>>;
}
