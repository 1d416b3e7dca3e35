//! The vault: secrets encrypted by a [`Keyring`], kept as opaque ciphertext
//! in a [`SecretStore`].
//!
//! Names are `github` (the forge token) and `provider.<name>` (LLM provider
//! keys). Plaintexts live in [`SecretString`]s and never reach a log.

use std::path::Path;
use std::sync::Arc;

use paid_core::{Clock, PutSecret, SecretMeta, SecretStore};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::RwLock;

use crate::config::KeysConfig;
use crate::crypto::{CryptoError, Keyring, MasterKey};

/// What can go wrong with the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The store has no secrets table.
    #[error("this store does not support encrypted secrets ({0}); give tokens by environment variable or file")]
    Unsupported(String),
    /// No master key is configured.
    #[error(
        "no master key is configured: set keys.master_key_file (or the variable named by keys.master_key_env, \
         default PAID_MASTER_KEY) to 32 random bytes in base64; `paid init` writes one"
    )]
    NoKey,
    /// A name that is neither `github` nor `provider.<name>`.
    #[error("invalid secret name {0:?}: use `github` or `provider.<name>` (lowercase letters, digits, - and _)")]
    BadName(String),
    /// Encryption or decryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] paid_core::Error),
    /// A secret kept changing during a rotation.
    #[error("secret {0:?} kept changing while it was re-encrypted; run the rotation again")]
    Busy(String),
}

/// Loads the keyring `keys` configures: `None` when no key is configured.
pub fn load_keyring(keys: &KeysConfig) -> Result<Option<Keyring>, CryptoError> {
    let current = match &keys.master_key_file {
        Some(file) => Some(MasterKey::from_file(file)?),
        None => match std::env::var(&keys.master_key_env) {
            Ok(text) if !text.trim().is_empty() => {
                Some(MasterKey::parse(&SecretString::from(text), &keys.master_key_env)?)
            }
            _ => None,
        },
    };
    let Some(current) = current else { return Ok(None) };
    let previous = keys.previous_key_files.iter().map(|f| MasterKey::from_file(f)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Keyring::new(current, previous)))
}

/// Writes a fresh random key to `path` (mode 0600), refusing to overwrite.
pub fn write_new_key(path: &Path) -> std::io::Result<MasterKey> {
    let key = MasterKey::generate();
    write_private(path, key.to_base64().expose_secret())?;
    Ok(key)
}

/// Creates `path` with `text`, readable by its owner only; fails if it exists.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// Checks a secret name.
pub fn check_name(name: &str) -> Result<(), VaultError> {
    let ok_part = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    match name.split_once('.') {
        None if name == "github" => Ok(()),
        Some(("provider", p)) if ok_part(p) => Ok(()),
        _ => Err(VaultError::BadName(name.to_string())),
    }
}

/// What a key rotation did (the API's type).
pub use paid_api::RotateReport;

/// Encrypted secrets on a store.
pub struct Vault {
    store: Option<Arc<dyn SecretStore>>,
    unsupported: String,
    keyring: RwLock<Option<Keyring>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("supported", &self.store.is_some()).finish_non_exhaustive()
    }
}

impl Vault {
    /// A vault on `store` (or none: `unsupported` says why), with `keyring`.
    pub fn new(
        store: Option<Arc<dyn SecretStore>>,
        unsupported: impl Into<String>,
        keyring: Option<Keyring>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, unsupported: unsupported.into(), keyring: RwLock::new(keyring), clock }
    }

    fn store(&self) -> Result<&Arc<dyn SecretStore>, VaultError> {
        self.store.as_ref().ok_or_else(|| VaultError::Unsupported(self.unsupported.clone()))
    }

    /// The current key's id, if a key is loaded.
    pub async fn key_id(&self) -> Option<String> {
        self.keyring.read().await.as_ref().map(|k| k.current().id().to_string())
    }

    /// Encrypts and stores `value` under `name`.
    pub async fn put(&self, name: &str, value: &SecretString) -> Result<SecretMeta, VaultError> {
        check_name(name)?;
        let store = self.store()?;
        let ring = self.keyring.read().await;
        let ring = ring.as_ref().ok_or(VaultError::NoKey)?;
        let (key_id, ct) = ring.encrypt(name, value.expose_secret().as_bytes())?;
        let at = self.clock.now();
        let version = store
            .put_secret(&PutSecret { name, ciphertext: &ct, key_id: &key_id, expected_version: None, at })
            .await?
            .unwrap_or(0);
        Ok(SecretMeta { name: name.to_string(), key_id, version, updated_at: at })
    }

    /// Reads and decrypts `name`; `None` when it is not stored.
    pub async fn get(&self, name: &str) -> Result<Option<SecretString>, VaultError> {
        let Some(store) = &self.store else { return Ok(None) };
        let Some(rec) = store.get_secret(name).await? else { return Ok(None) };
        let ring = self.keyring.read().await;
        let ring = ring.as_ref().ok_or(VaultError::NoKey)?;
        let plain = ring.decrypt(&rec.name, &rec.key_id, &rec.ciphertext)?;
        Ok(Some(SecretString::from(String::from_utf8_lossy(&plain).into_owned())))
    }

    /// Every stored secret, without values.
    pub async fn list(&self) -> Result<Vec<SecretMeta>, VaultError> {
        match &self.store {
            Some(s) => Ok(s.list_secrets().await?),
            None => Ok(Vec::new()),
        }
    }

    /// Decrypts every stored secret once; the first failure is returned.
    /// The daemon calls this at start, so a wrong key stops it before
    /// anything runs.
    pub async fn verify_all(&self) -> Result<usize, VaultError> {
        let metas = self.list().await?;
        for m in &metas {
            self.get(&m.name).await?;
        }
        Ok(metas.len())
    }

    /// Makes `new` the current key and re-encrypts every secret under it.
    /// Reads keep working throughout: the old key stays in the keyring, and
    /// each secret is replaced only if it did not change meanwhile.
    pub async fn rotate(&self, new: MasterKey) -> Result<RotateReport, VaultError> {
        let store = self.store()?.clone();
        let (previous_key_id, ring) = {
            let mut guard = self.keyring.write().await;
            let old = guard.as_ref().ok_or(VaultError::NoKey)?;
            let previous_key_id = old.current().id().to_string();
            let ring = old.rotated(new);
            *guard = Some(ring.clone());
            (previous_key_id, ring)
        };
        let mut rotated = Vec::new();
        for meta in store.list_secrets().await? {
            let mut done = false;
            for _ in 0..5 {
                let Some(rec) = store.get_secret(&meta.name).await? else {
                    done = true;
                    break;
                };
                if rec.key_id == ring.current().id() {
                    done = true;
                    break;
                }
                let plain = ring.decrypt(&rec.name, &rec.key_id, &rec.ciphertext)?;
                let (key_id, ct) = ring.encrypt(&rec.name, &plain)?;
                let put = PutSecret {
                    name: &rec.name,
                    ciphertext: &ct,
                    key_id: &key_id,
                    expected_version: Some(rec.version),
                    at: self.clock.now(),
                };
                if store.put_secret(&put).await?.is_some() {
                    rotated.push(rec.name.clone());
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(VaultError::Busy(meta.name));
            }
        }
        Ok(RotateReport { key_id: ring.current().id().to_string(), previous_key_id, rotated })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("github").is_ok());
        assert!(check_name("provider.anthropic").is_ok());
        assert!(check_name("provider.").is_err());
        assert!(check_name("GITHUB").is_err());
        assert!(check_name("other.x").is_err());
    }
}
