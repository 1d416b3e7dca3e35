//! The retry layer: retries rate-limited and transient failures of any
//! [`LlmProvider`] with exponential backoff and jitter, honoring the
//! provider's `retry-after`.
//!
//! The *decision* is [`ErrorClass::is_retryable`] (429, 5xx, 529
//! overloaded, broken connections); the *mechanism* is backon. For streams,
//! only opening the stream is retried: once events have been delivered, a
//! failure is the caller's to handle.
//!
//! Layer order: `Failover` over `Retry` over `Metered` over a provider, so
//! each provider is retried before the next one is tried, and every attempt
//! is timed.
//!
//! ```
//! use std::sync::Arc;
//! use paid_llm::providers::{ProviderConfig, ProviderKind, anthropic::AnthropicProvider};
//! use paid_llm::retry::{Retry, RetryPolicy};
//!
//! let anthropic = AnthropicProvider::new(ProviderConfig::public(ProviderKind::Anthropic, "sk-...".into())).unwrap();
//! let provider = Retry::new(Arc::new(anthropic), RetryPolicy::default());
//! ```
//!
//! [`ErrorClass::is_retryable`]: crate::ErrorClass::is_retryable

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use futures::stream::BoxStream;
use paid_core::{ChatEvent, ChatRequest, ChatResponse, LlmProvider};

use crate::error::classify;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First backoff delay (before jitter).
    pub min_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// The longest `retry-after` honored. A provider asking for more is not
    /// retried: the caller (or [`crate::failover::Failover`]) moves on.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_factor(2.0)
            .with_jitter()
    }

    /// The delay before the next attempt after `err`: the provider's
    /// `retry-after` when it gave one (up to [`Self::max_retry_after`]),
    /// else the backoff's. `None` stops.
    fn adjust(&self, err: &paid_core::Error, backoff: Option<Duration>) -> Option<Duration> {
        let backoff = backoff?;
        match classify(err).1 {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(backoff),
        }
    }
}

fn retryable(err: &paid_core::Error) -> bool {
    classify(err).0.is_retryable()
}

/// A provider whose failed calls are retried per a [`RetryPolicy`].
#[derive(Clone)]
pub struct Retry {
    inner: Arc<dyn LlmProvider>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry").field("inner", &self.inner.name()).field("policy", &self.policy).finish()
    }
}

impl Retry {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LlmProvider>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

#[async_trait]
impl LlmProvider for Retry {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn complete(&self, req: &ChatRequest) -> paid_core::Result<ChatResponse> {
        let policy = self.policy;
        (|| self.inner.complete(req))
            .retry(policy.backoff())
            .sleep(tokio::time::sleep)
            .when(retryable)
            .adjust(|e, d| policy.adjust(e, d))
            .notify(|e, d| tracing::info!(provider = self.inner.name(), error = %e, wait = ?d, "retrying LLM call"))
            .await
    }

    async fn stream(&self, req: &ChatRequest) -> paid_core::Result<BoxStream<'static, paid_core::Result<ChatEvent>>> {
        let policy = self.policy;
        (|| self.inner.stream(req))
            .retry(policy.backoff())
            .sleep(tokio::time::sleep)
            .when(retryable)
            .adjust(|e, d| policy.adjust(e, d))
            .notify(|e, d| tracing::info!(provider = self.inner.name(), error = %e, wait = ?d, "retrying LLM stream"))
            .await
    }
}
