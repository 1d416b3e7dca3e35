//! [`PgStoreOptions`]: where the store connects and how.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::Error;

/// How to open a [`crate::PgStore`].
///
/// ```
/// use std::time::Duration;
/// use paid_store_postgres::PgStoreOptions;
///
/// let options = PgStoreOptions::new("postgres://paid:secret@db.internal:5432/paid")
///     .schema("paid")
///     .max_connections(16)
///     .acquire_timeout(Duration::from_secs(5));
/// assert_eq!(options.schema_name(), "paid");
/// ```
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    url: String,
    schema: String,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    test_before_acquire: bool,
    application_name: String,
    migrate: bool,
    project_limits: bool,
    synchronous_commit: bool,
}

impl PgStoreOptions {
    /// The longest schema name accepted, so the wake-up channel
    /// (`paid_work:<schema>`) stays within PostgreSQL's 63-byte identifiers.
    pub const MAX_SCHEMA_LEN: usize = 50;

    /// Options for the database at `url` (`postgres://user:password@host:port/db`),
    /// with the defaults: schema `public`, at most 10 connections, a 10 s
    /// acquire timeout, migrations applied on connect, per-project limits on.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "public".into(),
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(10),
            test_before_acquire: false,
            application_name: "paid".into(),
            migrate: true,
            project_limits: true,
            synchronous_commit: true,
        }
    }

    /// The schema the store's tables live in (created if missing). Several
    /// stores can share one database, one schema each. Must match
    /// `[a-z_][a-z0-9_]*` and be at most [`Self::MAX_SCHEMA_LEN`] bytes long.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections the pool opens (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Connections the pool keeps open even when idle (default 0).
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// How long a call waits for a connection before failing with a
    /// retryable [`paid_core::Error::Unavailable`] (default 10 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether the pool pings a connection before each use (default off:
    /// one round trip less per call). A connection that died with the server
    /// fails its next call with a retryable error and is replaced either way.
    pub fn test_before_acquire(mut self, on: bool) -> Self {
        self.test_before_acquire = on;
        self
    }

    /// The `application_name` the server shows in `pg_stat_activity`
    /// (default `paid`).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// Whether connecting applies pending migrations (default on). With it
    /// off, connecting fails on a schema older than this build.
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = on;
        self
    }

    /// Whether `claim` honours each project's `max_concurrent_runs`, counting
    /// the project's active runs that hold an unexpired lease (default on).
    ///
    /// On, `claim` is the [`paid_core::Runs::claim`] contract that the
    /// conformance suite pins: a project at its limit is skipped, and the
    /// limit holds under any number of concurrent claimers (see the `claim`
    /// statement in `leases.rs`). Off, it ignores the limits (one statement
    /// less per claim), which breaks that contract: only for benchmarks and
    /// deployments that cap concurrency some other way.
    pub fn project_limits(mut self, on: bool) -> Self {
        self.project_limits = on;
        self
    }

    /// Whether each write waits for its WAL to reach disk before it returns
    /// (default on: PostgreSQL's `synchronous_commit`).
    ///
    /// Off, a write returns before the flush, so a worker's dozens of writes
    /// per run stop waiting on the disk one by one; if the *server* crashes
    /// (a clean restart loses nothing), the last few hundred milliseconds of
    /// writes are lost, consistently. Leases and idempotency keys still
    /// prevent any side effect from happening twice, but a run whose state
    /// change was lost can end `failed`. Use it where the disk is slow and
    /// that trade is acceptable.
    pub fn synchronous_commit(mut self, on: bool) -> Self {
        self.synchronous_commit = on;
        self
    }

    /// The configured schema.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// Whether per-project limits are on.
    pub fn project_limits_on(&self) -> bool {
        self.project_limits
    }

    pub(crate) fn max_connections_value(&self) -> u32 {
        self.max_connections
    }

    pub(crate) fn min_connections_value(&self) -> u32 {
        self.min_connections
    }

    pub(crate) fn acquire_timeout_value(&self) -> Duration {
        self.acquire_timeout
    }

    pub(crate) fn test_before_acquire_value(&self) -> bool {
        self.test_before_acquire
    }

    pub(crate) fn migrate_on(&self) -> bool {
        self.migrate
    }

    /// Checks the options and builds the connection options, with the
    /// schema as the connection's `search_path`.
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions, Error> {
        validate_schema(&self.schema)?;
        if self.max_connections == 0 {
            return Err(Error::Config { what: "max_connections", message: "must be at least 1".into() });
        }
        if self.min_connections > self.max_connections {
            return Err(Error::Config {
                what: "min_connections",
                message: format!("{} exceeds max_connections ({})", self.min_connections, self.max_connections),
            });
        }
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(Error::Config {
                what: "url",
                message: "expected postgres://user:password@host:port/database".into(),
            });
        }
        let options = PgConnectOptions::from_str(&self.url).map_err(|e| Error::Config {
            what: "url",
            message: format!("{e}; expected postgres://user:password@host:port/database"),
        })?;
        let commit = if self.synchronous_commit { "on" } else { "off" };
        Ok(options
            .application_name(&self.application_name)
            .options([("search_path", self.schema.as_str()), ("synchronous_commit", commit)]))
    }
}

/// Checks a schema name: a lowercase identifier that needs no quoting.
pub(crate) fn validate_schema(schema: &str) -> Result<(), Error> {
    let mut chars = schema.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= PgStoreOptions::MAX_SCHEMA_LEN
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            what: "schema",
            message: format!(
                "{schema:?} is not a lowercase identifier ([a-z_][a-z0-9_]*, at most {} bytes, not pg_*)",
                PgStoreOptions::MAX_SCHEMA_LEN
            ),
        })
    }
}

/// Host, port and database of a connection, for messages (never the password).
pub(crate) fn describe(options: &PgConnectOptions) -> String {
    format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or("(default database)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["public", "paid", "_t1", "paid_test_0123abcd"] {
            validate_schema(ok).unwrap();
        }
        for bad in ["", "Paid", "1abc", "a-b", "a b", "pg_catalog", "x\"; DROP", &"a".repeat(51)] {
            let err = validate_schema(bad).unwrap_err();
            assert!(err.to_string().contains("schema"), "{err}");
        }
    }

    #[test]
    fn bad_urls_and_pool_sizes_are_refused_with_the_option_named() {
        let err = PgStoreOptions::new("mysql://x").connect_options().unwrap_err();
        assert!(matches!(err, Error::Config { what: "url", .. }), "{err:?}");
        let err = PgStoreOptions::new("postgres://localhost/db").max_connections(0).connect_options().unwrap_err();
        assert!(matches!(err, Error::Config { what: "max_connections", .. }), "{err:?}");
        let err = PgStoreOptions::new("postgres://localhost/db")
            .max_connections(2)
            .min_connections(3)
            .connect_options()
            .unwrap_err();
        assert!(matches!(err, Error::Config { what: "min_connections", .. }), "{err:?}");
    }

    #[test]
    fn describe_leaves_the_password_out() {
        let options = PgStoreOptions::new("postgres://paid:hunter2@db.example:6543/paid").connect_options().unwrap();
        let text = describe(&options);
        assert_eq!(text, "db.example:6543/paid");
    }
}
