//! Encryption of secrets at rest: AES-256-GCM under a master key.
//!
//! A ciphertext is `0x01 ‖ nonce (12 random bytes) ‖ AES-256-GCM(plaintext)`,
//! with the secret's name as associated data, so a ciphertext moved to
//! another name does not decrypt. Each is stored with the id of the key
//! that made it ([`MasterKey::id`], a hash of the key, never the key), so a
//! [`Keyring`] holding the new and the old key during a rotation picks the
//! right one, and a keyring without it says which key is missing instead of
//! trying others.

use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// What can go wrong with keys and ciphertexts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The key text is not 32 bytes in base64 or hex.
    #[error("master key from {source_name} is not 32 bytes encoded as base64 or hex ({got})")]
    BadKey {
        /// Where it came from (file or variable).
        source_name: String,
        /// What was found instead (never the key).
        got: String,
    },
    /// A key file could not be read.
    #[error("cannot read master key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The ciphertext was made with a key this keyring does not hold.
    #[error(
        "secret {name:?} is encrypted under master key {key_id}, but the loaded keys are {loaded:?}; \
         configure the key it was written with (keys.master_key_file or its environment variable), or add it \
         to keys.previous_key_files while rotating"
    )]
    UnknownKey {
        /// The secret.
        name: String,
        /// The id it was stored with.
        key_id: String,
        /// The ids this keyring holds.
        loaded: Vec<String>,
    },
    /// Decryption failed under the right key id: the data was altered.
    #[error(
        "secret {name:?} does not authenticate under master key {key_id}: the stored value was altered, or \
         the key file changed without a rotation"
    )]
    Tampered {
        /// The secret.
        name: String,
        /// The key id.
        key_id: String,
    },
    /// The ciphertext is not in a format this build knows.
    #[error("secret {name:?} has an unknown format (version byte {version})")]
    Format {
        /// The secret.
        name: String,
        /// The leading byte.
        version: u8,
    },
    /// Encryption failed (should not happen).
    #[error("encrypting {name:?} failed")]
    Encrypt {
        /// The secret.
        name: String,
    },
}

/// A 256-bit master key. Its bytes never appear in `Debug` output.
pub struct MasterKey {
    key: SecretBox<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).field("key", &"[redacted]").finish()
    }
}

impl Clone for MasterKey {
    fn clone(&self) -> Self {
        Self::from_bytes(*self.key.expose_secret())
    }
}

impl MasterKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"paid master key id v1\0");
        h.update(bytes);
        let id = hex::encode(&h.finalize()[..8]);
        Self { key: SecretBox::new(Box::new(bytes)), id }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        Self::from_bytes(bytes)
    }

    /// Parses base64 (standard or URL-safe, padded or not) or hex text.
    /// `source_name` names the file or variable in errors.
    pub fn parse(text: &SecretString, source_name: &str) -> Result<Self, CryptoError> {
        let t = text.expose_secret().trim();
        let decoded = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(t).ok()
        } else {
            [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
                &base64::engine::general_purpose::URL_SAFE,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ]
            .iter()
            .find_map(|e| e.decode(t).ok())
        };
        match decoded {
            Some(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(Self::from_bytes(key))
            }
            Some(bytes) => {
                Err(CryptoError::BadKey { source_name: source_name.into(), got: format!("{} bytes", bytes.len()) })
            }
            None => Err(CryptoError::BadKey {
                source_name: source_name.into(),
                got: format!("{} characters of text", t.len()),
            }),
        }
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CryptoError::KeyFile { path: path.display().to_string(), message: e.to_string() })?;
        Self::parse(&SecretString::from(text), &path.display().to_string())
    }

    /// The key as base64, for writing a key file.
    pub fn to_base64(&self) -> SecretString {
        base64::engine::general_purpose::STANDARD.encode(self.key.expose_secret()).into()
    }

    /// The key's id: the first 8 bytes of a SHA-256 over it, hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.key.expose_secret()))
    }

    /// Encrypts `plaintext` for the secret `name` with a fresh random nonce.
    pub fn encrypt(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher()
            .encrypt(&nonce, Payload { msg: plaintext, aad: aad(name).as_bytes() })
            .map_err(|_| CryptoError::Encrypt { name: name.into() })?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::encrypt`] made for `name`.
    pub fn decrypt(&self, name: &str, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match blob.first() {
            Some(&VERSION) if blob.len() > 1 + NONCE_LEN => {}
            other => return Err(CryptoError::Format { name: name.into(), version: other.copied().unwrap_or(0) }),
        }
        let nonce = Nonce::from_slice(&blob[1..1 + NONCE_LEN]);
        self.cipher()
            .decrypt(nonce, Payload { msg: &blob[1 + NONCE_LEN..], aad: aad(name).as_bytes() })
            .map_err(|_| CryptoError::Tampered { name: name.into(), key_id: self.id.clone() })
    }
}

fn aad(name: &str) -> String {
    format!("paid-secret:v1:{name}")
}

/// The current key, which encrypts, and older keys, which only decrypt.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    /// A keyring writing with `current`, reading with it and `previous`.
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        let previous = previous.into_iter().filter(|k| k.id() != current.id()).collect();
        Self { current, previous }
    }

    /// The key new ciphertexts are made with.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Every key id held, current first.
    pub fn ids(&self) -> Vec<String> {
        std::iter::once(&self.current).chain(&self.previous).map(|k| k.id.clone()).collect()
    }

    /// Encrypts under the current key: `(key id, ciphertext)`.
    pub fn encrypt(&self, name: &str, plaintext: &[u8]) -> Result<(String, Vec<u8>), CryptoError> {
        Ok((self.current.id.clone(), self.current.encrypt(name, plaintext)?))
    }

    /// Decrypts with the key whose id the ciphertext was stored with, and
    /// only that one.
    pub fn decrypt(&self, name: &str, key_id: &str, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey { name: name.into(), key_id: key_id.into(), loaded: self.ids() })?;
        key.decrypt(name, blob)
    }

    /// This keyring with `new` as the current key and the old current one
    /// kept for reading.
    pub fn rotated(&self, new: MasterKey) -> Self {
        let mut previous = vec![self.current.clone()];
        previous.extend(self.previous.iter().cloned());
        Self::new(new, previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_fresh_nonces() {
        let k = MasterKey::generate();
        let a = k.encrypt("github", b"ghp_secret").unwrap();
        let b = k.encrypt("github", b"ghp_secret").unwrap();
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(k.decrypt("github", &a).unwrap(), b"ghp_secret");
        assert!(!a.windows(10).any(|w| w == b"ghp_secret"));
    }

    #[test]
    fn the_name_is_bound() {
        let k = MasterKey::generate();
        let a = k.encrypt("github", b"x").unwrap();
        assert!(matches!(k.decrypt("provider.openai", &a), Err(CryptoError::Tampered { .. })));
    }

    #[test]
    fn a_wrong_key_is_never_tried() {
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        let ring = Keyring::new(old.clone(), vec![]);
        let (id, ct) = ring.encrypt("github", b"t").unwrap();
        let wrong = Keyring::new(new.clone(), vec![]);
        let e = wrong.decrypt("github", &id, &ct).unwrap_err();
        assert!(matches!(&e, CryptoError::UnknownKey { key_id, .. } if key_id == old.id()), "{e}");
        assert!(e.to_string().contains(old.id()) && e.to_string().contains(new.id()), "{e}");
        let rotating = Keyring::new(old.clone(), vec![]).rotated(new);
        assert_eq!(rotating.decrypt("github", &id, &ct).unwrap(), b"t");
    }

    #[test]
    fn keys_parse_from_base64_and_hex() {
        let k = MasterKey::generate();
        let b64 = k.to_base64();
        assert_eq!(MasterKey::parse(&b64, "x").unwrap().id(), k.id());
        let hex_text: SecretString =
            hex::encode(base64::engine::general_purpose::STANDARD.decode(b64.expose_secret()).unwrap()).into();
        assert_eq!(MasterKey::parse(&hex_text, "x").unwrap().id(), k.id());
        let e = MasterKey::parse(&SecretString::from("c2hvcnQ="), "PAID_MASTER_KEY").unwrap_err();
        assert!(e.to_string().contains("PAID_MASTER_KEY") && e.to_string().contains("5 bytes"), "{e}");
        assert!(!format!("{k:?}").contains(b64.expose_secret()));
    }
}
