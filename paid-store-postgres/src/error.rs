//! The crate's error type, and how it maps onto [`paid_core::Error`].

use std::borrow::Cow;

const BACKEND: &str = "postgres";

/// Everything that can go wrong in the PostgreSQL store.
///
/// Calls through [`paid_core::Store`] see these converted into
/// [`paid_core::Error`]:
///
/// - a lost or refused connection, a pool that timed out, a server shutting
///   down: [`paid_core::Error::Unavailable`] (retryable);
/// - a serialization failure or a deadlock: a retryable
///   [`paid_core::Error::Backend`];
/// - a unique or foreign-key violation: [`paid_core::Error::AlreadyExists`] or
///   [`paid_core::Error::NotFound`] (the store checks first and names what is
///   wrong; these are the backstop);
/// - anything else: a permanent [`paid_core::Error::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options are unusable (a bad URL, schema name or pool size).
    #[error("invalid PostgreSQL store option {what}: {message}")]
    Config {
        /// Which option.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The server could not be reached or refused the connection.
    #[error(
        "cannot connect to PostgreSQL at {target}: {source}; check that the server runs and the URL is right \
         (for tests: scripts/provision-postgres)"
    )]
    Connect {
        /// Host, port and database (never the password).
        target: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A schema migration failed; the schema stays at the version before it.
    #[error("schema migration {version} ({name}) failed: {source}")]
    Migration {
        /// The migration's number.
        version: i32,
        /// Its name.
        name: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The schema was written by a newer version of Paid.
    #[error(
        "schema {schema} is at version {found}, but this build of paid-store-postgres knows versions up to \
         {known}; upgrade Paid to use it"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// The newest migration recorded in it.
        found: i32,
        /// The newest migration this build has.
        known: i32,
    },
    /// A database call failed.
    #[error("PostgreSQL: {0}")]
    Sqlx(#[from] sqlx::Error),
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
}

/// SQLSTATE classes and codes the mapping looks at.
mod sqlstate {
    /// `serialization_failure`.
    pub const SERIALIZATION_FAILURE: &str = "40001";
    /// `deadlock_detected`.
    pub const DEADLOCK: &str = "40P01";
    /// `lock_not_available`.
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// `query_canceled` (statement timeout).
    pub const QUERY_CANCELED: &str = "57014";
    /// Class 08: connection exceptions.
    pub const CONNECTION_CLASS: &str = "08";
    /// `admin_shutdown`, `crash_shutdown`, `cannot_connect_now`.
    pub const SHUTDOWN: [&str; 3] = ["57P01", "57P02", "57P03"];
    /// `too_many_connections`.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// `unique_violation`.
    pub const UNIQUE: &str = "23505";
    /// `foreign_key_violation`.
    pub const FOREIGN_KEY: &str = "23503";
    /// Class 22: data exceptions (e.g. a NUL character in text).
    pub const DATA_CLASS: &str = "22";
    /// Class 23: integrity constraint violations.
    pub const INTEGRITY_CLASS: &str = "23";
}

impl Error {
    /// The server's SQLSTATE, if the server answered with an error.
    pub fn sqlstate(&self) -> Option<Cow<'_, str>> {
        match self {
            Error::Sqlx(sqlx::Error::Database(e))
            | Error::Migration { source: sqlx::Error::Database(e), .. }
            | Error::Connect { source: sqlx::Error::Database(e), .. } => e.code(),
            _ => None,
        }
    }

    /// Whether the server is out of reach: the connection broke or was
    /// refused, the pool found no live connection in time, or the server is
    /// shutting down or starting up. Retrying once it is back succeeds.
    pub fn is_unavailable(&self) -> bool {
        let source = match self {
            Error::Connect { .. } => return true,
            Error::Sqlx(e) | Error::Migration { source: e, .. } => e,
            _ => return false,
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(e) => e.code().is_some_and(|code| {
                code.starts_with(sqlstate::CONNECTION_CLASS)
                    || sqlstate::SHUTDOWN.contains(&code.as_ref())
                    || code == sqlstate::TOO_MANY_CONNECTIONS
            }),
            _ => false,
        }
    }

    /// Whether retrying the same call may succeed: the server is
    /// unavailable, or the transaction lost a serialization race or a
    /// deadlock, or a lock or statement timed out.
    pub fn is_retryable(&self) -> bool {
        self.is_unavailable()
            || self.sqlstate().is_some_and(|code| {
                [
                    sqlstate::SERIALIZATION_FAILURE,
                    sqlstate::DEADLOCK,
                    sqlstate::LOCK_NOT_AVAILABLE,
                    sqlstate::QUERY_CANCELED,
                ]
                .contains(&code.as_ref())
            })
    }

    pub(crate) fn corrupt(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Corrupt { what: what.into(), message: message.to_string() }
    }
}

impl From<Error> for paid_core::Error {
    fn from(e: Error) -> Self {
        if e.is_unavailable() {
            let message = format!("{e}; the call can be retried once the database is back");
            return paid_core::Error::Unavailable { backend: BACKEND, message, source: Some(Box::new(e)) };
        }
        if e.is_retryable() {
            return paid_core::Error::transient(BACKEND, e);
        }
        if let Some(code) = e.sqlstate().map(Cow::into_owned) {
            let message = e.to_string();
            match code.as_str() {
                sqlstate::UNIQUE => return paid_core::Error::AlreadyExists { entity: "row", id: message },
                sqlstate::FOREIGN_KEY => return paid_core::Error::NotFound { entity: "referenced row", id: message },
                c if c.starts_with(sqlstate::INTEGRITY_CLASS) || c.starts_with(sqlstate::DATA_CLASS) => {
                    return paid_core::Error::InvalidInput { what: "value".into(), message };
                }
                _ => {}
            }
        }
        paid_core::Error::permanent(BACKEND, e)
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

impl From<sqlx::Error> for OpError {
    fn from(e: sqlx::Error) -> Self {
        OpError::Db(Error::Sqlx(e))
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

/// The result of one database call.
pub(crate) type OpResult<T> = Result<T, OpError>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn lost_connections_are_unavailable_and_retryable() {
        let io = Error::Sqlx(sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
        assert!(io.is_unavailable());
        let core = paid_core::Error::from(io);
        assert!(matches!(core, paid_core::Error::Unavailable { backend: "postgres", .. }), "{core:?}");
        assert!(core.is_retryable());

        let pool = paid_core::Error::from(Error::Sqlx(sqlx::Error::PoolTimedOut));
        assert!(matches!(pool, paid_core::Error::Unavailable { .. }), "{pool:?}");
    }

    #[test]
    fn config_errors_are_permanent_and_say_what() {
        let e = Error::Config { what: "schema", message: "must match [a-z_][a-z0-9_]*".into() };
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("schema"), "{e}");
        let core = paid_core::Error::from(e);
        assert!(!core.is_retryable(), "{core:?}");
    }
}
