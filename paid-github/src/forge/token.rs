//! Where the forge and the git workspaces get their token: a
//! [`TokenSource`], read on every request, so a rotated token is used from
//! the next request on without rebuilding anything.

use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};

/// The token to authenticate with, asked for before every request.
///
/// [`GitHubConfig::token_source`](crate::GitHubConfig::token_source) and
/// [`GitWorkspacesConfig::token_source`](crate::GitWorkspacesConfig::token_source)
/// take one. A [`SecretString`] is a source that never changes; a
/// [`SharedToken`] is one that its owner replaces (e.g. a daemon after the
/// operator stored a new token). Implementations must be cheap: the forge
/// calls [`TokenSource::token`] once per HTTP request.
///
/// ```
/// use std::sync::Arc;
///
/// use paid_github::{GitHubConfig, SharedToken};
///
/// let token = SharedToken::new(Some("ghp_old".to_string().into()));
/// let config = GitHubConfig::new().token_source(Arc::new(token.clone()));
/// // ... build the forge from `config`; later, after a rotation:
/// assert!(token.set(Some("ghp_new".to_string().into())));
/// # let _ = config;
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// The token to send now; `None` sends no `Authorization` header.
    fn token(&self) -> Option<SecretString>;
}

impl TokenSource for SecretString {
    fn token(&self) -> Option<SecretString> {
        Some(self.clone())
    }
}

/// No token: requests go unauthenticated.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoToken;

impl TokenSource for NoToken {
    fn token(&self) -> Option<SecretString> {
        None
    }
}

/// A token its owner replaces at run time; clones share it.
///
/// Hand a clone to the forge and the workspaces, keep one, and call
/// [`SharedToken::set`] when the token changes: the next request of either
/// uses the new token.
#[derive(Clone, Default)]
pub struct SharedToken {
    current: Arc<RwLock<Option<SecretString>>>,
}

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedToken").field("token", &self.get().map(|_| "[redacted]")).finish()
    }
}

impl SharedToken {
    /// A shared token starting as `token`.
    pub fn new(token: Option<SecretString>) -> Self {
        Self { current: Arc::new(RwLock::new(token)) }
    }

    /// Replaces the token (`None` removes it). Returns whether it changed.
    pub fn set(&self, token: Option<SecretString>) -> bool {
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if same(current.as_ref(), token.as_ref()) {
            return false;
        }
        *current = token;
        true
    }

    /// The current token.
    pub fn get(&self) -> Option<SecretString> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl TokenSource for SharedToken {
    fn token(&self) -> Option<SecretString> {
        self.get()
    }
}

/// Whether two tokens are the same (both absent, or equal).
pub(crate) fn same(a: Option<&SecretString>, b: Option<&SecretString>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        s.to_string().into()
    }

    #[test]
    fn a_shared_token_reports_changes_and_clones_see_them() {
        let token = SharedToken::new(None);
        let seen_by_forge: Arc<dyn TokenSource> = Arc::new(token.clone());
        assert!(seen_by_forge.token().is_none());
        assert!(token.set(Some(secret("a"))));
        assert!(!token.set(Some(secret("a"))), "the same token is no change");
        assert_eq!(seen_by_forge.token().map(|t| t.expose_secret().to_string()), Some("a".into()));
        assert!(token.set(None));
        assert!(seen_by_forge.token().is_none());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = SharedToken::new(Some(secret("ghp_secret")));
        assert!(!format!("{token:?}").contains("ghp_secret"));
    }
}
