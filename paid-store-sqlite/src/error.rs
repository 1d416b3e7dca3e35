//! The crate's error type, and how it maps onto [`paid_core::Error`].

use std::path::PathBuf;

use rusqlite::ErrorCode;
use rusqlite::ffi;

const BACKEND: &str = "sqlite";

/// Everything that can go wrong in the SQLite store.
///
/// Calls through [`paid_core::Store`] see these converted into
/// [`paid_core::Error`]: a busy or locked database becomes a retryable
/// [`paid_core::Error::Backend`], a constraint violation the variant that
/// says which, and an unopenable file [`paid_core::Error::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file could not be opened or set up.
    #[error(
        "cannot open SQLite database {}: {source}; check that its directory exists and is writable",
        path.display()
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A schema migration failed; the database stays at the version before it.
    #[error("schema migration {version} ({name}) failed: {source}")]
    Migration {
        /// The migration's number.
        version: u32,
        /// Its name.
        name: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of Paid.
    #[error(
        "database schema is at version {found}, but this build of paid-store-sqlite knows versions up to \
         {known}; upgrade Paid to open it"
    )]
    SchemaTooNew {
        /// The newest migration recorded in the database.
        found: u32,
        /// The newest migration this build has.
        known: u32,
    },
    /// A SQLite call failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value cannot be read back as what it should be.
    #[error("stored {what} is unreadable: {message}")]
    Corrupt {
        /// What was read, e.g. `runs.state`.
        what: String,
        /// Why it could not be read.
        message: String,
    },
    /// A value could not be encoded as JSON for storage.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        /// What was being stored.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The blocking task running a database call panicked or was cancelled.
    #[error("database task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// Whether retrying the same call may succeed: the database was busy or
    /// locked by another connection, or the call's task was cancelled.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sqlite(e) => {
                matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
            }
            Error::Task(e) => e.is_cancelled(),
            _ => false,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Corrupt { what: what.into(), message: message.to_string() }
    }
}

impl From<Error> for paid_core::Error {
    fn from(e: Error) -> Self {
        if let Error::Sqlite(sqlite) = &e
            && let Some(ffi::Error { code: ErrorCode::ConstraintViolation, extended_code }) = sqlite.sqlite_error()
        {
            // The store checks its constraints before writing, naming what
            // is wrong; these are the backstop.
            let message = sqlite.to_string();
            return match *extended_code {
                ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE => {
                    paid_core::Error::AlreadyExists { entity: "row", id: message }
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    paid_core::Error::NotFound { entity: "referenced row", id: message }
                }
                _ => paid_core::Error::InvalidInput { what: "row".into(), message },
            };
        }
        if e.is_retryable() {
            return paid_core::Error::transient(BACKEND, e);
        }
        match e {
            Error::Open { .. } => {
                paid_core::Error::Unavailable { backend: BACKEND, message: e.to_string(), source: Some(Box::new(e)) }
            }
            e => paid_core::Error::permanent(BACKEND, e),
        }
    }
}

/// Why one database call failed: a refusal in the port's own terms (a
/// missing run, a lost lease), or a failure of the database.
#[derive(Debug)]
pub(crate) enum OpError {
    /// Refused, with a meaning the caller acts on.
    Refused(paid_core::Error),
    /// The database failed.
    Db(Error),
}

impl From<paid_core::Error> for OpError {
    fn from(e: paid_core::Error) -> Self {
        OpError::Refused(e)
    }
}

impl From<Error> for OpError {
    fn from(e: Error) -> Self {
        OpError::Db(e)
    }
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Db(Error::Sqlite(e))
    }
}

impl From<OpError> for paid_core::Error {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Refused(e) => e,
            OpError::Db(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rusqlite::{Connection, TransactionBehavior};

    use super::*;

    /// Two connections to one file, the second giving up on locks at once.
    fn two_connections() -> (tempfile::TempDir, Connection, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let first = Connection::open(&path).unwrap();
        first.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY);").unwrap();
        let second = Connection::open(&path).unwrap();
        second.busy_timeout(Duration::ZERO).unwrap();
        (dir, first, second)
    }

    #[test]
    fn busy_database_is_retryable() {
        let (_dir, mut first, mut second) = two_connections();
        let _held = first.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        let busy = Error::from(second.transaction_with_behavior(TransactionBehavior::Immediate).unwrap_err());
        assert!(busy.is_retryable(), "{busy:?}");
        let core = paid_core::Error::from(busy);
        assert!(core.is_retryable(), "{core:?}");
        assert!(matches!(core, paid_core::Error::Backend { backend: "sqlite", .. }), "{core:?}");
    }

    #[test]
    fn constraint_violations_keep_their_meaning() {
        let (_dir, first, _second) = two_connections();
        first
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE child (parent INTEGER NOT NULL REFERENCES t (id));
                 INSERT INTO t (id) VALUES (1);",
            )
            .unwrap();
        let convert = |sql: &str| paid_core::Error::from(Error::from(first.execute(sql, []).unwrap_err()));

        let dup = convert("INSERT INTO t (id) VALUES (1)");
        assert!(matches!(dup, paid_core::Error::AlreadyExists { .. }), "{dup:?}");
        let orphan = convert("INSERT INTO child (parent) VALUES (2)");
        assert!(matches!(orphan, paid_core::Error::NotFound { .. }), "{orphan:?}");
        let null = convert("INSERT INTO child (parent) VALUES (NULL)");
        assert!(matches!(null, paid_core::Error::InvalidInput { .. }), "{null:?}");
        assert!(!null.is_retryable());
    }

    #[test]
    fn unopenable_file_is_unavailable_and_says_where() {
        let path = PathBuf::from("/nonexistent-dir/paid.db");
        let source = Connection::open(&path).unwrap_err();
        let e = Error::Open { path, source };
        assert!(e.to_string().contains("/nonexistent-dir/paid.db"), "{e}");
        let core = paid_core::Error::from(e);
        assert!(matches!(core, paid_core::Error::Unavailable { backend: "sqlite", .. }), "{core:?}");
    }
}
