//! [`GitHubConfig`]: how to reach GitHub, with what token, and what this
//! GitHub can do ([`Capabilities`]).

use std::sync::Arc;
use std::time::Duration;

use paid_core::metrics::Metrics;
use secrecy::SecretString;

use super::layer::retry::RetryPolicy;
use super::token::{NoToken, TokenSource};

/// GitHub's public API.
pub const DEFAULT_BASE_URI: &str = "https://api.github.com";

/// What a GitHub offers beyond the REST endpoints every GitHub has, as
/// data: the forge never guesses a missing feature from an error.
///
/// An error from an endpoint of a capability that is on (a `404` of a
/// missing repository, a `401` of a revoked token, a `403`) is returned as
/// that error; it is never taken for "not available here". A call that
/// needs a capability that is off fails with [`crate::Error::NotSupported`]
/// before any request.
///
/// ```
/// use paid_github::{Capabilities, GitHubConfig};
///
/// // A GitHub Enterprise Server without sub-issues: link planned issues
/// // with a task list in the parent's body.
/// let without = Capabilities::new().sub_issues(false);
/// assert!(without.task_lists);
/// let config = GitHubConfig::new().base_uri("https://ghe.example.com/api/v3").capabilities(without);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// GitHub's sub-issue API (`POST /repos/{o}/{r}/issues/{n}/sub_issues`)
    /// links planned issues to their parent. On github.com it is there; a
    /// GitHub Enterprise Server may lack it, and a repository may have it
    /// disabled. Default on.
    pub sub_issues: bool,
    /// Where `sub_issues` is off, a planned issue may be linked by a
    /// `- [ ] #N title` line appended to the parent's body. Default on. With
    /// both off, the forge cannot plan and says so
    /// ([`crate::Error::NotSupported`]).
    pub task_lists: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self { sub_issues: true, task_lists: true }
    }
}

impl Capabilities {
    /// github.com's: sub-issues and task lists.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the sub-issue API is used.
    pub fn sub_issues(mut self, on: bool) -> Self {
        self.sub_issues = on;
        self
    }

    /// Whether task lists link planned issues where sub-issues are off.
    pub fn task_lists(mut self, on: bool) -> Self {
        self.task_lists = on;
        self
    }
}

/// How to reach GitHub.
///
/// ```
/// use paid_github::GitHubConfig;
///
/// let config = GitHubConfig::new()
///     .token("ghp_example".to_string().into())
///     .base_uri("http://127.0.0.1:8080")
///     .per_page(30);
/// assert_eq!(config.base(), "http://127.0.0.1:8080");
/// ```
#[derive(Clone)]
pub struct GitHubConfig {
    pub(super) base_uri: String,
    pub(super) token: Arc<dyn TokenSource>,
    pub(super) per_page: u8,
    pub(super) connect_timeout: Duration,
    pub(super) read_timeout: Duration,
    pub(super) retry: RetryPolicy,
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) token_id: String,
    pub(super) login: Option<String>,
    pub(super) capabilities: Capabilities,
}

impl std::fmt::Debug for GitHubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubConfig")
            .field("base_uri", &self.base_uri)
            .field("token", &self.token.token().map(|_| "[redacted]"))
            .field("per_page", &self.per_page)
            .field("retry", &self.retry)
            .field("token_id", &self.token_id)
            .field("login", &self.login)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self {
            base_uri: DEFAULT_BASE_URI.into(),
            token: Arc::new(NoToken),
            per_page: 100,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            metrics: None,
            token_id: "default".into(),
            login: None,
            capabilities: Capabilities::default(),
        }
    }
}

impl GitHubConfig {
    /// `https://api.github.com`, no token, 100 items per page.
    pub fn new() -> Self {
        Self::default()
    }

    /// The API base, e.g. `https://ghe.example.com/api/v3` or a fake's URL.
    pub fn base_uri(mut self, base_uri: impl Into<String>) -> Self {
        self.base_uri = base_uri.into();
        self
    }

    /// A fixed token, sent as `Authorization: Bearer ...`.
    pub fn token(self, token: SecretString) -> Self {
        self.token_source(Arc::new(token))
    }

    /// Where the token comes from, read before every request, e.g. a
    /// [`SharedToken`](crate::SharedToken) that is replaced when the
    /// operator rotates the token. Replaces [`Self::token`]. When the token
    /// changes, the login asked with `GET /user` is asked again; the ETag
    /// cache stays (GitHub's ETags do not depend on the token).
    pub fn token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token = source;
        self
    }

    /// Items per page of list requests (1 to 100; GitHub's maximum is 100).
    pub fn per_page(mut self, per_page: u8) -> Self {
        self.per_page = per_page.clamp(1, 100);
        self
    }

    /// Connect and read timeouts of each request.
    pub fn timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// How failed calls are retried and rate limits waited out (default
    /// [`RetryPolicy::new`]; [`RetryPolicy::none`] returns every failure at once).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Records `paid_github_api_calls_total{endpoint,status}` and
    /// `paid_github_rate_limit_remaining{token_id}` into `metrics`.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The `token_id` label of the rate-limit gauge: a name for the token
    /// (never the token itself). Default `default`.
    pub fn token_id(mut self, token_id: impl Into<String>) -> Self {
        self.token_id = token_id.into();
        self
    }

    /// The login the token acts as, e.g. `paid-app[bot]` for a GitHub App
    /// installation token (which cannot call `GET /user`). Without it the
    /// forge asks `GET /user` once per token. Only comments by this login
    /// are ever edited.
    pub fn login(mut self, login: impl Into<String>) -> Self {
        self.login = Some(login.into());
        self
    }

    /// What this GitHub can do (default [`Capabilities::new`], github.com's).
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The API base.
    pub fn base(&self) -> &str {
        &self.base_uri
    }
}
