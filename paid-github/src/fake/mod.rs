//! A fake GitHub REST server for tests and demos (feature `fake`).
//!
//! [`FakeGitHub::start`] serves, on `127.0.0.1` at a free port, the endpoints
//! [`crate::GitHubForge`] uses. Its answers are built from the recorded
//! GitHub objects in this crate's `fixtures/` (same keys, ids, URLs, users,
//! labels), with GitHub's pagination `link` headers, ETags and `304`s,
//! rate-limit headers, and 422 validation bodies. Seed it with
//! [`FakeGitHub::add_issue`], inspect it with [`FakeGitHub::comments`],
//! [`FakeGitHub::pull_requests`], [`FakeGitHub::requests`]...
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

mod routes;
mod state;
mod templates;

use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

pub use state::{FakeComment, FakePullRequest, LoggedRequest};

use routes::{Shared, lock};
use state::State;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    token: Option<String>,
    login: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self { token: None, login: "paid-bot".into() }
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

    /// The login of the authenticated user (author of created comments/PRs).
    pub fn login(mut self, login: impl Into<String>) -> Self {
        self.login = login.into();
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
        let state: Shared = Arc::new(Mutex::new(State::new(base_url.clone(), config.token, config.login)));
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
        let mut st = lock(&self.state);
        st.failures.extend(std::iter::repeat_n(status, times));
    }
}
