//! [`DockerError`], the one error of this crate, and its mapping into
//! [`paid_core::Error`].

use std::path::PathBuf;

use bollard::errors::Error as BollardError;

/// Everything that can go wrong talking to the Docker engine.
///
/// Callers of the [`SandboxRuntime`](paid_core::SandboxRuntime) port see
/// these converted into [`paid_core::Error`] by meaning (see the `From`
/// impl); the original error stays reachable as the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// The engine does not answer: no socket, connection refused, the
    /// connection broke, or a request timed out.
    #[error("cannot reach the Docker engine at {endpoint}: {source}; is dockerd running?")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// What bollard reported.
        #[source]
        source: BollardError,
    },
    /// The sandbox image is not present on the engine.
    #[error("image {image} not found; build it with `{hint}`")]
    ImageMissing {
        /// The image reference.
        image: String,
        /// The command that builds it.
        hint: String,
    },
    /// No container with this id exists.
    #[error("sandbox {id} not found")]
    SandboxNotFound {
        /// The container id.
        id: String,
    },
    /// The engine answered with an error.
    #[error("{op} failed: {source}")]
    Api {
        /// The operation, e.g. `create container`.
        op: &'static str,
        /// What the engine or bollard reported.
        #[source]
        source: BollardError,
    },
    /// The worktree could not be made writable for the sandbox user.
    #[error("cannot make {path} writable for the sandbox user: {source}")]
    Permissions {
        /// The file or directory that failed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The spec or the configuration asks for something the runtime will not do.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What is invalid, e.g. `sandbox user`.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A warm-pool slot could not be prepared, claimed or released (see
    /// "Warm pool" in the crate docs).
    #[error("warm pool: cannot {op} ({path}): {source}")]
    Slot {
        /// What was being done, e.g. `move worktree entry into slot`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Egress control could not be set up for a sandbox.
    #[error("egress: {message}")]
    Egress {
        /// What went wrong and what to do.
        message: String,
    },
    /// An image build failed: a bad instruction, a failing step, a base
    /// image the engine cannot find or pull.
    #[error("building {image} on {endpoint} failed{}: {message}", step.as_ref().map(|s| format!(" at step {s}")).unwrap_or_default())]
    Build {
        /// The tag being built.
        image: String,
        /// The endpoint it was built on.
        endpoint: String,
        /// The step it failed at (`3: RUN make`), once one began.
        step: Option<String>,
        /// What the engine reported.
        message: String,
    },
    /// The TLS settings of a remote endpoint cannot be used: a file is
    /// missing, unreadable or holds no certificate or key, or the key does
    /// not fit the certificate.
    #[error("TLS for {endpoint}: {message}")]
    Tls {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong, naming the file.
        message: String,
    },
    /// An exec did not behave as the engine's API promises.
    #[error("exec in sandbox {id}: {message}")]
    Exec {
        /// The container id.
        id: String,
        /// What happened.
        message: String,
    },
}

impl DockerError {
    /// Classifies an error of operation `op` against `endpoint`: transport
    /// failures become [`DockerError::Unreachable`], the rest
    /// [`DockerError::Api`].
    pub(crate) fn from_bollard(op: &'static str, endpoint: &str, source: BollardError) -> Self {
        if is_transport(&source) {
            DockerError::Unreachable { endpoint: endpoint.to_string(), source }
        } else {
            DockerError::Api { op, source }
        }
    }

    /// The HTTP status the engine answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DockerError::Api { source, .. } => status_of(source),
            _ => None,
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DockerError::Unreachable { .. } => true,
            DockerError::Api { source, .. } => match status_of(source) {
                Some(status) => status >= 500,
                None => matches!(source, BollardError::DockerStreamError { .. }),
            },
            _ => false,
        }
    }
}

/// The HTTP status of an engine answer, if the error is one.
pub(crate) fn status_of(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Whether the error says the engine could not be talked to at all.
fn is_transport(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError
            | BollardError::UnsupportedURISchemeError { .. }
    )
}

impl From<DockerError> for paid_core::Error {
    fn from(err: DockerError) -> Self {
        let retryable = err.is_retryable();
        let message = err.to_string();
        match err {
            DockerError::Unreachable { source, .. } => {
                paid_core::Error::Unavailable { backend: "docker", message, source: Some(Box::new(source)) }
            }
            DockerError::ImageMissing { image, hint } => paid_core::Error::ImageMissing { image, hint },
            DockerError::SandboxNotFound { id } => paid_core::Error::NotFound { entity: "sandbox", id },
            DockerError::Invalid { what, message } => {
                paid_core::Error::InvalidInput { what: what.to_string(), message }
            }
            DockerError::Tls { .. } => paid_core::Error::InvalidInput { what: "docker tls".to_string(), message },
            DockerError::Api { source, .. } => {
                paid_core::Error::Backend { backend: "docker", message, retryable, source: Some(Box::new(source)) }
            }
            DockerError::Permissions { source, .. } | DockerError::Slot { source, .. } => {
                paid_core::Error::Backend { backend: "docker", message, retryable, source: Some(Box::new(source)) }
            }
            DockerError::Egress { .. } => {
                paid_core::Error::Backend { backend: "docker", message, retryable: true, source: None }
            }
            DockerError::Exec { .. } | DockerError::Build { .. } => {
                paid_core::Error::Backend { backend: "docker", message, retryable, source: None }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16) -> BollardError {
        BollardError::DockerResponseServerError { status_code, message: "boom".into() }
    }

    #[test]
    fn transport_failures_are_unavailable_with_a_hint() {
        let err = DockerError::from_bollard(
            "ping",
            "unix:///nowhere.sock",
            BollardError::SocketNotFoundError("/nowhere.sock".into()),
        );
        let core: paid_core::Error = err.into();
        assert!(core.is_retryable());
        assert!(matches!(core, paid_core::Error::Unavailable { backend: "docker", .. }));
        assert_eq!(
            core.to_string(),
            "docker unavailable: cannot reach the Docker engine at unix:///nowhere.sock: \
             Socket not found: /nowhere.sock; is dockerd running?"
        );
        assert!(std::error::Error::source(&core).is_some());
    }

    #[test]
    fn server_errors_are_retryable_client_errors_are_not() {
        let core: paid_core::Error = DockerError::from_bollard("create container", "x", server(500)).into();
        assert!(core.is_retryable());
        assert!(std::error::Error::source(&core).is_some());
        let core: paid_core::Error = DockerError::from_bollard("create container", "x", server(409)).into();
        assert!(!core.is_retryable());
        assert_eq!(core.code(), "backend");
    }

    #[test]
    fn meanings_map_one_to_one() {
        let core: paid_core::Error =
            DockerError::ImageMissing { image: "paid/agent:bookworm".into(), hint: "scripts/build-images".into() }
                .into();
        assert_eq!(core.to_string(), "image paid/agent:bookworm not found; build it with `scripts/build-images`");
        let core: paid_core::Error = DockerError::SandboxNotFound { id: "abc".into() }.into();
        assert_eq!(core.to_string(), "sandbox abc not found");
        let core: paid_core::Error = DockerError::Invalid { what: "sandbox user", message: "root".into() }.into();
        assert_eq!(core.code(), "invalid_input");
    }
}
