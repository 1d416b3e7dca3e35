//! Just the fields of GitHub's REST objects that the forge reads and sends.
//!
//! Everything else in a response is ignored, so both real GitHub and the fake
//! deserialize without depending on octocrab's complete models.

use paid_core::{ForgeIssue, IssueState};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// A user reference (`user`, `author`...).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct User {
    pub login: String,
    /// The immutable numeric id (a login can be given up and re-registered
    /// by someone else; the id cannot).
    #[serde(default)]
    pub id: Option<u64>,
}

/// A label as it appears on an issue: an object with a `name`, or (in some
/// payloads) a bare string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Label {
    Object { name: String },
    Name(String),
}

impl Label {
    pub fn name(&self) -> &str {
        match self {
            Label::Object { name } | Label::Name(name) => name,
        }
    }
}

/// An item of `GET /repos/{o}/{r}/issues` or `GET .../issues/{n}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Issue {
    /// The database id (what the sub-issue API takes), not the number.
    #[serde(default)]
    pub id: u64,
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub labels: Vec<Label>,
    pub state: String,
    pub html_url: String,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

impl Issue {
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.as_ref().is_some_and(|v| !v.is_null())
    }
}

impl From<Issue> for ForgeIssue {
    fn from(i: Issue) -> Self {
        ForgeIssue {
            number: i.number,
            title: i.title,
            body: i.body.unwrap_or_default(),
            // GitHub shows deleted accounts as "ghost".
            author: i.user.as_ref().map(|u| u.login.clone()).unwrap_or_else(|| "ghost".into()),
            author_id: i.user.as_ref().and_then(|u| u.id),
            labels: i.labels.iter().map(|l| l.name().to_string()).collect(),
            state: if i.state.eq_ignore_ascii_case("closed") { IssueState::Closed } else { IssueState::Open },
            url: i.html_url,
        }
    }
}

/// An issue comment.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
}

/// `head` / `base` of a pull request.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PullRef {
    #[serde(rename = "ref")]
    pub ref_name: String,
    #[serde(default)]
    pub sha: String,
}

/// A pull request (simple or full shape).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Pull {
    pub number: u64,
    pub html_url: String,
    pub head: PullRef,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub state: String,
    /// Only in the full shape.
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub merged_at: Option<String>,
}

/// Body of `POST .../issues`.
#[derive(Debug, Serialize)]
pub(crate) struct NewIssue<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub labels: &'a [String],
}

/// Body of `PATCH .../issues/{n}` changing the body.
#[derive(Debug, Serialize)]
pub(crate) struct IssueBody<'a> {
    pub body: &'a str,
}

/// Body of `POST .../issues/{n}/sub_issues`.
#[derive(Debug, Serialize)]
pub(crate) struct AddSubIssue {
    pub sub_issue_id: u64,
}

/// A check run (`GET .../commits/{ref}/check-runs`, inside `check_runs`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CheckRun {
    pub name: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub details_url: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub output: Option<CheckOutput>,
}

/// `output` of a check run.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct CheckOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

/// A pull request review comment (`GET .../pulls/{n}/comments`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReviewComment {
    pub id: u64,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub line: Option<u64>,
    /// `null` once the commented line is no longer in the diff (outdated).
    #[serde(default)]
    pub position: Option<u64>,
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
}

/// A pull request review (`GET .../pulls/{n}/reviews`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Review {
    pub id: u64,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: String,
}

/// A reaction (`GET .../issues/{n}/reactions`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Reaction {
    #[serde(default)]
    pub user: Option<User>,
    pub content: String,
}

/// Body of `POST .../issues/{n}/comments` and `PATCH .../issues/comments/{id}`.
#[derive(Debug, Serialize)]
pub(crate) struct CommentBody<'a> {
    pub body: &'a str,
}

/// Body of `POST .../issues/{n}/labels`.
#[derive(Debug, Serialize)]
pub(crate) struct AddLabels<'a> {
    pub labels: &'a [String],
}

/// Body of `POST .../pulls`.
#[derive(Debug, Serialize)]
pub(crate) struct NewPull<'a> {
    pub title: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub body: &'a str,
    /// Let maintainers push to the branch (only meaningful for forks).
    pub maintainer_can_modify: bool,
}

/// GitHub's error body: `{"message", "errors", "documentation_url"}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub errors: Vec<ErrorDetail>,
}

/// One entry of `errors`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ErrorDetail {
    Object(ValidationError),
    Text(String),
    Other(serde_json::Value),
}

impl From<ErrorDetail> for ValidationError {
    fn from(d: ErrorDetail) -> Self {
        match d {
            ErrorDetail::Object(e) => e,
            ErrorDetail::Text(s) => ValidationError::message(s),
            ErrorDetail::Other(v) => ValidationError::message(v.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGINATE: &str = include_str!("../../fixtures/github/paginate-issues.json");
    const ERRORS: &str = include_str!("../../fixtures/github/errors.json");

    #[test]
    fn recorded_issues_deserialize() {
        let session: Vec<serde_json::Value> = serde_json::from_str(PAGINATE).unwrap();
        let mut numbers = Vec::new();
        for entry in &session {
            let issues: Vec<Issue> = serde_json::from_value(entry["response"].clone()).unwrap();
            numbers.extend(issues.into_iter().map(|i| ForgeIssue::from(i).number));
        }
        assert_eq!(numbers, (1..=13).rev().collect::<Vec<_>>());
        let first: Issue = serde_json::from_value(session[0]["response"][0].clone()).unwrap();
        let issue = ForgeIssue::from(first);
        assert_eq!(issue.author, "octokit-fixture-user-a");
        assert_eq!(issue.author_id, Some(1000), "GitHub's numeric `user.id`");
        assert_eq!(issue.state, IssueState::Open);
        assert_eq!(issue.body, "");
        assert_eq!(issue.url, "https://github.com/octokit-fixture-org/paginate-issues/issues/13");
    }

    #[test]
    fn an_issue_without_a_user_is_by_ghost_with_no_id() {
        let session: Vec<serde_json::Value> = serde_json::from_str(PAGINATE).unwrap();
        let mut raw = session[0]["response"][0].clone();
        raw["user"] = serde_json::Value::Null;
        let issue = ForgeIssue::from(serde_json::from_value::<Issue>(raw).unwrap());
        assert_eq!((issue.author.as_str(), issue.author_id), ("ghost", None));
    }

    #[test]
    fn recorded_422_body_deserializes() {
        let session: Vec<serde_json::Value> = serde_json::from_str(ERRORS).unwrap();
        let body: ErrorBody = serde_json::from_value(session[0]["response"].clone()).unwrap();
        assert_eq!(body.message.as_deref(), Some("Validation Failed"));
        let errors: Vec<ValidationError> = body.errors.into_iter().map(Into::into).collect();
        assert_eq!(errors, vec![ValidationError::field("Label", "color", "invalid")]);
    }

    #[test]
    fn labels_may_be_strings_and_pull_requests_are_recognized() {
        let issue: Issue = serde_json::from_value(serde_json::json!({
            "number": 1, "title": "t", "state": "closed", "html_url": "u", "user": null,
            "labels": ["a", {"name": "b", "color": "fff"}],
            "pull_request": {"url": "x"}
        }))
        .unwrap();
        assert!(issue.is_pull_request());
        let issue = ForgeIssue::from(issue);
        assert_eq!(issue.labels, vec!["a", "b"]);
        assert_eq!(issue.author, "ghost");
        assert_eq!(issue.state, IssueState::Closed);
    }
}
