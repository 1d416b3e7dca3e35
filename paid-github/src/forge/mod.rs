//! [`GitHubForge`]: the [`Forge`] port on GitHub's REST API, through octocrab.
//!
//! Requests use octocrab's raw methods and this crate's own small models
//! (`models.rs`), so only the fields Paid reads must be present. The client
//! (`client.rs`) follows `link` pagination, makes list requests conditional
//! with ETags and records rate-limit headers.
//!
//! Retries, rate-limit waits and metrics are layers under the client
//! (`layer/`), configured with [`RetryPolicy`]. The retry layer is the one
//! place GitHub calls are retried (octocrab's own retry middleware is off,
//! because it would resend non-idempotent POSTs); what it retried and gave
//! up on is [`Error::RetriesExhausted`], not retryable, so the engine does
//! not retry it again.
//!
//! The token comes from a [`TokenSource`] read before each request
//! ([`GitHubConfig::token_source`]), so a [`SharedToken`] replaced at run
//! time takes effect on the next request. Optional features are
//! [`Capabilities`] in the configuration, never guessed from errors.
//!
//! Beyond the [`Forge`] port, [`GitHubForge`] has planning
//! ([`GitHubForge::create_sub_issue`]), follow-up
//! ([`GitHubForge::pr_feedback`]), closed-issue
//! ([`GitHubForge::closed_since`]) and token-check
//! ([`GitHubForge::check_token`]) methods.

mod check;
mod client;
mod config;
mod feedback;
pub(crate) mod layer;
pub(crate) mod models;
mod planning;
pub(crate) mod token;

use std::collections::BTreeMap;

use async_trait::async_trait;
use http::Method;
use octocrab::Octocrab;
use paid_core::ports::forge::{self as core_forge, SubIssue, SubIssueRequest};
use paid_core::{
    CommentRequest, Forge, ForgeIssue, LabelChange, PollRequest, PrRequest, PullRequest, RepoRef, Timestamp,
};
use secrecy::SecretString;

pub use check::TokenCheck;
pub(crate) use client::encode;
use client::{Client, ClientParts};
pub use client::{ClientStats, RateLimit};
pub use config::{Capabilities, DEFAULT_BASE_URI, GitHubConfig};
pub use feedback::{FailingCheck, FeedbackRequest, PrFeedback, PrState, Review, ReviewComment, ReviewThread, Votes};
pub use layer::retry::RetryPolicy;
use models::{AddLabels, Comment, CommentBody, Issue, NewPull, Pull, User};
pub use token::{NoToken, SharedToken, TokenSource};

use crate::error::{Error, Result};

/// The [`Forge`] on GitHub. Cheap to share behind an `Arc`.
///
/// Idempotency keys: the PR is looked up by head branch before it is
/// created, and the run's comment by its hidden marker before one is added.
/// It never merges anything.
#[derive(Debug)]
pub struct GitHubForge {
    client: Client,
    per_page: u8,
    capabilities: Capabilities,
    login: Login,
}

/// The login the token acts as: configured, or asked once per token.
#[derive(Debug)]
enum Login {
    Configured(String),
    /// The token it was asked with, and the answer.
    Asked(tokio::sync::Mutex<Option<(Option<SecretString>, String)>>),
}

impl GitHubForge {
    /// A forge for `config`. Does no I/O, but must be called within a tokio
    /// runtime (octocrab starts its request buffer on it), and the forge is
    /// used on that runtime.
    pub fn new(config: GitHubConfig) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config {
                what: "runtime",
                message: "GitHubForge::new must be called within a tokio runtime".into(),
            });
        }
        // No token here: the client adds the token source's current token to
        // each request. No retries either: `layer::retry` is the one retry
        // layer (octocrab's would also resend non-idempotent POSTs).
        let octo = Octocrab::builder()
            .base_uri(config.base_uri.as_str())
            .map_err(|e| Error::Config { what: "base_uri", message: format!("{:?}: {e}", config.base_uri) })?
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
            .set_connect_timeout(Some(config.connect_timeout))
            .set_read_timeout(Some(config.read_timeout))
            .build()
            .map_err(|e| Error::Config { what: "client", message: e.to_string() })?;
        let parts = ClientParts {
            token: config.token,
            policy: config.retry,
            metrics: config.metrics,
            token_id: config.token_id,
        };
        let login = match config.login {
            Some(login) => Login::Configured(login),
            None => Login::Asked(tokio::sync::Mutex::new(None)),
        };
        Ok(Self {
            client: Client::new(octo, &config.base_uri, parts)?,
            per_page: config.per_page,
            capabilities: config.capabilities,
            login,
        })
    }

    /// The login the token acts as: configured, or asked with `GET /user`
    /// once per token (again after the token source changed it).
    pub async fn login(&self) -> Result<String> {
        let cache = match &self.login {
            Login::Configured(login) => return Ok(login.clone()),
            Login::Asked(cache) => cache,
        };
        let token = self.client.token();
        let mut cached = cache.lock().await;
        if let Some((asked_with, login)) = cached.as_ref()
            && token::same(asked_with.as_ref(), token.as_ref())
        {
            return Ok(login.clone());
        }
        let user: User = self.client.json(Method::GET, "/user", None::<&()>).await?;
        *cached = Some((token, user.login.clone()));
        Ok(user.login)
    }

    /// What this forge can do, as configured ([`GitHubConfig::capabilities`]).
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Issues of `repo` closed since `since` (GitHub's `since` compares the
    /// issue's `updated_at`, so an issue closed earlier but touched later is
    /// included), pull requests left out. For noticing that tracked issues
    /// were closed: the caller keeps the ones it tracks.
    ///
    /// The request is conditional like every list: with an unchanged `since`
    /// (e.g. the time of the last closure seen, not "now"), an idle poll is
    /// answered `304` and costs no rate-limited call.
    pub async fn closed_since(&self, repo: &RepoRef, since: Timestamp) -> Result<Vec<ForgeIssue>> {
        let uri = format!(
            "{}/issues?state=closed&since={}&per_page={}",
            repo_path(repo),
            encode(&since.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            self.per_page
        );
        let issues: Vec<Issue> = self.client.list(&uri).await.map_err(not_found("repository", repo, None))?;
        Ok(issues.into_iter().filter(|i| !i.is_pull_request()).map(ForgeIssue::from).collect())
    }

    /// The rate-limit state of the last response, if GitHub sent one.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.client.rate_limit()
    }

    /// Requests sent and conditional requests answered `304`.
    pub fn stats(&self) -> ClientStats {
        self.client.stats()
    }

    /// The API base this forge talks to.
    pub fn base_uri(&self) -> &str {
        self.client.base()
    }

    async fn poll(&self, req: &PollRequest) -> Result<Vec<ForgeIssue>> {
        // A comma-joined `labels=` means "all of them" on GitHub: ask per label.
        let mut found = BTreeMap::new();
        for label in &req.labels {
            let uri = format!(
                "{}/issues?state=open&labels={}&per_page={}",
                repo_path(&req.repo),
                encode(label),
                self.per_page
            );
            let issues: Vec<Issue> = self.client.list(&uri).await?;
            for issue in issues.into_iter().filter(|i| !i.is_pull_request()) {
                found.entry(issue.number).or_insert_with(|| ForgeIssue::from(issue));
            }
        }
        Ok(found.into_values().collect())
    }

    async fn get_issue(&self, repo: &RepoRef, number: u64) -> Result<ForgeIssue> {
        let uri = format!("{}/issues/{number}", repo_path(repo));
        let issue: Issue =
            self.client.json(Method::GET, &uri, None::<&()>).await.map_err(not_found("issue", repo, number))?;
        Ok(issue.into())
    }

    async fn upsert(&self, req: &CommentRequest) -> Result<u64> {
        let body =
            if req.body.contains(&req.marker) { req.body.clone() } else { format!("{}\n\n{}", req.body, req.marker) };
        let repo = repo_path(&req.repo);
        let list = format!("{repo}/issues/{}/comments?per_page={}", req.number, self.per_page);
        let comments: Vec<Comment> =
            self.client.list(&list).await.map_err(not_found("issue", &req.repo, req.number))?;
        let login = self.login().await?;
        // Only our own comment is ever edited: anyone can paste the marker.
        let (ours, foreign): (Vec<Comment>, Vec<Comment>) = comments
            .into_iter()
            .filter(|c| c.body.as_deref().is_some_and(|b| b.contains(&req.marker)))
            .partition(|c| c.user.as_ref().is_some_and(|u| u.login.eq_ignore_ascii_case(&login)));
        for c in &foreign {
            tracing::warn!(
                repo = %req.repo,
                issue = req.number,
                comment = c.id,
                author = c.user.as_ref().map_or("ghost", |u| u.login.as_str()),
                "ignoring a comment that carries the run marker but was not written by {login}"
            );
        }
        let existing = ours.into_iter().next();
        match existing {
            Some(c) if c.body.as_deref() == Some(body.as_str()) => Ok(c.id),
            Some(c) => {
                let uri = format!("{repo}/issues/comments/{}", c.id);
                let edited: Comment = self.client.json(Method::PATCH, &uri, Some(&CommentBody { body: &body })).await?;
                Ok(edited.id)
            }
            None => {
                let uri = format!("{repo}/issues/{}/comments", req.number);
                let created: Comment = self
                    .client
                    .json(Method::POST, &uri, Some(&CommentBody { body: &body }))
                    .await
                    .map_err(not_found("issue", &req.repo, req.number))?;
                Ok(created.id)
            }
        }
    }

    async fn labels(&self, req: &LabelChange) -> Result<()> {
        let repo = repo_path(&req.repo);
        if !req.add.is_empty() {
            let uri = format!("{repo}/issues/{}/labels", req.number);
            self.client
                .call(Method::POST, &uri, Some(&AddLabels { labels: &req.add }), true)
                .await
                .map_err(not_found("issue", &req.repo, req.number))?;
        }
        // A label both added and removed stays: adding wins.
        for label in req.remove.iter().filter(|l| !req.add.contains(l)) {
            let uri = format!("{repo}/issues/{}/labels/{}", req.number, encode(label));
            match self.client.call::<()>(Method::DELETE, &uri, None, true).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The open pull request from `head`: a branch of `repo`, or
    /// `owner:branch` for a fork's branch.
    async fn open_pull(&self, repo: &RepoRef, head: &str) -> Result<Option<Pull>> {
        let (owner, branch) = head.split_once(':').unwrap_or((repo.owner.as_str(), head));
        let uri = format!(
            "{}/pulls?head={}&state=open&per_page={}",
            repo_path(repo),
            encode(&format!("{owner}:{branch}")),
            self.per_page
        );
        let pulls: Vec<Pull> = self.client.list(&uri).await.map_err(not_found("repository", repo, None))?;
        Ok(pulls.into_iter().find(|p| p.head.ref_name == branch))
    }

    async fn pull(&self, req: &PrRequest) -> Result<PullRequest> {
        let (pull, created) = match self.open_pull(&req.repo, &req.head).await? {
            Some(p) => (p, false),
            None => {
                let uri = format!("{}/pulls", repo_path(&req.repo));
                let new = NewPull {
                    title: &req.title,
                    head: &req.head,
                    base: &req.base,
                    body: &req.body,
                    maintainer_can_modify: true,
                };
                // Safe to resend: a repeat is refused with "already exists".
                match self.client.json_idempotent::<Pull, _>(Method::POST, &uri, Some(&new)).await {
                    Ok(p) => (p, true),
                    // Created concurrently (or by an attempt whose answer was lost).
                    Err(e) if e.is_pull_request_exists() => match self.open_pull(&req.repo, &req.head).await? {
                        Some(p) => (p, false),
                        None => return Err(e),
                    },
                    Err(e) => return Err(e),
                }
            }
        };
        let missing: Vec<String> =
            req.labels.iter().filter(|l| !pull.labels.iter().any(|have| have.name() == l.as_str())).cloned().collect();
        if !missing.is_empty() {
            let uri = format!("{}/issues/{}/labels", repo_path(&req.repo), pull.number);
            self.client.call(Method::POST, &uri, Some(&AddLabels { labels: &missing }), true).await?;
        }
        Ok(PullRequest { number: pull.number, url: pull.html_url, head: pull.head.ref_name, created })
    }
}

#[async_trait]
impl Forge for GitHubForge {
    async fn poll_triggered(&self, req: &PollRequest) -> paid_core::Result<Vec<ForgeIssue>> {
        Ok(self.poll(req).await?)
    }

    async fn issue(&self, repo: &RepoRef, number: u64) -> paid_core::Result<ForgeIssue> {
        Ok(self.get_issue(repo, number).await?)
    }

    async fn upsert_comment(&self, req: &CommentRequest) -> paid_core::Result<u64> {
        Ok(self.upsert(req).await?)
    }

    async fn set_labels(&self, req: &LabelChange) -> paid_core::Result<()> {
        Ok(self.labels(req).await?)
    }

    async fn find_or_create_pr(&self, req: &PrRequest) -> paid_core::Result<PullRequest> {
        Ok(self.pull(req).await?)
    }

    async fn create_sub_issue(&self, req: &SubIssueRequest) -> paid_core::Result<SubIssue> {
        Ok(GitHubForge::create_sub_issue(self, req).await?)
    }

    async fn pr_feedback(&self, req: &core_forge::PrFeedbackRequest) -> paid_core::Result<core_forge::PrFeedback> {
        let feedback = GitHubForge::pr_feedback(
            self,
            &FeedbackRequest {
                repo: req.repo.clone(),
                number: req.number,
                trusted_authors: req.trusted_authors.clone(),
                trusted_author_ids: req.trusted_author_ids.clone(),
            },
        )
        .await?;
        Ok(feedback.into())
    }

    async fn closed_issues(&self, repo: &RepoRef, since: Timestamp) -> paid_core::Result<Vec<ForgeIssue>> {
        Ok(self.closed_since(repo, since).await?)
    }
}

impl From<PrFeedback> for core_forge::PrFeedback {
    /// The port's lean view: failing checks with their output, trusted
    /// review-thread comments and change requests (with their text), trusted
    /// votes.
    fn from(f: PrFeedback) -> Self {
        let failing_checks = f
            .failing_checks
            .into_iter()
            .map(|c| {
                let output = [c.title, c.summary, c.text]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.trim().is_empty())
                    .fold(Vec::<String>::new(), |mut acc, s| {
                        if !acc.contains(&s) {
                            acc.push(s);
                        }
                        acc
                    })
                    .join("\n");
                core_forge::FailingCheck { name: c.name, output }
            })
            .collect();
        let mut review_comments: Vec<core_forge::ReviewComment> = f
            .threads
            .into_iter()
            .flat_map(|t| {
                let (path, line) = (t.path, t.line);
                t.comments.into_iter().map(move |c| core_forge::ReviewComment {
                    author: c.author,
                    author_id: c.author_id,
                    body: c.body,
                    path: Some(path.clone()),
                    line,
                })
            })
            .collect();
        review_comments.extend(
            f.reviews
                .into_iter()
                .filter(|r| r.state != "APPROVED" && (r.state == "CHANGES_REQUESTED" || !r.body.trim().is_empty()))
                .map(|r| {
                    let body = if r.body.trim().is_empty() { "Changes requested.".to_string() } else { r.body };
                    core_forge::ReviewComment { author: r.author, author_id: r.author_id, body, path: None, line: None }
                }),
        );
        core_forge::PrFeedback {
            state: match f.state {
                PrState::Open => core_forge::PrState::Open,
                PrState::Merged => core_forge::PrState::Merged,
                PrState::Closed => core_forge::PrState::Closed,
            },
            head_sha: f.head_sha,
            failing_checks,
            review_comments,
            votes: core_forge::Votes { up: f.votes.up, down: f.votes.down },
        }
    }
}

pub(crate) fn repo_path(repo: &RepoRef) -> String {
    format!("/repos/{}/{}", encode(&repo.owner), encode(&repo.name))
}

/// Names the entity of a 404.
pub(crate) fn not_found(
    entity: &'static str,
    repo: &RepoRef,
    number: impl Into<Option<u64>>,
) -> impl FnOnce(Error) -> Error {
    let id = match number.into() {
        Some(n) => format!("{repo}#{n}"),
        None => repo.to_string(),
    };
    move |e| match e {
        Error::NotFound { request, .. } => Error::NotFound { entity, id, request },
        e => e,
    }
}
