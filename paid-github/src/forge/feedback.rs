//! Follow-up: what a Paid pull request's checks, reviewers and readers say.
//!
//! Trust: review comments, reviews and reactions from authors outside the
//! request's allowlist (by numeric user id, or by login) are filtered out
//! here (and the exclusion logged), so their text can never reach a prompt. Check-run output comes from CI, not
//! from people, and is kept (capped).
//!
//! Review threads come from the REST API, which does not say whether a
//! thread was resolved; threads whose comments are all outdated (their line
//! is no longer in the diff, `position: null`) are treated as settled.

use std::collections::BTreeMap;

use http::Method;
use paid_core::RepoRef;
use serde::{Deserialize, Serialize};

use super::models::{CheckRun, Pull, Reaction, Review as RawReview, ReviewComment as RawComment, User};
use super::{GitHubForge, encode, not_found, repo_path};
use crate::error::Result;

/// Check-run conclusions that count as failing.
const FAILING: &[&str] = &["failure", "timed_out", "cancelled", "action_required", "startup_failure"];
/// Keep at most this many characters of each check-run output field.
const MAX_OUTPUT_CHARS: usize = 8_000;

/// What [`GitHubForge::pr_feedback`] fetches.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRequest {
    /// The repository.
    pub repo: RepoRef,
    /// The pull request's number.
    pub number: u64,
    /// Logins whose review text and votes count; compared
    /// case-insensitively.
    pub trusted_authors: Vec<String>,
    /// User ids (GitHub's numeric `user.id`) whose review text and votes
    /// count, whatever their login. An author counts when their id is here
    /// or their login is in `trusted_authors`; everyone else's is dropped.
    pub trusted_author_ids: Vec<u64>,
}

/// Whether the pull request is still open, was merged or was closed unmerged.
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

/// A check run that did not pass, with its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailingCheck {
    /// The check's name, e.g. `test (ubuntu-latest)`.
    pub name: String,
    /// `failure`, `timed_out`, `cancelled`, `action_required` or `startup_failure`.
    pub conclusion: String,
    /// `output.title`.
    pub title: Option<String>,
    /// `output.summary` (capped).
    pub summary: Option<String>,
    /// `output.text` (capped).
    pub text: Option<String>,
    /// Where the full log is.
    pub details_url: Option<String>,
}

/// One comment of a review thread, by a trusted author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReviewComment {
    /// Comment id.
    pub id: u64,
    /// Author login.
    pub author: String,
    /// The author's numeric user id.
    pub author_id: Option<u64>,
    /// Text.
    pub body: String,
}

/// A review thread on a line of the diff, with only trusted authors' comments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReviewThread {
    /// File path.
    pub path: String,
    /// Line in the file, when GitHub gives one.
    pub line: Option<u64>,
    /// Comments, oldest first.
    pub comments: Vec<ReviewComment>,
}

/// A review's verdict and summary text, by a trusted author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Review {
    /// Review id.
    pub id: u64,
    /// Author login.
    pub author: String,
    /// The author's numeric user id.
    pub author_id: Option<u64>,
    /// `APPROVED`, `CHANGES_REQUESTED` or `COMMENTED`.
    pub state: String,
    /// Summary text (may be empty).
    pub body: String,
}

/// 👍 / 👎 on the pull request, from trusted authors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Votes {
    /// `+1` reactions.
    pub up: u32,
    /// `-1` reactions.
    pub down: u32,
}

impl Votes {
    /// The human vote of DESIGN §7: `1` (more 👍), `-1` (more 👎) or `0`.
    pub fn vote(&self) -> i8 {
        match self.up.cmp(&self.down) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
        }
    }
}

/// Everything a follow-up run and the outcome record need from a PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PrFeedback {
    /// The pull request's number.
    pub number: u64,
    /// Open, merged or closed.
    pub state: PrState,
    /// The head commit the checks ran on.
    pub head_sha: String,
    /// Check runs on the head commit that did not pass.
    pub failing_checks: Vec<FailingCheck>,
    /// Open review threads (trusted comments only).
    pub threads: Vec<ReviewThread>,
    /// Reviews with a verdict or text (trusted authors only).
    pub reviews: Vec<Review>,
    /// Reactions on the PR (trusted authors only).
    pub votes: Votes,
    /// How many comments, reviews and reactions were dropped because their
    /// author is not trusted.
    pub excluded: usize,
}

impl PrFeedback {
    /// Whether anything asks for another run: a failing check, a review
    /// thread, or a review requesting changes.
    pub fn needs_follow_up(&self) -> bool {
        self.state == PrState::Open
            && (!self.failing_checks.is_empty()
                || !self.threads.is_empty()
                || self.reviews.iter().any(|r| r.state == "CHANGES_REQUESTED"))
    }
}

impl GitHubForge {
    /// Fetches a pull request's state, failing check runs on its head commit
    /// (`GET /repos/{o}/{r}/commits/{sha}/check-runs`), review threads
    /// (`GET .../pulls/{n}/comments`), reviews (`GET .../pulls/{n}/reviews`)
    /// and reactions (`GET .../issues/{n}/reactions`). Text and votes from
    /// authors outside `req.trusted_authors` are dropped and the exclusion
    /// logged. All lists are conditional requests, so polling an unchanged PR
    /// costs one rate-limited call (the PR itself).
    pub async fn pr_feedback(&self, req: &FeedbackRequest) -> Result<PrFeedback> {
        let repo = repo_path(&req.repo);
        let n = req.number;
        let pull: Pull = self
            .client
            .json(Method::GET, &format!("{repo}/pulls/{n}"), None::<&()>)
            .await
            .map_err(not_found("pull request", &req.repo, n))?;
        let state = if pull.merged == Some(true) || pull.merged_at.is_some() {
            PrState::Merged
        } else if pull.state.eq_ignore_ascii_case("closed") {
            PrState::Closed
        } else {
            PrState::Open
        };
        let per_page = self.per_page;
        let sha = pull.head.sha.clone();
        let checks: Vec<CheckRun> = if sha.is_empty() {
            Vec::new()
        } else {
            let uri = format!("{repo}/commits/{}/check-runs?per_page={per_page}", encode(&sha));
            self.client.list_in(&uri, "check_runs").await?
        };
        let comments: Vec<RawComment> =
            self.client.list(&format!("{repo}/pulls/{n}/comments?per_page={per_page}")).await?;
        let reviews: Vec<RawReview> =
            self.client.list(&format!("{repo}/pulls/{n}/reviews?per_page={per_page}")).await?;
        let reactions: Vec<Reaction> =
            self.client.list(&format!("{repo}/issues/{n}/reactions?per_page={per_page}")).await?;

        let trusted = |user: Option<&User>| {
            user.is_some_and(|u| {
                u.id.is_some_and(|id| req.trusted_author_ids.contains(&id))
                    || req.trusted_authors.iter().any(|a| a.eq_ignore_ascii_case(&u.login))
            })
        };
        let mut excluded = 0usize;
        let mut exclude = |kind: &str, id: u64, author: Option<&str>| {
            excluded += 1;
            tracing::info!(repo = %req.repo, pr = n, kind, id, author = author.unwrap_or("ghost"),
                "excluding feedback from an untrusted author");
        };

        let failing_checks = checks
            .into_iter()
            .filter(|c| c.conclusion.as_deref().is_some_and(|k| FAILING.contains(&k)))
            .map(|c| {
                let output = c.output.unwrap_or_default();
                FailingCheck {
                    name: c.name,
                    conclusion: c.conclusion.unwrap_or_default(),
                    title: output.title,
                    summary: output.summary.map(cap),
                    text: output.text.map(cap),
                    details_url: c.details_url.or(c.html_url),
                }
            })
            .collect();

        // Threads: a root comment and its replies (`in_reply_to_id` names the root).
        let mut threads: BTreeMap<u64, (ReviewThread, bool)> = BTreeMap::new();
        for c in comments {
            let root = c.in_reply_to_id.unwrap_or(c.id);
            let author = c.user.as_ref().map(|u| u.login.clone());
            let entry = threads
                .entry(root)
                .or_insert_with(|| (ReviewThread { path: c.path.clone(), line: c.line, comments: Vec::new() }, false));
            entry.1 |= c.position.is_some();
            if trusted(c.user.as_ref()) {
                let author_id = c.user.as_ref().and_then(|u| u.id);
                entry.0.comments.push(ReviewComment {
                    id: c.id,
                    author: author.unwrap_or_default(),
                    author_id,
                    body: c.body,
                });
            } else {
                exclude("review comment", c.id, author.as_deref());
            }
        }
        let threads =
            threads.into_values().filter(|(t, current)| *current && !t.comments.is_empty()).map(|(t, _)| t).collect();

        let mut kept_reviews = Vec::new();
        for r in reviews {
            let author = r.user.as_ref().map(|u| u.login.clone());
            if !trusted(r.user.as_ref()) {
                exclude("review", r.id, author.as_deref());
                continue;
            }
            let author_id = r.user.as_ref().and_then(|u| u.id);
            let body = r.body.unwrap_or_default();
            if r.state == "PENDING" || (r.state == "COMMENTED" && body.trim().is_empty()) {
                continue;
            }
            kept_reviews.push(Review { id: r.id, author: author.unwrap_or_default(), author_id, state: r.state, body });
        }

        let mut votes = Votes::default();
        for r in reactions {
            let author = r.user.as_ref().map(|u| u.login.as_str());
            if !matches!(r.content.as_str(), "+1" | "-1") {
                continue;
            }
            if !trusted(r.user.as_ref()) {
                exclude("reaction", 0, author);
                continue;
            }
            if r.content == "+1" {
                votes.up += 1;
            } else {
                votes.down += 1;
            }
        }

        Ok(PrFeedback {
            number: n,
            state,
            head_sha: sha,
            failing_checks,
            threads,
            reviews: kept_reviews,
            votes,
            excluded,
        })
    }
}

fn cap(s: String) -> String {
    if s.chars().count() <= MAX_OUTPUT_CHARS {
        return s;
    }
    let mut out: String = s.chars().take(MAX_OUTPUT_CHARS).collect();
    out.push_str("\n[... truncated]");
    out
}
