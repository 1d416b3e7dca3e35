//! A fake GitHub REST server for tests and demos (feature `fake`).
//!
//! [`FakeGitHub::start`] serves, on `127.0.0.1` at a free port, the endpoints
//! [`crate::GitHubForge`] uses. Its answers are built from the recorded
//! GitHub objects in this crate's `fixtures/` (same keys, ids, URLs, users,
//! labels), with GitHub's pagination `link` headers, ETags and `304`s,
//! rate-limit headers, and 422 validation bodies. Seed it with
//! [`FakeGitHub::add_issue`], [`FakeGitHub::add_check_run`],
//! [`FakeGitHub::add_review_comment`], [`FakeGitHub::add_reaction`]...,
//! inspect it with [`FakeGitHub::comments`], [`FakeGitHub::pull_requests`],
//! [`FakeGitHub::sub_issues`], [`FakeGitHub::requests`]..., and make it fail
//! with [`FakeGitHub::inject`] and [`FakeGitHub::fail_always`] (5xx,
//! primary and secondary rate limits). [`FakeConfig::sub_issues`] chooses
//! whether the sub-issue API exists; [`FakeConfig::token`] and
//! [`FakeConfig::scopes`] which token it accepts and what a classic token's
//! `x-oauth-scopes` say ([`FakeGitHub::set_token`] rotates or revokes it).
//!
//! Endpoints: `GET /user`; `GET /repos/{o}/{r}` (with `permissions`, see
//! [`FakeGitHub::set_push_access`]); under `/repos/{o}/{r}` (and
//! `/repositories/{id}`): `GET|POST /issues` (`state`, `labels`, `since`, `creator`, pages),
//! `GET|PATCH /issues/{n}`, `GET|POST /issues/{n}/comments`,
//! `GET|PATCH /issues/comments/{id}`, `GET|POST /issues/{n}/labels`,
//! `DELETE /issues/{n}/labels/{name}`, `GET|POST /issues/{n}/sub_issues`,
//! `GET /issues/{n}/reactions`, `GET|POST /pulls`, `GET /pulls/{n}`,
//! `GET /pulls/{n}/comments`, `GET /pulls/{n}/reviews`,
//! `GET /commits/{sha}/check-runs`.
//!
//! ```
//! # async fn demo() -> std::io::Result<()> {
//! use paid_github::fake::FakeGitHub;
//!
//! let github = FakeGitHub::start().await?;
//! github.add_issue("octo", "app", 1, "Fix the build", "It fails.", "alice", &["paid-build"]);
//! // Point a GitHubForge at github.base_url() ...
//! assert_eq!(github.issue_labels("octo", "app", 1), vec!["paid-build"]);
//! # Ok(())
//! # }
//! ```

mod access;
mod pulls;
mod routes;
mod state;
mod templates;

use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

pub use state::{FakeComment, FakeFault, FakePullRequest, LoggedRequest, SubIssueSupport};

use routes::{Shared, lock};
use state::State;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    token: Option<String>,
    login: String,
    sub_issues: SubIssueSupport,
    scopes: Option<Vec<String>>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self { token: None, login: "paid-bot".into(), sub_issues: SubIssueSupport::Enabled, scopes: None }
    }
}

impl FakeConfig {
    /// No token required; comments and PRs are authored by `paid-bot`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Require `Authorization: Bearer <token>` (or `token <token>`) on every
    /// request; others get GitHub's `401 Bad credentials`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The login of the authenticated user (author of created comments/PRs,
    /// answer of `GET /user`).
    pub fn login(mut self, login: impl Into<String>) -> Self {
        self.login = login.into();
        self
    }

    /// Whether the sub-issue API is there (default: enabled, as on github.com).
    pub fn sub_issues(mut self, support: SubIssueSupport) -> Self {
        self.sub_issues = support;
        self
    }

    /// Play a classic token with these scopes: answers to requests carrying
    /// a token get `x-oauth-scopes: a, b` (as in the recorded sessions).
    /// Without it (the default) the token is fine-grained: no such header.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// A running fake GitHub. Stops when dropped.
#[derive(Debug)]
pub struct FakeGitHub {
    base_url: String,
    state: Shared,
    server: JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGitHub {
    /// Starts a fake that requires no token.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(FakeConfig::default()).await
    }

    /// Starts a fake with `config`.
    pub async fn start_with(config: FakeConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let mut st = State::new(base_url.clone(), config.token, config.login);
        st.sub_issue_support = config.sub_issues;
        st.scopes = config.scopes;
        let state: Shared = Arc::new(Mutex::new(st));
        let app = routes::router(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake GitHub server stopped");
            }
        });
        Ok(Self { base_url, state, server })
    }

    /// The API base URL, e.g. `http://127.0.0.1:41234`, for
    /// [`GitHubConfig::base_uri`](crate::GitHubConfig::base_uri).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Adds (or replaces) an open issue. The repository is created on first
    /// use. Returns the issue number.
    #[allow(clippy::too_many_arguments)]
    pub fn add_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        title: &str,
        body: &str,
        author: &str,
        labels: &[&str],
    ) -> u64 {
        lock(&self.state).add_issue(owner, repo, number, title, body, author, labels, chrono::Utc::now());
        number
    }

    /// Adds a comment by `author` to an issue. Returns its id, or `None` when
    /// the issue does not exist.
    pub fn add_comment(&self, owner: &str, repo: &str, number: u64, author: &str, body: &str) -> Option<u64> {
        let mut st = lock(&self.state);
        let id = state::bump(&mut st.next_id);
        let now = chrono::Utc::now();
        let r = st.repos.get_mut(&(owner.to_string(), repo.to_string()))?;
        r.issues.contains_key(&number).then_some(())?;
        r.comments.push(state::Comment {
            id,
            issue: number,
            author: author.into(),
            body: body.into(),
            created_at: now,
            updated_at: now,
            edits: 0,
        });
        Some(id)
    }

    /// Closes an issue (or PR). Returns whether it existed.
    pub fn close_issue(&self, owner: &str, repo: &str, number: u64) -> bool {
        let mut st = lock(&self.state);
        let issue = st.repos.get_mut(&(owner.to_string(), repo.to_string())).and_then(|r| r.issues.get_mut(&number));
        match issue {
            Some(i) => {
                let now = chrono::Utc::now();
                i.open = false;
                i.closed_at = Some(now);
                i.updated_at = now;
                true
            }
            None => false,
        }
    }

    /// The labels on an issue or PR (empty when it does not exist).
    pub fn issue_labels(&self, owner: &str, repo: &str, number: u64) -> Vec<String> {
        let st = lock(&self.state);
        st.repo(owner, repo).and_then(|r| r.issues.get(&number)).map(|i| i.labels.clone()).unwrap_or_default()
    }

    /// The comments on an issue or PR, oldest first.
    pub fn comments(&self, owner: &str, repo: &str, number: u64) -> Vec<FakeComment> {
        let st = lock(&self.state);
        let Some(r) = st.repo(owner, repo) else { return Vec::new() };
        r.comments
            .iter()
            .filter(|c| c.issue == number)
            .map(|c| FakeComment {
                id: c.id,
                issue: c.issue,
                author: c.author.clone(),
                body: c.body.clone(),
                edits: c.edits,
            })
            .collect()
    }

    /// The repository's pull requests, by number.
    pub fn pull_requests(&self, owner: &str, repo: &str) -> Vec<FakePullRequest> {
        lock(&self.state).pull_requests(owner, repo)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state).requests.clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// How many requests counted against the rate limit (a `304` answer to
    /// a conditional request does not, as on GitHub).
    pub fn rate_limited_requests(&self) -> u64 {
        lock(&self.state).rate_used
    }

    /// Answers the next `times` requests with `status` (and GitHub's body for
    /// it; `403`/`429` carry `retry-after: 1`), then behaves normally again.
    pub fn fail_next(&self, status: u16, times: usize) {
        self.inject(FakeFault::Status(status), times);
    }

    /// Answers the next `times` requests with `fault`, then behaves normally.
    pub fn inject(&self, fault: FakeFault, times: usize) {
        lock(&self.state).failures.extend(std::iter::repeat_n(fault, times));
    }

    /// Answers every request with `fault` (after those queued by
    /// [`Self::inject`]) until [`Self::recover`]: a GitHub that is down.
    pub fn fail_always(&self, fault: FakeFault) {
        lock(&self.state).always = Some(fault);
    }

    /// Drops every injected fault, queued or permanent.
    pub fn recover(&self) {
        let mut st = lock(&self.state);
        st.failures.clear();
        st.always = None;
    }

    /// The token required from now on (`None`: none); the old one gets
    /// `401 Bad credentials`, as after a rotation or revocation.
    pub fn set_token(&self, token: Option<&str>) {
        lock(&self.state).token = token.map(str::to_string);
    }

    /// Whether the token may push to a repository (default: yes), as
    /// `GET /repos/{o}/{r}` reports in `permissions`. Returns whether the
    /// repository exists.
    pub fn set_push_access(&self, owner: &str, repo: &str, push: bool) -> bool {
        let mut st = lock(&self.state);
        match st.repos.get_mut(&(owner.to_string(), repo.to_string())) {
            Some(r) => {
                r.push = push;
                true
            }
            None => false,
        }
    }

    /// Makes `login` belong to the account with user id `id` from now on,
    /// in every object the fake serves (issues, comments, reviews...): as
    /// when an account is deleted and someone else registers its login.
    /// Other logins keep ids derived from the login.
    pub fn set_user_id(&self, login: &str, id: u64) {
        lock(&self.state).user_ids.insert(login.to_ascii_lowercase(), id);
    }

    /// The user id the fake serves for `login`.
    pub fn user_id(&self, login: &str) -> u64 {
        let st = lock(&self.state);
        st.user_ids.get(&login.to_ascii_lowercase()).copied().unwrap_or_else(|| templates::user_id(login))
    }

    /// Edits an issue's title and body, as someone on GitHub would (GitHub's
    /// REST API does not say who). Returns whether it existed.
    pub fn edit_issue(&self, owner: &str, repo: &str, number: u64, title: &str, body: &str) -> bool {
        let mut st = lock(&self.state);
        let issue = st.repos.get_mut(&(owner.to_string(), repo.to_string())).and_then(|r| r.issues.get_mut(&number));
        match issue {
            Some(i) => {
                i.title = title.to_string();
                i.body = Some(body.to_string());
                i.updated_at = chrono::Utc::now();
                true
            }
            None => false,
        }
    }

    /// An issue's body (`None` when it does not exist; empty when it has none).
    pub fn issue_body(&self, owner: &str, repo: &str, number: u64) -> Option<String> {
        let st = lock(&self.state);
        st.repo(owner, repo).and_then(|r| r.issues.get(&number)).map(|i| i.body.clone().unwrap_or_default())
    }

    /// The numbers of an issue's sub-issues, in the order they were added.
    pub fn sub_issues(&self, owner: &str, repo: &str, parent: u64) -> Vec<u64> {
        let st = lock(&self.state);
        st.repo(owner, repo).and_then(|r| r.sub_issues.get(&parent).cloned()).unwrap_or_default()
    }

    /// The number of issues (pull requests excluded) in a repository.
    pub fn issue_count(&self, owner: &str, repo: &str) -> usize {
        let st = lock(&self.state);
        st.repo(owner, repo).map_or(0, |r| r.issues.values().filter(|i| i.pull.is_none()).count())
    }

    /// Adds a completed check run on a pull request's head commit, with
    /// `conclusion` (`success`, `failure`, ...) and `text` as its output.
    /// Returns its id, or `None` when there is no such pull request.
    pub fn add_check_run(
        &self,
        owner: &str,
        repo: &str,
        pr: u64,
        name: &str,
        conclusion: &str,
        text: &str,
    ) -> Option<u64> {
        let mut st = lock(&self.state);
        let id = state::bump(&mut st.next_id);
        let r = st.repos.get_mut(&(owner.to_string(), repo.to_string()))?;
        let sha = r.issues.get(&pr)?.pull.as_ref()?.head_sha.clone();
        r.check_runs.entry(sha).or_default().push(state::CheckRunRec {
            id,
            name: name.into(),
            status: "completed".into(),
            conclusion: Some(conclusion.into()),
            title: Some(format!("{name}: {conclusion}")),
            summary: text.lines().next().map(str::to_string),
            text: Some(text.into()),
            at: chrono::Utc::now(),
        });
        Some(id)
    }

    /// Adds a review comment by `author` on `path`:`line` of a pull request,
    /// as a reply to `in_reply_to` when given. Returns its id, or `None` when
    /// there is no such pull request.
    #[allow(clippy::too_many_arguments)]
    pub fn add_review_comment(
        &self,
        owner: &str,
        repo: &str,
        pr: u64,
        author: &str,
        path: &str,
        line: u64,
        body: &str,
        in_reply_to: Option<u64>,
    ) -> Option<u64> {
        let mut st = lock(&self.state);
        let id = state::bump(&mut st.next_id);
        let r = st.repos.get_mut(&(owner.to_string(), repo.to_string()))?;
        r.issues.get(&pr)?.pull.as_ref()?;
        r.review_comments.push(state::ReviewCommentRec {
            id,
            pull: pr,
            author: author.into(),
            body: body.into(),
            path: path.into(),
            line,
            outdated: false,
            in_reply_to,
            at: chrono::Utc::now(),
        });
        Some(id)
    }

    /// Marks a review comment outdated (its line left the diff). Returns
    /// whether it existed.
    pub fn outdate_review_comment(&self, owner: &str, repo: &str, id: u64) -> bool {
        let mut st = lock(&self.state);
        let Some(r) = st.repos.get_mut(&(owner.to_string(), repo.to_string())) else { return false };
        match r.review_comments.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.outdated = true;
                true
            }
            None => false,
        }
    }

    /// Adds a review (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`) by
    /// `author`. Returns its id, or `None` when there is no such pull request.
    pub fn add_review(&self, owner: &str, repo: &str, pr: u64, author: &str, state: &str, body: &str) -> Option<u64> {
        let mut st = lock(&self.state);
        let id = state::bump(&mut st.next_id);
        let r = st.repos.get_mut(&(owner.to_string(), repo.to_string()))?;
        r.issues.get(&pr)?.pull.as_ref()?;
        r.reviews.push(state::ReviewRec {
            id,
            pull: pr,
            author: author.into(),
            state: state.into(),
            body: body.into(),
            at: chrono::Utc::now(),
        });
        Some(id)
    }

    /// Adds a reaction (`+1`, `-1`, `heart`...) by `author` to an issue or
    /// pull request. Returns its id, or `None` when there is no such issue.
    pub fn add_reaction(&self, owner: &str, repo: &str, number: u64, author: &str, content: &str) -> Option<u64> {
        let mut st = lock(&self.state);
        let id = state::bump(&mut st.next_id);
        let r = st.repos.get_mut(&(owner.to_string(), repo.to_string()))?;
        r.issues.get(&number)?;
        r.reactions.push(state::ReactionRec {
            id,
            issue: number,
            author: author.into(),
            content: content.into(),
            at: chrono::Utc::now(),
        });
        Some(id)
    }

    /// Merges a pull request (as a human would; Paid never does). Returns
    /// whether it was an open pull request.
    pub fn merge_pull(&self, owner: &str, repo: &str, number: u64) -> bool {
        let mut st = lock(&self.state);
        let issue = st.repos.get_mut(&(owner.to_string(), repo.to_string())).and_then(|r| r.issues.get_mut(&number));
        match issue {
            Some(i) if i.open && i.pull.is_some() => {
                let now = chrono::Utc::now();
                i.open = false;
                i.closed_at = Some(now);
                i.updated_at = now;
                if let Some(p) = i.pull.as_mut() {
                    p.merged = true;
                }
                true
            }
            _ => false,
        }
    }
}
