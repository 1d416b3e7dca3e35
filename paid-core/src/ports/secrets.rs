//! Encrypted credentials at rest: the opt-in [`SecretStore`] capability.
//!
//! Forge tokens and provider keys are kept in the database encrypted. The
//! store keeps *opaque* ciphertext: it never sees a key or a plaintext, and
//! knows nothing about the cipher. Encryption, key loading and rotation live
//! with the deployment (see the `paid` binary in `examples/`), so a leaked
//! database file leaks nothing readable.
//!
//! This is a capability beside [`Store`](crate::Store), not part of it: a
//! backend that has no secrets table simply does not implement it, and a
//! deployment finds that out when it is wired, not from an error at run
//! time. Implementations run `paid_core::testing::secrets` (feature
//! `testing`).
//!
//! Each record carries the id of the key that encrypted it, so a reader
//! holding several keys (the new and the old one, during a rotation) picks
//! the right one, and a reader holding none of them can say which key is
//! missing. Writes can be conditional on a version, so re-encrypting under a
//! new key never overwrites a value someone set meanwhile.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, Timestamp};

/// A stored secret: its name, the id of the key that encrypted it, and the
/// ciphertext. What the bytes mean is up to the writer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Unique name, e.g. `forge.github` or `provider.anthropic`.
    pub name: String,
    /// Id of the key the ciphertext is encrypted under (never the key).
    pub key_id: String,
    /// Opaque ciphertext.
    pub ciphertext: Vec<u8>,
    /// Bumped on every write, from 1.
    pub version: u64,
    /// Last write.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .field("ciphertext", &format_args!("[{} bytes]", self.ciphertext.len()))
            .field("version", &self.version)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// What is listed about a secret: everything but the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    /// Name.
    pub name: String,
    /// Id of the key it is encrypted under.
    pub key_id: String,
    /// Version.
    pub version: u64,
    /// Last write.
    pub updated_at: Timestamp,
}

/// A write of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutSecret<'a> {
    /// Name.
    pub name: &'a str,
    /// Opaque ciphertext.
    pub ciphertext: &'a [u8],
    /// Id of the key it is encrypted under.
    pub key_id: &'a str,
    /// `None`: write unconditionally (create or replace). `Some(0)`: only
    /// if the secret does not exist. `Some(v)`: only if its version is `v`.
    pub expected_version: Option<u64>,
    /// Now.
    pub at: Timestamp,
}

/// Opaque, versioned ciphertext by name. Every method is atomic.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Writes a secret. Returns `Some(new version)`, or `None` when
    /// `expected_version` did not match (nothing was written).
    async fn put_secret(&self, put: &PutSecret<'_>) -> Result<Option<u64>>;
    /// Reads a secret; `None` when there is none of that name.
    async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>>;
    /// Every secret, by name, without ciphertext.
    async fn list_secrets(&self) -> Result<Vec<SecretMeta>>;
    /// Deletes a secret. Returns whether it existed.
    async fn delete_secret(&self, name: &str) -> Result<bool>;
}
