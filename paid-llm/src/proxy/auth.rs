//! Per-run tokens: the only credential a sandbox ever sees.
//!
//! A token is 256 random bits from the operating system's CSPRNG, hex
//! encoded behind a `paid-` prefix. It is valid from [`TokenRegistry::issue`]
//! until [`TokenRegistry::revoke`] (the engine revokes it when the run ends),
//! its optional expiry, or, when the proxy checks run state, until the run
//! reaches an end state.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use http::HeaderMap;
use paid_core::{ProjectId, RunId, Timestamp};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

/// Token bytes (256 bits).
pub const TOKEN_BYTES: usize = 32;
/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "paid-";

/// A run's token. Its `Debug` never shows it.
#[derive(Clone)]
pub struct RunToken(SecretString);

impl RunToken {
    /// The token itself, to hand to the sandbox (as its API key).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// As a [`SecretString`].
    pub fn secret(&self) -> SecretString {
        self.0.clone()
    }
}

impl fmt::Debug for RunToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunToken([redacted])")
    }
}

/// Per-run limits that override the proxy's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Token cap for this run.
    pub tokens: Option<u64>,
    /// Cost cap for this run, micro-USD.
    pub cost_micros: Option<i64>,
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The run.
    pub run_id: RunId,
    /// Its project.
    pub project_id: ProjectId,
    /// When the token stops working, if before the run ends.
    pub expires_at: Option<Timestamp>,
    /// Limits overriding the proxy's defaults.
    pub limits: RunLimits,
}

/// Issued tokens. Holds them in memory only: after a restart of the proxy,
/// runs are issued new tokens.
#[derive(Default)]
pub struct TokenRegistry {
    inner: RwLock<Maps>,
}

#[derive(Default)]
struct Maps {
    by_token: HashMap<String, Grant>,
    by_run: HashMap<RunId, Vec<String>>,
}

impl fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.inner.read().map(|m| m.by_token.len()).unwrap_or(0);
        f.debug_struct("TokenRegistry").field("tokens", &n).finish()
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::with_capacity(TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
    s.push_str(TOKEN_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl TokenRegistry {
    /// Issues a new token for `grant`'s run. A run may hold several tokens
    /// (one per sandbox); all are revoked together.
    pub fn issue(&self, grant: Grant) -> RunToken {
        let token = new_token();
        let mut maps = self.inner.write().unwrap_or_else(|p| p.into_inner());
        maps.by_run.entry(grant.run_id).or_default().push(token.clone());
        maps.by_token.insert(token.clone(), grant);
        RunToken(SecretString::from(token))
    }

    /// Revokes every token of `run`. Returns how many there were.
    pub fn revoke(&self, run: RunId) -> usize {
        let mut maps = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let tokens = maps.by_run.remove(&run).unwrap_or_default();
        for t in &tokens {
            maps.by_token.remove(t);
        }
        tokens.len()
    }

    /// What `token` grants at `now`, if it is valid. An expired token is
    /// removed.
    pub fn check(&self, token: &str, now: Timestamp) -> Option<Grant> {
        let grant = {
            let maps = self.inner.read().unwrap_or_else(|p| p.into_inner());
            maps.by_token.get(token).cloned()
        }?;
        if grant.expires_at.is_some_and(|t| t <= now) {
            let mut maps = self.inner.write().unwrap_or_else(|p| p.into_inner());
            maps.by_token.remove(token);
            if let Some(v) = maps.by_run.get_mut(&grant.run_id) {
                v.retain(|t| t != token);
            }
            return None;
        }
        Some(grant)
    }

    /// Whether `run` holds any token.
    pub fn has_run(&self, run: RunId) -> bool {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).by_run.get(&run).is_some_and(|v| !v.is_empty())
    }
}

/// Headers a client may carry its key in; all are removed before forwarding.
pub const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-api-key", "x-goog-api-key", "api-key"];

/// The token a client presented: `x-api-key`, `x-goog-api-key`, `api-key`,
/// `Authorization: Bearer`, or the `key` query parameter (Gemini).
pub fn presented_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    for name in ["x-api-key", "x-goog-api-key", "api-key"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            return Some(v.trim());
        }
    }
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(t.trim());
        }
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("key="))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            run_id: RunId(uuid_like(1)),
            project_id: ProjectId(uuid_like(2)),
            expires_at: None,
            limits: RunLimits::default(),
        }
    }

    fn uuid_like(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    #[test]
    fn tokens_are_long_random_and_revocable() {
        let reg = TokenRegistry::default();
        let a = reg.issue(grant());
        let b = reg.issue(grant());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(format!("{a:?}"), "RunToken([redacted])");
        let now = chrono::Utc::now();
        assert_eq!(reg.check(a.expose(), now), Some(grant()));
        assert_eq!(reg.revoke(grant().run_id), 2);
        assert_eq!(reg.check(a.expose(), now), None);
    }

    #[test]
    fn expired_tokens_stop_working() {
        let reg = TokenRegistry::default();
        let now = chrono::Utc::now();
        let t = reg.issue(Grant { expires_at: Some(now), ..grant() });
        assert_eq!(reg.check(t.expose(), now), None);
    }

    #[test]
    fn token_from_any_header() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented_token(&h, None), Some("abc"));
        assert_eq!(presented_token(&HeaderMap::new(), Some("alt=sse&key=xyz")), Some("xyz"));
    }
}
