//! The forge token of a running daemon, replaced without a restart.
//!
//! [`ForgeToken`] holds the current token (stored with `paid token set
//! github`, else `github.token_file`, else `github.token_env`) and re-reads
//! it on [`ForgeToken::reload`]: the API calls it right after a new token is
//! stored, and the daemon every [`RELOAD_EVERY`] (for a token stored by
//! another daemon on the same database). Each change bumps a generation and
//! is handed to the listeners (the git workspaces' credentials).
//!
//! [`ReloadingForge`] is the engine's [`Forge`]: before each call it asks
//! the token source for its generation, and on a change builds a new
//! [`GitHubForge`] with the new token (its ETag cache and cached login start
//! afresh), so the very next request uses it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use paid_core::ports::forge::{SubIssue, SubIssueRequest};
use paid_core::{
    CommentRequest, Forge, ForgeIssue, LabelChange, PollRequest, PrFeedback, PrFeedbackRequest, PrRequest, PullRequest,
    RepoRef, Timestamp,
};
use paid_github::{GitHubConfig, GitHubForge};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::vault::Vault;

/// How often the daemon re-reads the token besides the API's nudge.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

type Listener = Box<dyn Fn(Option<SecretString>) + Send + Sync>;

struct Current {
    generation: u64,
    digest: Option<[u8; 32]>,
    token: Option<SecretString>,
}

/// The daemon's forge token, re-read on demand.
pub struct ForgeToken {
    config: Config,
    vault: Arc<Vault>,
    current: RwLock<Current>,
    listeners: RwLock<Vec<Listener>>,
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ForgeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeToken").field("generation", &self.current().0).finish_non_exhaustive()
    }
}

fn digest(token: &Option<SecretString>) -> Option<[u8; 32]> {
    token.as_ref().map(|t| Sha256::digest(t.expose_secret().as_bytes()).into())
}

impl ForgeToken {
    /// A source starting with `initial` (as read at start).
    pub fn new(config: Config, vault: Arc<Vault>, initial: Option<SecretString>) -> Self {
        let current = Current { generation: 0, digest: digest(&initial), token: initial };
        Self {
            config,
            vault,
            current: RwLock::new(current),
            listeners: RwLock::new(Vec::new()),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Calls `f` with each new token (not with the initial one).
    pub fn on_change(&self, f: impl Fn(Option<SecretString>) + Send + Sync + 'static) {
        self.listeners.write().unwrap_or_else(|p| p.into_inner()).push(Box::new(f));
    }

    /// The generation (bumped on each change) and the token.
    pub fn current(&self) -> (u64, Option<SecretString>) {
        let c = self.current.read().unwrap_or_else(|p| p.into_inner());
        (c.generation, c.token.clone())
    }

    /// Re-reads the token; `true` when it changed. A failure to read keeps
    /// the current token.
    pub async fn reload(&self) -> anyhow::Result<bool> {
        let _one_at_a_time = self.reloading.lock().await;
        let token = crate::stores::forge_token(&self.config, &self.vault).await?;
        let d = digest(&token);
        {
            let mut c = self.current.write().unwrap_or_else(|p| p.into_inner());
            if c.digest == d {
                return Ok(false);
            }
            c.generation += 1;
            c.digest = d;
            c.token = token.clone();
        }
        for f in self.listeners.read().unwrap_or_else(|p| p.into_inner()).iter() {
            f(token.clone());
        }
        tracing::info!(generation = self.current().0, "a new GitHub token is in use");
        Ok(true)
    }
}

/// The [`Forge`] on GitHub, rebuilt when the token changes.
pub struct ReloadingForge {
    token: Arc<ForgeToken>,
    config: GitHubConfig,
    forge: RwLock<(u64, Arc<GitHubForge>)>,
}

impl std::fmt::Debug for ReloadingForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingForge").field("config", &self.config).finish_non_exhaustive()
    }
}

fn build(config: &GitHubConfig, token: Option<SecretString>) -> paid_github::Result<GitHubForge> {
    let mut c = config.clone();
    if let Some(t) = token {
        c = c.token(t);
    }
    GitHubForge::new(c)
}

impl ReloadingForge {
    /// A forge for `config` (without a token) using `token`'s token. Must
    /// be called within a tokio runtime.
    pub fn new(config: GitHubConfig, token: Arc<ForgeToken>) -> paid_github::Result<Self> {
        let (generation, t) = token.current();
        let forge = Arc::new(build(&config, t)?);
        Ok(Self { token, config, forge: RwLock::new((generation, forge)) })
    }

    /// The forge for the current token.
    pub fn forge(&self) -> paid_core::Result<Arc<GitHubForge>> {
        let (generation, token) = self.token.current();
        {
            let f = self.forge.read().unwrap_or_else(|p| p.into_inner());
            if f.0 == generation {
                return Ok(f.1.clone());
            }
        }
        let forge = Arc::new(build(&self.config, token)?);
        let mut f = self.forge.write().unwrap_or_else(|p| p.into_inner());
        if f.0 < generation {
            *f = (generation, forge);
        }
        Ok(f.1.clone())
    }
}

#[async_trait]
impl Forge for ReloadingForge {
    async fn poll_triggered(&self, req: &PollRequest) -> paid_core::Result<Vec<ForgeIssue>> {
        self.forge()?.poll_triggered(req).await
    }

    async fn issue(&self, repo: &RepoRef, number: u64) -> paid_core::Result<ForgeIssue> {
        self.forge()?.issue(repo, number).await
    }

    async fn upsert_comment(&self, req: &CommentRequest) -> paid_core::Result<u64> {
        self.forge()?.upsert_comment(req).await
    }

    async fn set_labels(&self, req: &LabelChange) -> paid_core::Result<()> {
        self.forge()?.set_labels(req).await
    }

    async fn find_or_create_pr(&self, req: &PrRequest) -> paid_core::Result<PullRequest> {
        self.forge()?.find_or_create_pr(req).await
    }

    async fn create_sub_issue(&self, req: &SubIssueRequest) -> paid_core::Result<SubIssue> {
        Forge::create_sub_issue(self.forge()?.as_ref(), req).await
    }

    async fn pr_feedback(&self, req: &PrFeedbackRequest) -> paid_core::Result<PrFeedback> {
        Forge::pr_feedback(self.forge()?.as_ref(), req).await
    }

    async fn closed_issues(&self, repo: &RepoRef, since: Timestamp) -> paid_core::Result<Vec<ForgeIssue>> {
        Forge::closed_issues(self.forge()?.as_ref(), repo, since).await
    }
}
