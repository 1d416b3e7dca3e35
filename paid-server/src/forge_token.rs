//! The forge token of a running server, replaced without a restart.
//!
//! [`ForgeToken`] reads the current token (stored with `paid token set
//! github`, else `github.token_file`, else `github.token_env`) into a
//! [`SharedToken`], the token source the GitHub forge and the git
//! workspaces read on each request. [`ForgeToken::reload`] re-reads it: the
//! API calls it right after a new token is stored, and the server every
//! [`RELOAD_EVERY`] (for a token stored by another node on the same
//! database). The very next request uses a new token; nothing is rebuilt.

use std::sync::Arc;
use std::time::Duration;

use paid_github::SharedToken;
use secrecy::SecretString;

use crate::config::Config;
use crate::vault::Vault;

/// How often the server re-reads the token besides the API's nudge.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The server's forge token, re-read on demand.
pub struct ForgeToken {
    config: Config,
    vault: Arc<Vault>,
    shared: SharedToken,
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ForgeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeToken").field("shared", &self.shared).finish_non_exhaustive()
    }
}

impl ForgeToken {
    /// A source starting with `initial` (as read at start).
    pub fn new(config: Config, vault: Arc<Vault>, initial: Option<SecretString>) -> Self {
        Self { config, vault, shared: SharedToken::new(initial), reloading: tokio::sync::Mutex::new(()) }
    }

    /// The token source to give `GitHubConfig::token_source` and
    /// `GitWorkspacesConfig::token_source`.
    pub fn shared(&self) -> SharedToken {
        self.shared.clone()
    }

    /// The token now.
    pub fn current(&self) -> Option<SecretString> {
        self.shared.get()
    }

    /// Re-reads the token; `true` when it changed. A failure to read keeps
    /// the current token.
    pub async fn reload(&self) -> anyhow::Result<bool> {
        let _one_at_a_time = self.reloading.lock().await;
        let token = crate::stores::forge_token(&self.config, &self.vault).await?;
        let changed = self.shared.set(token);
        if changed {
            tracing::info!("a new GitHub token is in use");
        }
        Ok(changed)
    }
}
