//! [`SecretStore`] on PostgreSQL: opaque ciphertext in the `secrets` table
//! (migration `0002_learning_secrets.sql`). Encryption happens before the
//! bytes get here; this module never sees a key or a plaintext.
//!
//! Each write is one statement, so it is atomic without a transaction:
//!
//! - unconditional: an upsert that bumps the stored version;
//! - `expected_version = Some(0)`: an insert that does nothing on a conflict;
//! - `expected_version = Some(v)`: an update `WHERE version = v`.
//!
//! Each returns the new version, or no row when nothing was written.

use async_trait::async_trait;
use paid_core::{PutSecret, SecretMeta, SecretRecord, SecretStore, Timestamp};
use sqlx::PgPool;

use crate::error::{OpError, OpResult};
use crate::rows::int;
use crate::{Error, PgStore};

fn version(v: i64) -> OpResult<u64> {
    Ok(u64::try_from(v).map_err(|_| Error::corrupt("secrets.version", format!("negative version {v}")))?)
}

async fn put(pool: &PgPool, req: &PutSecret<'_>) -> OpResult<Option<u64>> {
    if req.name.trim().is_empty() {
        return Err(OpError::Refused(paid_core::Error::InvalidInput {
            what: "secret.name".into(),
            message: "must not be empty".into(),
        }));
    }
    let query = match req.expected_version {
        None => sqlx::query_scalar(
            "INSERT INTO secrets (name, key_id, ciphertext, version, updated_at) VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext,
                 version = secrets.version + 1, updated_at = excluded.updated_at
             RETURNING version",
        ),
        Some(0) => sqlx::query_scalar(
            "INSERT INTO secrets (name, key_id, ciphertext, version, updated_at) VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (name) DO NOTHING
             RETURNING version",
        ),
        Some(_) => sqlx::query_scalar(
            "UPDATE secrets SET key_id = $2, ciphertext = $3, version = version + 1, updated_at = $4
             WHERE name = $1 AND version = $5
             RETURNING version",
        ),
    };
    let query = query.bind(req.name).bind(req.key_id).bind(req.ciphertext).bind(req.at);
    let query = match req.expected_version {
        Some(v) if v > 0 => query.bind(int("secret.expected_version", v)?),
        _ => query,
    };
    let written: Option<i64> = query.fetch_optional(pool).await?;
    written.map(version).transpose()
}

#[async_trait]
impl SecretStore for PgStore {
    async fn put_secret(&self, req: &PutSecret<'_>) -> paid_core::Result<Option<u64>> {
        Ok(put(self.pool(), req).await?)
    }

    async fn get_secret(&self, name: &str) -> paid_core::Result<Option<SecretRecord>> {
        let row: Option<(String, String, Vec<u8>, i64, Timestamp)> =
            sqlx::query_as("SELECT name, key_id, ciphertext, version, updated_at FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(Error::from)?;
        let Some((name, key_id, ciphertext, v, updated_at)) = row else {
            return Ok(None);
        };
        Ok(Some(SecretRecord { name, key_id, ciphertext, version: version(v)?, updated_at }))
    }

    async fn list_secrets(&self) -> paid_core::Result<Vec<SecretMeta>> {
        let rows: Vec<(String, String, i64, Timestamp)> =
            sqlx::query_as("SELECT name, key_id, version, updated_at FROM secrets ORDER BY name COLLATE \"C\"")
                .fetch_all(self.pool())
                .await
                .map_err(Error::from)?;
        let metas = rows
            .into_iter()
            .map(|(name, key_id, v, updated_at)| Ok(SecretMeta { name, key_id, version: version(v)?, updated_at }));
        Ok(metas.collect::<OpResult<_>>()?)
    }

    async fn delete_secret(&self, name: &str) -> paid_core::Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await
            .map_err(Error::from)?;
        Ok(done.rows_affected() > 0)
    }
}
