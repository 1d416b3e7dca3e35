//! The one error type of `paid-core`, shared by every port.
//!
//! Variants are grouped by meaning, not by backend: a backend maps its own
//! errors into these, keeping the original as `source`. [`Error::is_retryable`]
//! is the one flag retry logic reads.

use std::time::Duration;

/// A boxed error from a backend, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every port.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Paid, by meaning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named entity does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// Kind of entity, e.g. `run`.
        entity: &'static str,
        /// Its identifier.
        id: String,
    },
    /// The entity already exists and may not be created twice.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// Kind of entity.
        entity: &'static str,
        /// Its identifier.
        id: String,
    },
    /// A run state transition that the state machine forbids, or whose
    /// expected current state did not match (someone else moved the run).
    #[error("run {run}: illegal transition {from} -> {to}")]
    IllegalTransition {
        /// The run.
        run: String,
        /// State the caller expected the run to be in (or the actual state).
        from: String,
        /// State the caller asked for.
        to: String,
    },
    /// The caller does not hold the lease on the run (it expired or another
    /// worker took it).
    #[error("run {run}: lease not held by {owner}")]
    LeaseLost {
        /// The run.
        run: String,
        /// The worker that thought it held the lease.
        owner: String,
    },
    /// An issue was opened by an author outside the project's allowlist.
    #[error("issue #{issue} was opened by untrusted author {author:?}; only {allowed:?} may trigger runs")]
    Untrusted {
        /// Issue number.
        issue: u64,
        /// Its author.
        author: String,
        /// The project's allowlist.
        allowed: Vec<String>,
    },
    /// The change touches paths the project's policy forbids.
    #[error("policy violation: changes touch forbidden paths {paths:?}; nothing was pushed")]
    PolicyViolation {
        /// The offending paths, relative to the repository root.
        paths: Vec<String>,
    },
    /// A sandbox image is not present.
    #[error("image {image} not found; build it with `{hint}`")]
    ImageMissing {
        /// The image reference.
        image: String,
        /// The command that builds it.
        hint: String,
    },
    /// A backend (Docker, the database, GitHub, git) cannot be reached.
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        /// Which backend.
        backend: &'static str,
        /// What to do about it.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A git repository could not be cloned or fetched.
    #[error("cannot clone {url}: {message}")]
    Clone {
        /// The remote URL (never carrying credentials).
        url: String,
        /// Why.
        message: String,
    },
    /// Input rejected before anything was written.
    #[error("invalid {what}: {message}")]
    InvalidInput {
        /// What was invalid, e.g. `project.trigger_labels`.
        what: String,
        /// Why.
        message: String,
    },
    /// An operation exceeded its time limit.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// The operation.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The run or operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A budget (tokens or cost) would be exceeded.
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
    /// The worktree crossed a [`crate::WorktreeLimits`] cap (size of a
    /// file, of all files, or their number): the agent was stopped, and
    /// nothing of it was committed.
    #[error("worktree limit: {0}")]
    WorktreeLimit(String),
    /// The agent finished without success.
    #[error("agent failed: {0}")]
    Agent(String),
    /// The agent looped without progress (same tool call repeated, or no
    /// file change for many turns).
    #[error("agent stuck: {0}")]
    Stuck(String),
    /// Verification kept failing until the iteration limit.
    #[error("verification still failing after {iterations} iterations:\n{digest}")]
    VerifyFailed {
        /// Agent iterations made.
        iterations: u32,
        /// The last failure digest (tail).
        digest: String,
    },
    /// The backend does not offer this optional capability (a forge without
    /// sub-issues, a runtime without a warm pool). Retrying will not help;
    /// the caller goes without it or the user picks another backend.
    #[error("not supported: {what}")]
    NotSupported {
        /// The capability and the backend, e.g. `sub-issues on GitHub
        /// Enterprise Server 3.9`.
        what: String,
    },
    /// A retry layer retried `source` (a retryable error) until its
    /// patience ran out. Not retryable itself: each boundary retries once
    /// (see [`crate::layers`]), so a caller above it does not retry again.
    /// [`Error::code`] and [`Error::by_meaning`] look through it.
    #[error("{source} (gave up after {attempts} attempts)")]
    RetriesExhausted {
        /// Attempts made, the first included.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: Box<Error>,
    },
    /// A backend error with no more specific meaning.
    #[error("{backend}: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What happened.
        message: String,
        /// Whether retrying the same call may succeed.
        retryable: bool,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Timeout { .. } => true,
            Error::Backend { retryable, .. } => *retryable,
            // Given up on by a retry layer, or never going to work.
            Error::RetriesExhausted { .. } | Error::NotSupported { .. } => false,
            _ => false,
        }
    }

    /// This error after a retry layer gave up on it: a retryable error
    /// becomes [`Error::RetriesExhausted`] (no longer retryable); any other
    /// error is returned as is.
    ///
    /// ```
    /// use paid_core::Error;
    ///
    /// let down = Error::Unavailable { backend: "postgres", message: "connection refused".into(), source: None };
    /// let gave_up = down.exhausted(5);
    /// assert!(!gave_up.is_retryable());
    /// assert_eq!(gave_up.code(), "unavailable");
    /// assert!(matches!(gave_up.by_meaning(), Error::Unavailable { .. }));
    /// ```
    pub fn exhausted(self, attempts: u32) -> Self {
        if self.is_retryable() { Error::RetriesExhausted { attempts, source: Box::new(self) } } else { self }
    }

    /// The error by meaning: the error a retry layer gave up on for
    /// [`Error::RetriesExhausted`], else `self`. Match on this to map an
    /// error to a response (an HTTP status, an exit code).
    pub fn by_meaning(&self) -> &Error {
        match self {
            Error::RetriesExhausted { source, .. } => source.by_meaning(),
            other => other,
        }
    }

    /// A backend error that retrying may fix.
    pub fn transient(backend: &'static str, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        Error::Backend { backend, message: source.to_string(), retryable: true, source: Some(source) }
    }

    /// A backend error that retrying will not fix.
    pub fn permanent(backend: &'static str, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        Error::Backend { backend, message: source.to_string(), retryable: false, source: Some(source) }
    }

    /// A short machine-readable code for this error, stored with failed runs.
    /// [`Error::RetriesExhausted`] has the code of the error given up on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::IllegalTransition { .. } => "illegal_transition",
            Error::LeaseLost { .. } => "lease_lost",
            Error::Untrusted { .. } => "untrusted_author",
            Error::PolicyViolation { .. } => "policy_violation",
            Error::ImageMissing { .. } => "image_missing",
            Error::Unavailable { .. } => "unavailable",
            Error::Clone { .. } => "clone_failed",
            Error::InvalidInput { .. } => "invalid_input",
            Error::Timeout { .. } => "timeout",
            Error::Cancelled => "cancelled",
            Error::BudgetExceeded(_) => "budget_exceeded",
            Error::WorktreeLimit(_) => "worktree_limit",
            Error::Agent(_) => "agent_failed",
            Error::Stuck(_) => "stuck",
            Error::VerifyFailed { .. } => "verify_failed",
            Error::NotSupported { .. } => "not_supported",
            Error::RetriesExhausted { source, .. } => source.code(),
            Error::Backend { .. } => "backend",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Error {
        Error::Unavailable { backend: "postgres", message: "connection refused".into(), source: None }
    }

    #[test]
    fn an_error_a_retry_layer_gave_up_on_is_not_retryable_but_keeps_its_meaning() {
        let gave_up = down().exhausted(7);
        assert!(!gave_up.is_retryable());
        assert_eq!(gave_up.code(), "unavailable");
        assert!(matches!(gave_up.by_meaning(), Error::Unavailable { .. }));
        assert_eq!(gave_up.to_string(), "postgres unavailable: connection refused (gave up after 7 attempts)");
        assert!(std::error::Error::source(&gave_up).is_some());
    }

    #[test]
    fn a_permanent_error_is_not_wrapped_when_given_up_on() {
        let err = Error::Cancelled.exhausted(3);
        assert!(matches!(err, Error::Cancelled), "{err:?}");
    }

    #[test]
    fn an_unsupported_capability_is_not_retryable() {
        let err = Error::NotSupported { what: "sub-issues on this forge".into() };
        assert!(!err.is_retryable());
        assert_eq!(err.code(), "not_supported");
        assert_eq!(err.to_string(), "not supported: sub-issues on this forge");
    }
}
