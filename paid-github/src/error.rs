//! The error type of `paid-github`, and how it maps onto [`paid_core::Error`].
//!
//! Variants are by meaning. Each names what to do about it where that is
//! known. Converting into [`paid_core::Error`] keeps this error as the
//! `source` where the core variant has one, so callers can downcast to it.

use std::path::PathBuf;
use std::time::Duration;

use paid_core::Timestamp;
use serde::{Deserialize, Serialize};

/// The result type of this crate's own functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the GitHub forge and the git workspaces can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// GitHub rejected the credentials (401).
    #[error(
        "GitHub rejected the token on {request} (401 {message}); check the token configured for this forge \
         (it may be expired or revoked)"
    )]
    Unauthorized {
        /// The request, e.g. `GET /repos/o/r/issues`.
        request: String,
        /// GitHub's message.
        message: String,
    },
    /// GitHub refused the request (403) for a reason other than rate limits.
    #[error(
        "GitHub refused {request} (403 {message}); the token needs write access to issues and pull requests of \
         this repository"
    )]
    Forbidden {
        /// The request.
        request: String,
        /// GitHub's message.
        message: String,
    },
    /// A primary or secondary rate limit was hit (403/429 with rate-limit
    /// headers). Retrying after `retry_after` (or at `reset`) may succeed.
    #[error("GitHub rate limit hit on {request}: {message}{}", wait_hint(*retry_after, *reset))]
    RateLimited {
        /// The request.
        request: String,
        /// GitHub's message.
        message: String,
        /// From the `retry-after` header.
        retry_after: Option<Duration>,
        /// From the `x-ratelimit-reset` header.
        reset: Option<Timestamp>,
    },
    /// The entity does not exist, or the token cannot see it (404/410).
    #[error("{entity} {id} not found on GitHub ({request}); check the repository name and the token's access")]
    NotFound {
        /// Kind of entity, e.g. `issue`.
        entity: &'static str,
        /// Its identifier, e.g. `octo/repo#12`.
        id: String,
        /// The request.
        request: String,
    },
    /// GitHub rejected the request body (422).
    #[error("GitHub rejected {request} (422 {message}){}", detail_list(errors))]
    Validation {
        /// The request.
        request: String,
        /// GitHub's top-level message, e.g. `Validation Failed`.
        message: String,
        /// GitHub's per-field errors.
        errors: Vec<ValidationError>,
    },
    /// GitHub answered with a server error (5xx). Retrying may succeed.
    #[error("GitHub server error on {request} ({status} {message}); retry later")]
    Server {
        /// The request.
        request: String,
        /// HTTP status.
        status: u16,
        /// GitHub's message, or the body.
        message: String,
    },
    /// The retry layer retried `source` until its retries ran out (see
    /// [`crate::RetryPolicy`]). Not retryable: the forge's one retry layer
    /// has already retried, so the engine does not retry the step again.
    #[error("{source} (still failing after {attempts} attempts)")]
    RetriesExhausted {
        /// Attempts made, the first included.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: Box<Error>,
    },
    /// The forge is configured without a capability the call needs (see
    /// [`crate::Capabilities`]), or GitHub says the feature is disabled.
    #[error("not supported: {what}")]
    NotSupported {
        /// The feature, where, and what to do about it.
        what: String,
    },
    /// A classic token lacks a scope Paid needs.
    #[error(
        "the GitHub token lacks the `{scope}` scope (it has: {}); Paid pushes branches and opens pull requests: \
         give the token the `{scope}` scope, or use a fine-grained token with read and write access to contents, \
         issues and pull requests",
        if granted.is_empty() { "none".to_string() } else { granted.join(", ") }
    )]
    MissingScope {
        /// The scope needed, e.g. `repo`.
        scope: &'static str,
        /// The scopes the token has (`x-oauth-scopes`).
        granted: Vec<String>,
    },
    /// The token can read a repository but not push to it.
    #[error(
        "the GitHub token can read {repo} but not push to it; give it write access (a collaborator with write \
         permission, or a fine-grained token with read and write access to contents, issues and pull requests)"
    )]
    NoPushAccess {
        /// `owner/name`.
        repo: String,
    },
    /// GitHub answered with a status this client does not expect.
    #[error("unexpected answer from GitHub to {request}: {status} {message}")]
    Unexpected {
        /// The request.
        request: String,
        /// HTTP status.
        status: u16,
        /// GitHub's message, or the body.
        message: String,
    },
    /// GitHub could not be reached (connection, TLS, timeout). Retrying may succeed.
    #[error("cannot reach GitHub at {base} for {request}: {source}")]
    Transport {
        /// The API base URI.
        base: String,
        /// The request.
        request: String,
        /// The client error.
        #[source]
        source: Box<octocrab::Error>,
    },
    /// A response body did not have the expected shape.
    #[error("unexpected response body from GitHub for {request}: {source}")]
    Decode {
        /// The request.
        request: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The configuration is invalid.
    #[error("invalid GitHub configuration {what}: {message}")]
    Config {
        /// The setting.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// An argument is unusable (a branch name that is not a valid ref, a
    /// repository name that is not a single path segment, ...).
    #[error("invalid {what}: {message}")]
    InvalidInput {
        /// What, e.g. `branch`.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A repository could not be cloned or fetched.
    #[error("cannot clone {url}: {message}")]
    Clone {
        /// The remote URL, without credentials.
        url: String,
        /// Why.
        message: String,
    },
    /// A git operation failed.
    #[error("git {op} failed in {}: {source}", path.display())]
    Git {
        /// The operation, e.g. `commit`.
        op: &'static str,
        /// The repository or worktree.
        path: PathBuf,
        /// The libgit2 error.
        #[source]
        source: git2::Error,
    },
    /// The git remote could not be reached (network, TLS, HTTP). Retrying may
    /// succeed.
    #[error("cannot reach git remote {url}: {message}")]
    Remote {
        /// The remote URL, without credentials.
        url: String,
        /// Why.
        message: String,
    },
    /// The remote refused the pushed ref (a hook, branch protection, ...).
    #[error("push of {branch} to {url} was rejected: {message}")]
    PushRejected {
        /// The branch.
        branch: String,
        /// The remote URL, without credentials.
        url: String,
        /// The remote's reason.
        message: String,
    },
    /// The remote branch holds commits Paid has not seen; pushing would
    /// overwrite someone else's work.
    #[error(
        "remote branch {branch} on {url} is at {remote}, which Paid neither pushed nor built on; refusing to \
         overwrite it. Fetch the branch and rebase the run's work onto it"
    )]
    StaleBranch {
        /// The branch.
        branch: String,
        /// The remote URL, without credentials.
        url: String,
        /// The commit the remote branch points at.
        remote: String,
    },
    /// The worktree crossed one of the run's limits (file size, total
    /// size, number of files); nothing was committed.
    #[error("worktree limit: {message}")]
    WorktreeLimit {
        /// Which limit, and the file that crossed it.
        message: String,
    },
    /// A worktree entry the host will not read or commit: a symlink whose
    /// target leaves the worktree, a FIFO, socket or device, or a file that
    /// changed kind while it was read.
    #[error("{path}: {reason}; nothing was committed")]
    Unsafe {
        /// The entry, relative to the worktree.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A worktree that does not belong to these workspaces.
    #[error("{} is not a worktree under {}", path.display(), root.display())]
    ForeignWorktree {
        /// The path given.
        path: PathBuf,
        /// The workspaces' worktree directory.
        root: PathBuf,
    },
    /// The project's mirror does not exist yet.
    #[error("no mirror of {repo} at {}; call ensure_mirror first", path.display())]
    MirrorMissing {
        /// `owner/name`.
        repo: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, e.g. `remove worktree`.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking git task panicked or was cancelled.
    #[error("git task {op} did not complete: {message}")]
    Task {
        /// The operation.
        op: &'static str,
        /// Why.
        message: String,
    },
}

/// One entry of the `errors` array of a GitHub 422 body.
///
/// GitHub sends objects like `{"resource": "Label", "code": "invalid",
/// "field": "color"}` (sometimes with a `message`), and occasionally plain
/// strings, which land in `message`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ValidationError {
    /// The resource, e.g. `PullRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The field, e.g. `title`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The code, e.g. `missing_field`, `invalid`, `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A free-text message, e.g. `A pull request already exists for o:b.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ValidationError {
    /// An error with only a message.
    pub fn message(message: impl Into<String>) -> Self {
        Self { message: Some(message.into()), ..Self::default() }
    }

    /// An error on `field` of `resource` with `code`.
    pub fn field(resource: impl Into<String>, field: impl Into<String>, code: impl Into<String>) -> Self {
        Self { resource: Some(resource.into()), field: Some(field.into()), code: Some(code.into()), message: None }
    }
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        match (&self.resource, &self.field) {
            (Some(r), Some(fl)) => parts.push(format!("{r}.{fl}")),
            (Some(r), None) => parts.push(r.clone()),
            (None, Some(fl)) => parts.push(fl.clone()),
            (None, None) => {}
        }
        if let Some(c) = &self.code {
            parts.push(c.clone());
        }
        if let Some(m) = &self.message {
            parts.push(m.clone());
        }
        f.write_str(&parts.join(" "))
    }
}

fn detail_list(errors: &[ValidationError]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(": {}", list.join("; "))
    }
}

fn wait_hint(retry_after: Option<Duration>, reset: Option<Timestamp>) -> String {
    match (retry_after, reset) {
        (Some(d), _) => format!("; retry after {}s", d.as_secs()),
        (None, Some(t)) => format!("; the limit resets at {}", t.to_rfc3339()),
        (None, None) => String::new(),
    }
}

impl Error {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Server { .. } | Error::Transport { .. } | Error::Remote { .. }
        )
    }

    /// The error behind [`Error::RetriesExhausted`], else `self`.
    pub fn by_meaning(&self) -> &Error {
        match self {
            Error::RetriesExhausted { source, .. } => source.by_meaning(),
            other => other,
        }
    }

    /// For a 422, whether GitHub says the pull request already exists.
    pub fn is_pull_request_exists(&self) -> bool {
        match self {
            Error::Validation { errors, message, .. } => {
                message.contains("A pull request already exists")
                    || errors
                        .iter()
                        .any(|e| e.message.as_deref().is_some_and(|m| m.contains("pull request already exists")))
            }
            _ => false,
        }
    }

    pub(crate) fn git(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(git2::Error) -> Error {
        let path = path.into();
        move |source| Error::Git { op, path, source }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

const GITHUB: &str = "github";
const GIT: &str = "git";

impl From<Error> for paid_core::Error {
    fn from(e: Error) -> Self {
        use paid_core::Error as Core;
        let backend = |e: Error, backend: &'static str, retryable: bool| Core::Backend {
            backend,
            message: e.to_string(),
            retryable,
            source: Some(Box::new(e)),
        };
        match e {
            Error::NotFound { entity, id, .. } => Core::NotFound { entity, id },
            Error::Validation { ref request, .. } => {
                Core::InvalidInput { what: format!("GitHub request {request}"), message: e.to_string() }
            }
            Error::Config { what, message } => Core::InvalidInput { what: format!("github.{what}"), message },
            Error::InvalidInput { what, message } => Core::InvalidInput { what: what.into(), message },
            Error::Clone { url, message } => Core::Clone { url, message },
            Error::RateLimited { .. } | Error::Transport { .. } => {
                Core::Unavailable { backend: GITHUB, message: e.to_string(), source: Some(Box::new(e)) }
            }
            Error::Remote { .. } => {
                Core::Unavailable { backend: GIT, message: e.to_string(), source: Some(Box::new(e)) }
            }
            Error::Server { .. } => backend(e, GITHUB, true),
            Error::RetriesExhausted { attempts, source } => Core::from(*source).exhausted(attempts),
            Error::NotSupported { what } => Core::NotSupported { what },
            Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::Unexpected { .. }
            | Error::Decode { .. }
            | Error::MissingScope { .. }
            | Error::NoPushAccess { .. } => backend(e, GITHUB, false),
            Error::WorktreeLimit { message } => Core::WorktreeLimit(message),
            Error::Unsafe { .. } => Core::InvalidInput { what: "worktree".into(), message: e.to_string() },
            Error::ForeignWorktree { .. } => {
                Core::InvalidInput { what: "worktree.path".into(), message: e.to_string() }
            }
            Error::MirrorMissing { ref path, .. } => {
                Core::NotFound { entity: "mirror", id: path.display().to_string() }
            }
            Error::Git { .. }
            | Error::PushRejected { .. }
            | Error::StaleBranch { .. }
            | Error::Io { .. }
            | Error::Task { .. } => backend(e, GIT, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_read_like_github() {
        let e = Error::Validation {
            request: "POST /repos/o/r/labels".into(),
            message: "Validation Failed".into(),
            errors: vec![ValidationError::field("Label", "color", "invalid")],
        };
        assert_eq!(
            e.to_string(),
            "GitHub rejected POST /repos/o/r/labels (422 Validation Failed): Label.color invalid"
        );
        let core: paid_core::Error = e.into();
        assert!(
            matches!(&core, paid_core::Error::InvalidInput { message, .. } if message.contains("Validation Failed"))
        );
        assert!(!core.is_retryable());
    }

    #[test]
    fn retryability_survives_conversion() {
        let server = Error::Server { request: "GET /x".into(), status: 502, message: "Bad Gateway".into() };
        assert!(server.is_retryable());
        assert!(paid_core::Error::from(server).is_retryable());
        let limited = Error::RateLimited {
            request: "GET /x".into(),
            message: "API rate limit exceeded".into(),
            retry_after: Some(Duration::from_secs(60)),
            reset: None,
        };
        assert!(limited.to_string().ends_with("retry after 60s"), "{limited}");
        assert!(paid_core::Error::from(limited).is_retryable());
        let auth = Error::Unauthorized { request: "GET /x".into(), message: "Bad credentials".into() };
        let core = paid_core::Error::from(auth);
        assert!(!core.is_retryable());
        assert!(core.to_string().contains("check the token"), "{core}");
    }

    #[test]
    fn what_the_retry_layer_gave_up_on_is_not_retried_again() {
        let server = Error::Server { request: "GET /x".into(), status: 502, message: "Bad Gateway".into() };
        let gave_up = Error::RetriesExhausted { attempts: 5, source: Box::new(server) };
        assert!(!gave_up.is_retryable());
        assert!(matches!(gave_up.by_meaning(), Error::Server { status: 502, .. }));
        assert_eq!(
            gave_up.to_string(),
            "GitHub server error on GET /x (502 Bad Gateway); retry later (still failing after 5 attempts)"
        );
        let core = paid_core::Error::from(gave_up);
        assert!(!core.is_retryable());
        assert!(matches!(&core, paid_core::Error::RetriesExhausted { attempts: 5, .. }), "{core:?}");
        assert!(matches!(core.by_meaning(), paid_core::Error::Backend { retryable: true, .. }), "{core:?}");

        let unsupported = paid_core::Error::from(Error::NotSupported { what: "sub-issues on o/r".into() });
        assert!(matches!(&unsupported, paid_core::Error::NotSupported { what } if what == "sub-issues on o/r"));
        assert!(!unsupported.is_retryable());
    }

    #[test]
    fn the_core_error_keeps_this_error_as_source() {
        let e =
            Error::Forbidden { request: "POST /x".into(), message: "Resource not accessible by integration".into() };
        let core = paid_core::Error::from(e);
        let source = std::error::Error::source(&core).and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(source, Some(Error::Forbidden { .. })));
    }
}
