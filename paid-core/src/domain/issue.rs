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
    /// Login of the author.
    pub author: String,
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
