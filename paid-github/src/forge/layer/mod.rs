//! Cross-cutting concerns of GitHub calls, as layers over one transport.
//!
//! A [`Transport`] sends one request and returns the answer, whatever its
//! status. Layers wrap a transport and are transports themselves, in the
//! style of tower: each concern lives in one place and is not copied into
//! the forge's methods. The stack [`crate::GitHubForge`] builds is, from the
//! outside in:
//!
//! ```text
//! RetryLayer     decides with RetryPolicy (pure): retries 5xx and connection
//!                failures of idempotent requests with backoff + jitter,
//!                waits out rate limits (retry-after / x-ratelimit-reset), capped;
//!                the only retrying layer: what it gives up on is
//!                Error::RetriesExhausted, not retryable
//!   MetricsLayer counts every attempt: paid_github_api_calls_total{endpoint,status},
//!                paid_github_rate_limit_remaining{token_id}, ClientStats
//!     OctoTransport  octocrab (no token, no retries): base URI, timeouts;
//!                    adds the TokenSource's current token to each request
//! ```
//!
//! Metrics sit *inside* retry, so each attempt that reaches GitHub is one
//! call in the counters (a retried 502 shows as a 502 and a 200).

pub(crate) mod metrics;
pub(crate) mod retry;

use std::future::Future;

use http::{HeaderMap, Method};

use super::client::Reply;
use crate::error::Result;

/// One request to send, re-sendable as is (the body is already JSON).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    /// Path and query, relative to the API base.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Option<serde_json::Value>,
    /// Whether sending it twice has the effect of sending it once, so it may
    /// be resent after an answer that may have been lost (a 5xx or a broken
    /// connection). Requests refused by a rate limit were not processed and
    /// are resent regardless.
    pub idempotent: bool,
}

impl Call {
    /// A call whose idempotency follows from its method (`POST` is not).
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        let idempotent = method != Method::POST;
        Self { method, uri: uri.into(), headers: HeaderMap::new(), body: None, idempotent }
    }
}

/// Sends one request. Errors are failures to get an answer at all; every
/// answer, whatever its status, is a [`Reply`] — except that layers may turn
/// an answer they gave up retrying into its error.
pub(crate) trait Transport: Send + Sync {
    /// Sends `call` once (or, for a retrying layer, until it gives up).
    fn send<'a>(&'a self, call: &'a Call) -> impl Future<Output = Result<Reply>> + Send + 'a;
}
