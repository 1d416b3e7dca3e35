//! The code host: the [`Forge`] port.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, IssueState, RepoRef, Result, Timestamp};

/// An issue as the forge reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgeIssue {
    /// Number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body (may be empty).
    pub body: String,
    /// Author login (for display; trust goes by [`ForgeIssue::author_id`]
    /// when the forge reports one).
    pub author: String,
    /// The author's immutable numeric user id (GitHub's `user.id`), when
    /// the forge reports one. A login can be given up and taken by someone
    /// else; the id cannot.
    #[serde(default)]
    pub author_id: Option<u64>,
    /// Label names.
    pub labels: Vec<String>,
    /// Open or closed.
    pub state: IssueState,
    /// Web URL.
    pub url: String,
}

/// Which issues to look for.
#[derive(Debug, Clone, PartialEq)]
pub struct PollRequest {
    /// The repository.
    pub repo: RepoRef,
    /// Issues carrying **any** of these labels.
    pub labels: Vec<String>,
}

/// A pull request to find or create.
#[derive(Debug, Clone, PartialEq)]
pub struct PrRequest {
    /// The repository.
    pub repo: RepoRef,
    /// Head branch (the idempotency key).
    pub head: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Labels to put on it.
    pub labels: Vec<String>,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Number.
    pub number: u64,
    /// Web URL.
    pub url: String,
    /// Head branch.
    pub head: String,
    /// Whether this call created it (false: it already existed).
    pub created: bool,
}

/// A comment identified by a hidden marker, created once and edited after.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentRequest {
    /// The repository.
    pub repo: RepoRef,
    /// Issue or PR number.
    pub number: u64,
    /// A hidden marker, e.g. `<!-- paid:run:... -->`; the comment carrying it
    /// is edited instead of a new one being added.
    pub marker: String,
    /// Body (the marker is added if missing).
    pub body: String,
}

/// Label changes on an issue.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelChange {
    /// The repository.
    pub repo: RepoRef,
    /// Issue number.
    pub number: u64,
    /// Labels to add.
    pub add: Vec<String>,
    /// Labels to remove (absent ones are ignored).
    pub remove: Vec<String>,
}

/// An issue to create under a parent issue (planning): labeled for
/// execution and linked to the parent.
#[derive(Debug, Clone, PartialEq)]
pub struct SubIssueRequest {
    /// The repository.
    pub repo: RepoRef,
    /// The parent issue's number.
    pub parent: u64,
    /// Title.
    pub title: String,
    /// Body (acceptance criteria...).
    pub body: String,
    /// Labels to put on it, e.g. `paid-build` so it is executed.
    pub labels: Vec<String>,
    /// Idempotency key, stable across retries (e.g. `{run_id}:{index}`): a
    /// sub-issue already created with this key is returned instead of a
    /// second one.
    pub key: String,
}

/// How a sub-issue is tied to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubIssueLink {
    /// The forge's own sub-issue relation.
    SubIssue,
    /// A task-list line (`- [ ] #N title`) in the parent's body, where the
    /// forge has no sub-issues.
    TaskList,
}

/// A sub-issue created (or found) under a parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubIssue {
    /// Its number.
    pub number: u64,
    /// Web URL.
    pub url: String,
    /// How it is tied to the parent.
    pub link: SubIssueLink,
    /// Whether this call created it (false: found by its key).
    pub created: bool,
}

/// Which pull request to fetch follow-up feedback for.
#[derive(Debug, Clone, PartialEq)]
pub struct PrFeedbackRequest {
    /// The repository.
    pub repo: RepoRef,
    /// The pull request's number.
    pub number: u64,
    /// Logins whose review text and votes count: the project's allowlisted
    /// logins that are not pinned to a user id yet (see
    /// [`crate::Catalog::pin_author`]).
    pub trusted_authors: Vec<String>,
    /// User ids whose review text and votes count: the project's
    /// `allowed_author_ids` and the ids its allowlisted logins are pinned to.
    /// An author counts when their id is here or their login is in
    /// `trusted_authors`; everyone else's text and votes are dropped by the
    /// forge, so they never reach a prompt. Forges that report no ids
    /// compare logins only.
    pub trusted_author_ids: Vec<u64>,
}

/// Whether a pull request is open, merged or closed unmerged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    /// Open.
    Open,
    /// Merged.
    Merged,
    /// Closed without merging.
    Closed,
}

/// A check run on the PR's head commit that did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingCheck {
    /// The check's name, e.g. `test (ubuntu-latest)`.
    pub name: String,
    /// Its output (title, summary and text, capped by the forge); may be empty.
    pub output: String,
}

/// A review comment (or review summary) by a trusted author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewComment {
    /// Author login.
    pub author: String,
    /// The author's numeric user id, when the forge reports one.
    #[serde(default)]
    pub author_id: Option<u64>,
    /// Text.
    pub body: String,
    /// File path, for comments on the diff.
    pub path: Option<String>,
    /// Line in the file, when the forge gives one.
    pub line: Option<u64>,
}

/// 👍 / 👎 on the pull request, from trusted authors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Votes {
    /// `+1` reactions.
    pub up: u32,
    /// `-1` reactions.
    pub down: u32,
}

impl Votes {
    /// The human vote of an outcome: `Some(1)` (more 👍), `Some(-1)` (more
    /// 👎) or `None` (a tie, or no votes).
    pub fn human_vote(&self) -> Option<i8> {
        match self.up.cmp(&self.down) {
            std::cmp::Ordering::Greater => Some(1),
            std::cmp::Ordering::Less => Some(-1),
            std::cmp::Ordering::Equal => None,
        }
    }
}

/// What a pull request's checks, reviewers and readers say: the input of a
/// follow-up run and of the outcome record. Only trusted authors' text and
/// votes are in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrFeedback {
    /// Open, merged or closed.
    pub state: PrState,
    /// The head commit the checks ran on (empty when unknown).
    pub head_sha: String,
    /// Check runs on the head commit that did not pass.
    pub failing_checks: Vec<FailingCheck>,
    /// Open review comments and change requests, trusted authors only.
    pub review_comments: Vec<ReviewComment>,
    /// Reactions, trusted authors only.
    pub votes: Votes,
}

impl PrFeedback {
    /// Whether anything asks for another run: the PR is open and has a
    /// failing check or a trusted review comment.
    pub fn needs_follow_up(&self) -> bool {
        self.state == PrState::Open && (!self.failing_checks.is_empty() || !self.review_comments.is_empty())
    }
}

/// The code host Paid reads issues from and opens PRs on.
#[async_trait]
pub trait Forge: Send + Sync + 'static {
    /// Open issues carrying any of the labels.
    async fn poll_triggered(&self, req: &PollRequest) -> Result<Vec<ForgeIssue>>;
    /// One issue.
    async fn issue(&self, repo: &RepoRef, number: u64) -> Result<ForgeIssue>;
    /// Creates or edits the comment carrying `marker`. Returns its id.
    async fn upsert_comment(&self, req: &CommentRequest) -> Result<u64>;
    /// Adds and removes labels.
    async fn set_labels(&self, req: &LabelChange) -> Result<()>;
    /// Returns the open PR for `head`, or creates it. Never merges.
    async fn find_or_create_pr(&self, req: &PrRequest) -> Result<PullRequest>;
    /// Creates (or finds, by `req.key`) an issue under `req.parent`, linked
    /// as a sub-issue or, where the forge has none, by a task list in the
    /// parent's body. Forges without planning support keep this default,
    /// which fails with a non-retryable [`Error::Backend`].
    async fn create_sub_issue(&self, req: &SubIssueRequest) -> Result<SubIssue> {
        Err(Error::Backend {
            backend: "forge",
            message: format!("this forge does not support creating sub-issues (under {}#{})", req.repo, req.parent),
            retryable: false,
            source: None,
        })
    }

    /// A pull request's state, failing checks, trusted review comments and
    /// trusted votes. Text from authors outside `req.trusted_authors` is
    /// never returned. Forges without follow-up support keep this default,
    /// which fails with a non-retryable [`Error::Backend`].
    async fn pr_feedback(&self, req: &PrFeedbackRequest) -> Result<PrFeedback> {
        Err(Error::Backend {
            backend: "forge",
            message: format!("this forge does not support pull request feedback ({}#{})", req.repo, req.number),
            retryable: false,
            source: None,
        })
    }
    /// Issues of `repo` closed and updated at or after `since` (pull
    /// requests left out), so tracked issues that were closed are noticed.
    /// Forges without it keep this default, which fails with a non-retryable
    /// [`Error::Backend`].
    async fn closed_issues(&self, repo: &RepoRef, since: Timestamp) -> Result<Vec<ForgeIssue>> {
        let _ = since;
        Err(Error::Backend {
            backend: "forge",
            message: format!("this forge does not support listing closed issues ({repo})"),
            retryable: false,
            source: None,
        })
    }
}
