//! Test support (feature `testing`): the test database, and a fresh schema
//! per test.
//!
//! Tests read the database URL from `PAID_TEST_DATABASE_URL`, which
//! `scripts/test` exports after `scripts/provision-postgres`. They never skip:
//! when the variable is unset and `CI` is set, they fail saying so; when
//! both are unset (a developer running `cargo test`), the provisioning
//! script is run to start the local test server.
//!
//! ```no_run
//! # async fn example() {
//! use paid_store_postgres::testing;
//!
//! let store = testing::fresh_store().await; // its own schema, migrated
//! // ... use it ...
//! store.drop_schema().await.unwrap();
//! # }
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test support: a broken fixture fails the test loudly")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::{PgStore, PgStoreOptions};

/// The variable holding the test database URL.
pub const URL_VAR: &str = "PAID_TEST_DATABASE_URL";

/// `scripts/provision-postgres` of this checkout.
pub fn provision_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/provision-postgres")
}

/// The test database URL. Panics, saying what to do, when there is none.
pub fn database_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var(URL_VAR)
            && !url.is_empty()
        {
            return url;
        }
        if std::env::var_os("CI").is_some() {
            panic!(
                "{URL_VAR} is not set, and CI is: the PostgreSQL tests need a server. scripts/test runs \
                 scripts/provision-postgres and exports {URL_VAR}; run the tests through it, or export \
                 {URL_VAR}=$(scripts/provision-postgres)"
            );
        }
        let script = provision_script();
        eprintln!("{URL_VAR} is not set; starting the test server with {}", script.display());
        let out = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; set {URL_VAR} to a test database", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}); set {URL_VAR} to a test database:\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("the script prints a URL").trim().to_string()
    })
    .clone()
}

/// A schema name nobody else uses: `t_` and 32 hex digits.
pub fn fresh_schema_name() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// Options for the test database in a fresh schema, with a small pool.
pub fn fresh_options() -> PgStoreOptions {
    PgStoreOptions::new(database_url()).schema(fresh_schema_name()).max_connections(4)
}

/// Drops test schemas (`t_<uuid v7>`) made more than an hour ago: the ones
/// tests that panicked left behind. Runs once per process.
pub async fn sweep_stale_schemas() {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&database_url()).await;
            let Ok(pool) = pool.map_err(|e| eprintln!("cannot sweep stale test schemas: {e}")) else {
                return;
            };
            let cutoff = chrono::Utc::now().timestamp_millis() - 3_600_000;
            let names: Vec<String> =
                sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^t_[0-9a-f]{32}$'")
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_default();
            for name in names {
                let made = i64::from_str_radix(&name[2..14], 16).unwrap_or(i64::MAX);
                if made < cutoff {
                    let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
                        eprintln!("cannot drop stale test schema {name}: {e}");
                    }
                }
            }
            pool.close().await;
        })
        .await;
}

/// A store in a fresh, migrated schema. Drop it with
/// [`PgStore::drop_schema`] when done.
pub async fn fresh_store() -> PgStore {
    sweep_stale_schemas().await;
    let options = fresh_options();
    let schema = options.schema_name().to_string();
    PgStore::connect_with(options).await.unwrap_or_else(|e| panic!("cannot open a test store in schema {schema}: {e}"))
}
