//! `/api/v1/secrets` and `/api/v1/keys/rotate`.

use paid_core::ports::secrets::SecretMeta;
use serde::{Deserialize, Serialize};

/// `GET /api/v1/secrets`: names and key ids, never values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Secrets {
    /// The current master key's id.
    pub master_key_id: Option<String>,
    /// The stored secrets.
    pub secrets: Vec<SecretMeta>,
}

/// `PUT /api/v1/secrets/{name}`. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value (a token or key).
    pub value: String,
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret").field("value", &"[redacted]").finish()
    }
}

/// What a GitHub token check found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenValidation {
    /// The login the token acts as.
    pub login: Option<String>,
    /// Scopes of a classic token; `None` for fine-grained and app tokens.
    pub scopes: Option<Vec<String>>,
    /// Repositories checked.
    pub repositories: Vec<String>,
    /// Things worth knowing that did not fail the check.
    pub warnings: Vec<String>,
    /// Rate-limit calls left, when reported.
    pub rate_limit_remaining: Option<u64>,
}

/// The answer to `PUT /api/v1/secrets/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretStored {
    /// The stored secret.
    pub secret: SecretMeta,
    /// For `github`: what the token check found.
    pub validation: Option<TokenValidation>,
    /// What happens next.
    pub note: String,
}

/// `POST /api/v1/keys/rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// The new master key's file, on the server's machine, inside its data
    /// directory (relative paths are taken from it); other paths are refused.
    pub new_key_file: String,
}

/// What a key rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateReport {
    /// The new current key's id.
    pub key_id: String,
    /// The previous current key's id.
    pub previous_key_id: String,
    /// Secrets re-encrypted.
    pub rotated: Vec<String>,
}

/// The answer to `POST /api/v1/keys/rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    /// What was done.
    pub rotation: RotateReport,
    /// What to do next.
    pub next: String,
}
