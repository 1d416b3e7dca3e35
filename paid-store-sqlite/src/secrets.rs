//! [`SecretStore`] on SQLite: opaque ciphertext in the `secrets` table
//! (migration `0002_secrets.sql`). Encryption happens before the bytes get
//! here; this module never sees a key or a plaintext.

use async_trait::async_trait;
use chrono::DateTime;
use paid_core::{PutSecret, SecretMeta, SecretRecord, SecretStore};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::OpError;
use crate::rows::millis;
use crate::{Error, SqliteStore};

fn version(row: &Row<'_>, idx: usize) -> Result<u64, OpError> {
    let v: i64 = row.get(idx)?;
    Ok(u64::try_from(v).map_err(|_| Error::corrupt("secrets.version", format!("negative version {v}")))?)
}

fn updated_at(row: &Row<'_>, idx: usize) -> Result<paid_core::Timestamp, OpError> {
    let ms: i64 = row.get(idx)?;
    Ok(DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::corrupt("secrets.updated_at", "time out of range"))?)
}

fn current_version(c: &Connection, name: &str) -> Result<Option<u64>, OpError> {
    let v: Option<i64> =
        c.prepare_cached("SELECT version FROM secrets WHERE name = ?1")?.query_row([name], |r| r.get(0)).optional()?;
    v.map(|v| u64::try_from(v).map_err(|_| Error::corrupt("secrets.version", format!("negative version {v}")).into()))
        .transpose()
}

fn put(
    c: &Connection,
    name: &str,
    ciphertext: &[u8],
    key_id: &str,
    expected: Option<u64>,
    at: i64,
) -> Result<Option<u64>, OpError> {
    if name.trim().is_empty() {
        return Err(
            paid_core::Error::InvalidInput { what: "secret.name".into(), message: "must not be empty".into() }.into()
        );
    }
    let current = current_version(c, name)?;
    if let Some(expected) = expected
        && current.unwrap_or(0) != expected
    {
        return Ok(None);
    }
    let next = current.unwrap_or(0) + 1;
    let next_sql = i64::try_from(next).map_err(|_| Error::corrupt("secrets.version", "version overflow"))?;
    c.prepare_cached(
        "INSERT INTO secrets (name, key_id, ciphertext, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext,
             version = excluded.version, updated_at = excluded.updated_at",
    )?
    .execute(params![name, key_id, ciphertext, next_sql, at])?;
    Ok(Some(next))
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn put_secret(&self, req: &PutSecret<'_>) -> paid_core::Result<Option<u64>> {
        let (name, ciphertext, key_id) = (req.name.to_string(), req.ciphertext.to_vec(), req.key_id.to_string());
        let (expected, at) = (req.expected_version, millis(req.at));
        self.write(move |c| put(c, &name, &ciphertext, &key_id, expected, at)).await
    }

    async fn get_secret(&self, name: &str) -> paid_core::Result<Option<SecretRecord>> {
        let name = name.to_string();
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT name, key_id, ciphertext, version, updated_at FROM secrets WHERE name = ?1")?;
            let mut rows = stmt.query([name])?;
            match rows.next()? {
                None => Ok(None),
                Some(row) => Ok(Some(SecretRecord {
                    name: row.get(0)?,
                    key_id: row.get(1)?,
                    ciphertext: row.get(2)?,
                    version: version(row, 3)?,
                    updated_at: updated_at(row, 4)?,
                })),
            }
        })
        .await
    }

    async fn list_secrets(&self) -> paid_core::Result<Vec<SecretMeta>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT name, key_id, version, updated_at FROM secrets ORDER BY name")?;
            crate::rows::all(&mut stmt, [], |row| {
                Ok(SecretMeta {
                    name: row.get(0)?,
                    key_id: row.get(1)?,
                    version: version(row, 2)?,
                    updated_at: updated_at(row, 3)?,
                })
            })
        })
        .await
    }

    async fn delete_secret(&self, name: &str) -> paid_core::Result<bool> {
        let name = name.to_string();
        self.write(move |c| Ok(c.prepare_cached("DELETE FROM secrets WHERE name = ?1")?.execute([name])? > 0)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use paid_core::SecretStore;

    use crate::SqliteStore;

    #[tokio::test]
    async fn conformance_in_memory() {
        paid_core::testing::secrets::run_all(|| async {
            Arc::new(SqliteStore::open_in_memory().unwrap()) as Arc<dyn SecretStore>
        })
        .await;
    }

    #[tokio::test]
    async fn conformance_on_file() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        paid_core::testing::secrets::run_all(|| {
            let path = dir.path().join(format!("s{}.db", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
            async move { Arc::new(SqliteStore::open(path).unwrap()) as Arc<dyn SecretStore> }
        })
        .await;
    }
}
