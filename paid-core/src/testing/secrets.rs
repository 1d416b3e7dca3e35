//! The conformance suite of the [`SecretStore`] capability.
//!
//! Each function takes a fresh, empty store. [`run_all`] runs them all with a
//! factory.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use paid_core::{SecretStore, testing::secrets};
//!
//! # fn open_store() -> Arc<dyn SecretStore> { unimplemented!() }
//! # async fn example() {
//! secrets::run_all(|| async { open_store() }).await;
//! # }
//! ```
//!
//! # The contract the suite pins
//!
//! - Ciphertext comes back byte for byte (every byte value, empty included);
//!   the store never interprets it.
//! - `version` starts at 1 and grows by one per write.
//! - `expected_version`: `None` writes unconditionally, `Some(0)` only
//!   creates, `Some(v)` only replaces version `v`; a mismatch returns `None`
//!   and writes nothing.
//! - `list_secrets` is by name and carries no ciphertext; `delete_secret`
//!   says whether the secret existed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: panicking with the unexpected value is how it reports"
)]

use std::future::Future;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;

use crate::{PutSecret, SecretStore, Timestamp};

fn at(secs: i64) -> Timestamp {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).single().expect("valid timestamp")
}

fn put<'a>(name: &'a str, ciphertext: &'a [u8], key_id: &'a str, expected: Option<u64>, t: i64) -> PutSecret<'a> {
    PutSecret { name, ciphertext, key_id, expected_version: expected, at: at(t) }
}

/// Runs every test of the suite, each on a fresh store from `factory`.
pub async fn run_all<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn SecretStore>>,
{
    for (_, test) in TESTS {
        test(factory().await.as_ref()).await;
    }
}

/// One test of the suite. It gets a fresh, empty store.
pub type TestFn = for<'a> fn(&'a dyn SecretStore) -> BoxFuture<'a, ()>;

/// Every test, with its name, in the order [`run_all`] runs them.
pub const TESTS: &[(&str, TestFn)] = &[
    ("put_get_list_delete", |store| -> BoxFuture<'_, ()> { Box::pin(put_get_list_delete(store)) }),
    ("ciphertext_is_opaque", |store| -> BoxFuture<'_, ()> { Box::pin(ciphertext_is_opaque(store)) }),
    ("conditional_writes", |store| -> BoxFuture<'_, ()> { Box::pin(conditional_writes(store)) }),
];

/// Writing, reading, listing and deleting.
pub async fn put_get_list_delete(store: &dyn SecretStore) {
    assert_eq!(store.get_secret("forge.github").await.unwrap(), None, "put_get_list_delete: empty store");
    assert!(store.list_secrets().await.unwrap().is_empty(), "put_get_list_delete: empty list");

    let v = store.put_secret(&put("provider.openai", b"\x01ct-b", "k1", None, 1)).await.unwrap();
    assert_eq!(v, Some(1), "put_get_list_delete: first version");
    let v = store.put_secret(&put("forge.github", b"\x02ct-a", "k1", None, 2)).await.unwrap();
    assert_eq!(v, Some(1));
    let v = store.put_secret(&put("forge.github", b"\x03ct-a2", "k2", None, 3)).await.unwrap();
    assert_eq!(v, Some(2), "put_get_list_delete: a replace bumps the version");

    let got = store.get_secret("forge.github").await.unwrap().expect("put_get_list_delete: stored");
    assert_eq!(got.name, "forge.github");
    assert_eq!(got.key_id, "k2");
    assert_eq!(got.ciphertext, b"\x03ct-a2".to_vec());
    assert_eq!(got.version, 2);
    assert_eq!(got.updated_at, at(3));

    let list = store.list_secrets().await.unwrap();
    let names: Vec<(&str, &str, u64)> = list.iter().map(|m| (m.name.as_str(), m.key_id.as_str(), m.version)).collect();
    assert_eq!(names, vec![("forge.github", "k2", 2), ("provider.openai", "k1", 1)], "put_get_list_delete: by name");

    assert!(store.delete_secret("forge.github").await.unwrap(), "put_get_list_delete: delete existing");
    assert!(!store.delete_secret("forge.github").await.unwrap(), "put_get_list_delete: delete missing");
    assert_eq!(store.get_secret("forge.github").await.unwrap(), None);
    assert_eq!(store.list_secrets().await.unwrap().len(), 1);
}

/// Every byte value survives, and so does empty ciphertext.
pub async fn ciphertext_is_opaque(store: &dyn SecretStore) {
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    store.put_secret(&put("bytes", &all, "k", None, 1)).await.unwrap();
    assert_eq!(store.get_secret("bytes").await.unwrap().unwrap().ciphertext, all, "ciphertext_is_opaque");
    store.put_secret(&put("empty", b"", "k", None, 1)).await.unwrap();
    assert!(store.get_secret("empty").await.unwrap().unwrap().ciphertext.is_empty(), "ciphertext_is_opaque: empty");
}

/// `expected_version` makes writes compare-and-set.
pub async fn conditional_writes(store: &dyn SecretStore) {
    assert_eq!(store.put_secret(&put("s", b"a", "k1", Some(3), 1)).await.unwrap(), None, "conditional: missing");
    assert_eq!(store.get_secret("s").await.unwrap(), None, "conditional: a failed write writes nothing");
    assert_eq!(store.put_secret(&put("s", b"a", "k1", Some(0), 1)).await.unwrap(), Some(1), "conditional: create");
    assert_eq!(store.put_secret(&put("s", b"b", "k1", Some(0), 2)).await.unwrap(), None, "conditional: exists");
    assert_eq!(store.put_secret(&put("s", b"c", "k2", Some(1), 3)).await.unwrap(), Some(2), "conditional: match");
    assert_eq!(store.put_secret(&put("s", b"d", "k3", Some(1), 4)).await.unwrap(), None, "conditional: stale");
    let got = store.get_secret("s").await.unwrap().unwrap();
    assert_eq!((got.ciphertext.as_slice(), got.key_id.as_str(), got.version), (&b"c"[..], "k2", 2));
}
