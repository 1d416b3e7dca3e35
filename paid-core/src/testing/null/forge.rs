//! [`NullForge`] and [`NullWorkspaces`]: a forge and workspaces whose
//! writes do nothing.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::Duration;

use crate::{
    CommentRequest, Error, Forge, ForgeIssue, LabelChange, PollRequest, PrFeedback, PrFeedbackRequest, PrRequest,
    PrState, Project, PullRequest, RebaseOutcome, RepoRef, Result, RunId, Timestamp, Workspaces, Worktree,
    WorktreeRequest,
};

/// A [`Forge`] that writes nothing and sees nothing: polls and lists are
/// empty, an issue is [`Error::NotFound`], a comment "is" comment 1, labels
/// are "set", a pull request is "created" (number 1) for any head, and the
/// feedback on it is an open PR that nobody commented on.
///
/// The negative control of the forge conformance suite.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullForge;

#[async_trait]
impl Forge for NullForge {
    async fn poll_triggered(&self, _req: &PollRequest) -> Result<Vec<ForgeIssue>> {
        Ok(Vec::new())
    }
    async fn issue(&self, repo: &RepoRef, number: u64) -> Result<ForgeIssue> {
        Err(Error::NotFound { entity: "issue", id: format!("{repo}#{number}") })
    }
    async fn upsert_comment(&self, _req: &CommentRequest) -> Result<u64> {
        Ok(1)
    }
    async fn set_labels(&self, _req: &LabelChange) -> Result<()> {
        Ok(())
    }
    async fn find_or_create_pr(&self, req: &PrRequest) -> Result<PullRequest> {
        Ok(PullRequest {
            number: 1,
            url: format!("https://forge.invalid/{}/pull/1", req.repo),
            head: req.head.clone(),
            created: true,
        })
    }
    async fn pr_feedback(&self, _req: &PrFeedbackRequest) -> Result<PrFeedback> {
        Ok(PrFeedback {
            state: PrState::Open,
            head_sha: String::new(),
            failing_checks: Vec::new(),
            review_comments: Vec::new(),
            votes: Default::default(),
        })
    }
    async fn closed_issues(&self, _repo: &RepoRef, _since: Timestamp) -> Result<Vec<ForgeIssue>> {
        Ok(Vec::new())
    }
}

/// [`Workspaces`] that touch no disk and no remote: mirrors "exist",
/// worktrees are paths under `root` that are never created, there is never
/// anything to commit, rebases are up to date, pushes and removals succeed
/// and sweeps remove nothing.
///
/// The negative control of the workspaces conformance suite.
#[derive(Debug, Clone, Default)]
pub struct NullWorkspaces {
    root: PathBuf,
}

impl NullWorkspaces {
    /// Workspaces whose (never created) worktrees would live under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

#[async_trait]
impl Workspaces for NullWorkspaces {
    async fn ensure_mirror(&self, _project: &Project) -> Result<()> {
        Ok(())
    }
    async fn create_worktree(&self, req: &WorktreeRequest<'_>) -> Result<Worktree> {
        Ok(Worktree {
            run_id: req.run_id,
            path: self.root.join(req.run_id.to_string()),
            branch: req.branch.to_string(),
            base_commit: String::new(),
        })
    }
    async fn commit_all(&self, _req: &crate::CommitRequest<'_>) -> Result<Option<String>> {
        Ok(None)
    }
    async fn changed_paths(&self, _worktree: &Worktree) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn lines_changed(&self, _worktree: &Worktree) -> Result<Option<u64>> {
        Ok(None)
    }
    async fn rebase(&self, _project: &Project, _worktree: &Worktree) -> Result<RebaseOutcome> {
        Ok(RebaseOutcome::UpToDate)
    }
    async fn push(&self, _project: &Project, _worktree: &Worktree) -> Result<()> {
        Ok(())
    }
    async fn check_limits(&self, _worktree: &Worktree, _limits: &crate::WorktreeLimits) -> Result<()> {
        Ok(())
    }
    async fn remove(&self, _worktree: &Worktree) -> Result<()> {
        Ok(())
    }
    async fn sweep_orphans(&self, _keep: &[RunId], _older_than: Duration) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
}
