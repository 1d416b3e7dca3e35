//! The fake's in-memory GitHub: repositories, issues (pull requests are
//! issues with a `pull` part, sharing their numbers, as on GitHub), comments,
//! and a log of requests.

use std::collections::{BTreeMap, VecDeque};

use paid_core::Timestamp;

/// A request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoggedRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, e.g. `/repos/o/r/issues`.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// A comment, as stored by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FakeComment {
    /// Comment id.
    pub id: u64,
    /// The issue or PR number.
    pub issue: u64,
    /// Author login.
    pub author: String,
    /// Body.
    pub body: String,
    /// How many times it was edited.
    pub edits: u32,
}

/// A pull request, as stored by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FakePullRequest {
    /// Number (shared with issues).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Head branch.
    pub head: String,
    /// Owner of the head branch's repository: the repository's own owner,
    /// or a fork's (the PR was opened with `head: owner:branch`).
    pub head_owner: String,
    /// Base branch.
    pub base: String,
    /// Labels.
    pub labels: Vec<String>,
    /// `open`, `closed` or `merged`.
    pub state: String,
    /// Author login.
    pub author: String,
    /// Web URL (on the fake; it serves a plain-text page there).
    pub html_url: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Pull {
    pub id: u64,
    pub head: String,
    /// The fork's owner when the head is on a fork.
    pub head_owner: Option<String>,
    pub head_sha: String,
    pub base: String,
    pub merged: bool,
}

/// Whether the fake offers GitHub's sub-issue API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubIssueSupport {
    /// `/issues/{n}/sub_issues` works, as on github.com.
    #[default]
    Enabled,
    /// The endpoint answers `404 Not Found`, as on a GitHub Enterprise
    /// Server without it.
    NotFound,
    /// The endpoint answers `422` saying sub-issues are disabled.
    Disabled,
}

/// A failure the fake answers with instead of the next request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeFault {
    /// This status with GitHub's body for it (`403`/`429` also carry
    /// `retry-after: 1`).
    Status(u16),
    /// `403` "You have exceeded a secondary rate limit" with `retry-after`
    /// (seconds).
    SecondaryRateLimit {
        /// The `retry-after` value, in seconds.
        retry_after: u64,
    },
    /// `403` "API rate limit exceeded" with `x-ratelimit-remaining: 0` and
    /// `x-ratelimit-reset` this many seconds from now.
    PrimaryRateLimit {
        /// Seconds until the reset.
        reset_in: u64,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct CheckRunRec {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
pub(crate) struct ReviewCommentRec {
    pub id: u64,
    pub pull: u64,
    pub author: String,
    pub body: String,
    pub path: String,
    pub line: u64,
    pub outdated: bool,
    pub in_reply_to: Option<u64>,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
pub(crate) struct ReviewRec {
    pub id: u64,
    pub pull: u64,
    pub author: String,
    pub state: String,
    pub body: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
pub(crate) struct ReactionRec {
    pub id: u64,
    pub issue: u64,
    pub author: String,
    pub content: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub author: String,
    pub labels: Vec<String>,
    pub open: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub pull: Option<Pull>,
}

#[derive(Debug, Clone)]
pub(crate) struct Comment {
    pub id: u64,
    pub issue: u64,
    pub author: String,
    pub body: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub edits: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub issues: BTreeMap<u64, Issue>,
    pub comments: Vec<Comment>,
    /// Label name → id, in the order labels were first used.
    pub labels: BTreeMap<String, u64>,
    /// Parent number → sub-issue numbers, in the order they were added.
    pub sub_issues: BTreeMap<u64, Vec<u64>>,
    /// Head sha → check runs.
    pub check_runs: BTreeMap<String, Vec<CheckRunRec>>,
    pub review_comments: Vec<ReviewCommentRec>,
    pub reviews: Vec<ReviewRec>,
    pub reactions: Vec<ReactionRec>,
    /// Whether the token may push (`permissions.push` of `GET /repos/{o}/{r}`).
    pub push: bool,
}

impl Repo {
    pub fn label_id(&mut self, name: &str, next_id: &mut u64) -> u64 {
        *self.labels.entry(name.to_string()).or_insert_with(|| bump(next_id))
    }

    pub fn next_number(&self) -> u64 {
        self.issues.keys().next_back().map_or(1, |n| n + 1)
    }
}

/// Everything the fake holds.
#[derive(Debug)]
pub(crate) struct State {
    pub base_url: String,
    pub token: Option<String>,
    pub login: String,
    pub repos: BTreeMap<(String, String), Repo>,
    pub next_id: u64,
    pub requests: Vec<LoggedRequest>,
    /// Requests that count against the rate limit (not `304`s).
    pub rate_used: u64,
    pub rate_limit: u64,
    pub failures: VecDeque<FakeFault>,
    /// Answered to every request once `failures` is empty, until cleared.
    pub always: Option<FakeFault>,
    pub sub_issue_support: SubIssueSupport,
    /// The scopes of a classic token (`x-oauth-scopes`); `None` for a
    /// fine-grained or app token.
    pub scopes: Option<Vec<String>>,
    /// User ids by lowercase login, where set; others derive from the login.
    pub user_ids: BTreeMap<String, u64>,
}

pub(crate) fn bump(next: &mut u64) -> u64 {
    *next += 1;
    *next
}

impl State {
    pub fn new(base_url: String, token: Option<String>, login: String) -> Self {
        Self {
            base_url,
            token,
            login,
            repos: BTreeMap::new(),
            next_id: 1000,
            requests: Vec::new(),
            rate_used: 0,
            rate_limit: 5000,
            failures: VecDeque::new(),
            always: None,
            sub_issue_support: SubIssueSupport::default(),
            scopes: None,
            user_ids: BTreeMap::new(),
        }
    }

    /// The repository, created on first use.
    pub fn repo_mut(&mut self, owner: &str, name: &str) -> &mut Repo {
        let next = &mut self.next_id;
        self.repos.entry((owner.to_string(), name.to_string())).or_insert_with(|| Repo {
            id: bump(next),
            owner: owner.to_string(),
            name: name.to_string(),
            issues: BTreeMap::new(),
            comments: Vec::new(),
            labels: BTreeMap::new(),
            sub_issues: BTreeMap::new(),
            check_runs: BTreeMap::new(),
            review_comments: Vec::new(),
            reviews: Vec::new(),
            reactions: Vec::new(),
            push: true,
        })
    }

    pub fn repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&(owner.to_string(), name.to_string()))
    }

    pub fn repo_by_id(&self, id: u64) -> Option<(String, String)> {
        self.repos.values().find(|r| r.id == id).map(|r| (r.owner.clone(), r.name.clone()))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_issue(
        &mut self,
        owner: &str,
        name: &str,
        number: u64,
        title: &str,
        body: &str,
        author: &str,
        labels: &[&str],
        now: Timestamp,
    ) {
        let id = bump(&mut self.next_id);
        let mut next = self.next_id;
        let repo = self.repo_mut(owner, name);
        for l in labels {
            repo.label_id(l, &mut next);
        }
        repo.issues.insert(
            number,
            Issue {
                id,
                number,
                title: title.to_string(),
                body: (!body.is_empty()).then(|| body.to_string()),
                author: author.to_string(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                open: true,
                created_at: now,
                updated_at: now,
                closed_at: None,
                pull: None,
            },
        );
        self.next_id = next;
    }

    pub fn pull_requests(&self, owner: &str, name: &str) -> Vec<FakePullRequest> {
        let Some(repo) = self.repo(owner, name) else { return Vec::new() };
        repo.issues
            .values()
            .filter_map(|i| {
                let p = i.pull.as_ref()?;
                Some(FakePullRequest {
                    number: i.number,
                    title: i.title.clone(),
                    body: i.body.clone().unwrap_or_default(),
                    head: p.head.clone(),
                    head_owner: p.head_owner.clone().unwrap_or_else(|| repo.owner.clone()),
                    base: p.base.clone(),
                    labels: i.labels.clone(),
                    state: if p.merged {
                        "merged"
                    } else if i.open {
                        "open"
                    } else {
                        "closed"
                    }
                    .into(),
                    author: i.author.clone(),
                    html_url: format!("{}/{owner}/{name}/pull/{}", self.base_url, i.number),
                })
            })
            .collect()
    }
}
