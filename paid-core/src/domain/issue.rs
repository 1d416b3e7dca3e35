use serde::{Deserialize, Serialize};

use crate::{ProjectId, Timestamp};

/// Whether an issue is open on the forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueState {
    /// Open.
    Open,
    /// Closed.
    Closed,
}

/// An issue Paid has seen on the forge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedIssue {
    /// The project.
    pub project_id: ProjectId,
    /// Issue number on the forge.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body text. Only ever put into a prompt when `trusted`.
    pub body: String,
    /// Login of the author (for display).
    pub author: String,
    /// The author's immutable numeric user id, when the forge reports one.
    #[serde(default)]
    pub author_id: Option<u64>,
    /// Labels.
    pub labels: Vec<String>,
    /// Open or closed.
    pub state: IssueState,
    /// Web URL.
    pub url: String,
    /// Whether the author is in the project's allowlist at the time it was seen.
    pub trusted: bool,
    /// When Paid last saw it change.
    pub updated_at: Timestamp,
}

/// The issue's text as Paid saw it when it queued a run, stored with the
/// run ([`crate::RunContext::issue`]): what the run's prompt, commit and PR
/// title use, whoever edits the issue afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueSnapshot {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Login of the author.
    pub author: String,
    /// The author's numeric user id, when the forge reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<u64>,
    /// When it was taken (the run's queueing).
    pub taken_at: Timestamp,
}

impl IssueSnapshot {
    /// `issue` with this snapshot's text and author.
    pub fn apply(&self, issue: &TrackedIssue) -> TrackedIssue {
        TrackedIssue {
            title: self.title.clone(),
            body: self.body.clone(),
            author: self.author.clone(),
            author_id: self.author_id,
            ..issue.clone()
        }
    }
}

/// An allowlisted login pinned to the user id it had when Paid first saw
/// it ([`crate::Catalog::pin_author`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorPin {
    /// The project.
    pub project_id: ProjectId,
    /// The login, lowercase.
    pub login: String,
    /// The numeric user id it is pinned to.
    pub user_id: u64,
    /// When it was pinned.
    pub pinned_at: Timestamp,
}
