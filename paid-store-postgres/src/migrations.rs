//! Schema migrations, applied when a store connects.
//!
//! Each migration is a numbered SQL file under `src/schema/`, compiled in.
//! Applied ones are recorded in the schema's `schema_migrations` table. All
//! pending migrations run in one transaction together with their records,
//! under a transaction-scoped advisory lock keyed by the schema: several
//! workers starting at once serialize on the lock, the first applies the
//! migrations, and the others find nothing left to do. PostgreSQL's DDL is
//! transactional, so a failed migration leaves the schema as it was.
//! Released migrations are never edited: a change is a new file.

use sqlx::{Acquire, PgConnection};

use crate::Error;

/// One schema change.
#[derive(Debug, Clone, Copy)]
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("schema/0001_initial.sql") },
    Migration { version: 2, name: "learning_secrets", sql: include_str!("schema/0002_learning_secrets.sql") },
    Migration { version: 3, name: "parked_runs", sql: include_str!("schema/0003_parked_runs_free_slots.sql") },
    Migration {
        version: 4,
        name: "parked_runs_hold_no_lease",
        sql: include_str!("schema/0004_parked_runs_hold_no_lease.sql"),
    },
    Migration { version: 5, name: "run_context_project_settings", sql: include_str!("schema/0005_run_context.sql") },
    Migration { version: 6, name: "webhook_deliveries", sql: include_str!("schema/0006_webhook_deliveries.sql") },
    Migration { version: 7, name: "author_ids", sql: include_str!("schema/0007_author_ids.sql") },
    Migration { version: 8, name: "poll_leases", sql: include_str!("schema/0008_poll_leases.sql") },
];

/// The schema version this build creates: the number of its newest migration.
pub const SCHEMA_VERSION: i32 = 8;

/// Brings `schema` (the connection's `search_path`) up to [`SCHEMA_VERSION`],
/// creating it if needed. Returns the versions it applied.
pub(crate) async fn apply(conn: &mut PgConnection, schema: &str, create: bool) -> Result<Vec<i32>, Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('paid-store-postgres:migrate:' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    if create {
        // `schema` was validated as a plain lowercase identifier.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).execute(&mut *tx).await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     integer PRIMARY KEY,
             name        text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *tx)
    .await?;
    let found: i32 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(&mut *tx).await?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew { schema: schema.to_string(), found, known: SCHEMA_VERSION });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        let failed = |source| Error::Migration { version: migration.version, name: migration.name, source };
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await.map_err(failed)?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        applied.push(migration.version);
    }
    tx.commit().await?;
    for version in &applied {
        tracing::info!(schema, version, "applied schema migration");
    }
    Ok(applied)
}

/// The version recorded in `schema` without changing anything: 0 for a
/// schema without the migrations table.
pub(crate) async fn current(conn: &mut PgConnection) -> Result<i32, Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL").fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(0);
    }
    Ok(sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(&mut *conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one_to_schema_version() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let want: Vec<i32> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, want);
    }
}
