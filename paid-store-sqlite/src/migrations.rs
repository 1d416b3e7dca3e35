//! Schema migrations, applied in order when a store opens.
//!
//! Each migration is a numbered SQL file under `src/schema/`, compiled in.
//! Applied ones are recorded in `schema_migrations`. A migration runs in its
//! own `BEGIN IMMEDIATE` transaction together with its record, so it is
//! applied whole or not at all, and two processes opening a new database at
//! once apply it once. Released migrations are never edited: a change is a
//! new file.

use rusqlite::{Connection, TransactionBehavior, params};

use crate::Error;

/// One schema change.
#[derive(Debug, Clone, Copy)]
struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("schema/0001_initial.sql") },
    Migration { version: 2, name: "secrets", sql: include_str!("schema/0002_secrets.sql") },
    Migration { version: 3, name: "learning", sql: include_str!("schema/0003_learning.sql") },
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
pub const SCHEMA_VERSION: u32 = 8;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
) STRICT";

/// Brings the schema up to [`SCHEMA_VERSION`]. Returns the versions it applied.
pub(crate) fn apply(conn: &mut Connection) -> Result<Vec<u32>, Error> {
    conn.execute(CREATE_TABLE, [])?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: u32 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew { found, known: SCHEMA_VERSION });
        }
        if found >= migration.version {
            continue;
        }
        let failed = |source| Error::Migration { version: migration.version, name: migration.name, source };
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![migration.version, migration.name, chrono::Utc::now().timestamp_millis()],
        )
        .map_err(failed)?;
        tx.commit()?;
        tracing::info!(version = migration.version, name = migration.name, "applied schema migration");
        applied.push(migration.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one_to_schema_version() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let want: Vec<u32> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, want);
    }

    #[test]
    fn applies_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn).unwrap(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        assert_eq!(apply(&mut conn).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute("INSERT INTO schema_migrations VALUES (?1, 'future', 0)", [SCHEMA_VERSION + 1]).unwrap();
        let err = apply(&mut conn).unwrap_err();
        assert!(
            matches!(err, Error::SchemaTooNew { found, known } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION)
        );
        assert!(err.to_string().contains("upgrade Paid"), "{err}");
    }
}
