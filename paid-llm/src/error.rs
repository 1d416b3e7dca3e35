//! The one error type of `paid-llm`, and how provider failures are classified.
//!
//! Every public function returns [`Error`]; at the port boundary it becomes a
//! [`paid_core::Error`] that keeps this error as its `source`, so layers
//! ([`crate::retry`], [`crate::failover`]) can read the [`ErrorClass`] and the
//! provider's `retry-after` back with [`classify`].

use std::fmt;
use std::time::Duration;

/// Why a provider call failed, by what the caller should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Too many requests (HTTP 429): wait and retry.
    RateLimited,
    /// The key was refused (HTTP 401/403): fix the configuration.
    Auth,
    /// The account is out of credit or quota: nothing helps until it is topped up.
    Quota,
    /// The prompt does not fit the model's context window: a larger model may.
    ContextTooLong,
    /// A server-side or network failure (5xx, 529 overloaded, timeouts): retry.
    Transient,
    /// The request itself is wrong: retrying will not help.
    Permanent,
}

impl ErrorClass {
    /// Whether retrying the same call on the same provider may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::RateLimited | ErrorClass::Transient)
    }

    /// Whether trying another provider or model may succeed.
    pub fn may_fail_over(self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }

    /// The `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Auth => "auth",
            ErrorClass::Quota => "quota",
            ErrorClass::ContextTooLong => "context_too_long",
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }

    /// Classifies an HTTP error status and the provider's error body.
    ///
    /// The body decides where the status is ambiguous: OpenAI answers 429 both
    /// for rate limits and for `insufficient_quota`, and every provider
    /// answers 400 for a prompt that is too long.
    pub fn from_http(status: u16, body: &str) -> Self {
        let lower = body.to_ascii_lowercase();
        let mentions = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
        if mentions(&[
            "insufficient_quota",
            "billing",
            "credit balance",
            "quota exceeded",
            "exceeded your current quota",
        ]) {
            return ErrorClass::Quota;
        }
        if mentions(&[
            "context_length_exceeded",
            "prompt is too long",
            "maximum context length",
            "context window",
            "too many tokens",
            "exceeds the maximum number of tokens",
            "input token count",
        ]) {
            return ErrorClass::ContextTooLong;
        }
        match status {
            401 | 403 => ErrorClass::Auth,
            402 => ErrorClass::Quota,
            408 | 409 | 425 => ErrorClass::Transient,
            413 => ErrorClass::ContextTooLong,
            429 => ErrorClass::RateLimited,
            500..=599 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in `paid-llm`.
///
/// Messages never contain an API key or a run token: keys live in
/// [`secrecy::SecretString`]s and are only exposed when a request header is
/// built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider answered with an error status.
    #[error("{provider} answered HTTP {status} ({class}): {message}")]
    Api {
        /// Provider name.
        provider: String,
        /// HTTP status.
        status: u16,
        /// What kind of failure it is.
        class: ErrorClass,
        /// The provider's error message.
        message: String,
        /// How long the provider asked us to wait (`retry-after`).
        retry_after: Option<Duration>,
    },
    /// The provider could not be reached, or the connection broke.
    #[error("cannot reach {provider}: {source}")]
    Http {
        /// Provider name.
        provider: String,
        /// The transport error (its URL never carries a key).
        #[source]
        source: reqwest::Error,
    },
    /// The provider sent something that does not follow its wire format.
    #[error("{provider} sent a response that cannot be read: {message}")]
    Decode {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// A price file is invalid.
    #[error("invalid price file {source_name}: {message}")]
    Prices {
        /// The file (or `built-in`).
        source_name: String,
        /// What is wrong, with the entry.
        message: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration {what}: {message}")]
    Config {
        /// Which setting.
        what: String,
        /// Why, and what to do.
        message: String,
    },
    /// A budget cap was reached; the request was not sent.
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
    /// An operation took too long.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// A socket or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. `binding the proxy to 0.0.0.0:8080`.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The store refused a write or read.
    #[error("store: {0}")]
    Store(#[source] Box<paid_core::Error>),
}

impl Error {
    /// The classification of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Api { class, .. } => *class,
            Error::Http { .. } | Error::Timeout { .. } | Error::Io { .. } => ErrorClass::Transient,
            Error::Store(e) if e.is_retryable() => ErrorClass::Transient,
            Error::BudgetExceeded(_) => ErrorClass::Quota,
            _ => ErrorClass::Permanent,
        }
    }

    /// How long the provider asked to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<paid_core::Error> for Error {
    fn from(e: paid_core::Error) -> Self {
        Error::Store(Box::new(e))
    }
}

impl From<Error> for paid_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Config { what, message } => paid_core::Error::InvalidInput { what, message },
            Error::Prices { source_name, message } => {
                paid_core::Error::InvalidInput { what: format!("price file {source_name}"), message }
            }
            Error::BudgetExceeded(m) => paid_core::Error::BudgetExceeded(m),
            Error::Timeout { what, after } => paid_core::Error::Timeout { what, after },
            Error::Store(inner) => *inner,
            other => {
                let retryable = other.class().is_retryable();
                paid_core::Error::Backend {
                    backend: "llm",
                    message: other.to_string(),
                    retryable,
                    source: Some(Box::new(other)),
                }
            }
        }
    }
}

/// Reads the class and `retry-after` of a port error.
///
/// Errors made by this crate carry both; errors of other [`paid_core::LlmProvider`]
/// implementations are classified by their retryable flag.
pub fn classify(err: &paid_core::Error) -> (ErrorClass, Option<Duration>) {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(ours) = e.downcast_ref::<Error>() {
            return (ours.class(), ours.retry_after());
        }
        cur = e.source();
    }
    match err {
        paid_core::Error::BudgetExceeded(_) => (ErrorClass::Quota, None),
        paid_core::Error::Timeout { .. } | paid_core::Error::Unavailable { .. } => (ErrorClass::Transient, None),
        e if e.is_retryable() => (ErrorClass::Transient, None),
        _ => (ErrorClass::Permanent, None),
    }
}

/// Parses a `retry-after` header: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_and_bodies() {
        assert_eq!(ErrorClass::from_http(429, r#"{"error":{"type":"rate_limit_error"}}"#), ErrorClass::RateLimited);
        assert_eq!(ErrorClass::from_http(429, r#"{"error":{"code":"insufficient_quota"}}"#), ErrorClass::Quota);
        assert_eq!(
            ErrorClass::from_http(529, r#"{"type":"error","error":{"type":"overloaded_error"}}"#),
            ErrorClass::Transient
        );
        assert_eq!(ErrorClass::from_http(401, "{}"), ErrorClass::Auth);
        assert_eq!(
            ErrorClass::from_http(400, r#"{"error":{"code":"context_length_exceeded"}}"#),
            ErrorClass::ContextTooLong
        );
        assert_eq!(ErrorClass::from_http(400, r#"{"error":{"message":"bad"}}"#), ErrorClass::Permanent);
    }

    #[test]
    fn class_survives_the_port_boundary() {
        let e = Error::Api {
            provider: "openai".into(),
            status: 429,
            class: ErrorClass::RateLimited,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        let core: paid_core::Error = e.into();
        assert!(core.is_retryable());
        assert_eq!(classify(&core), (ErrorClass::RateLimited, Some(Duration::from_secs(2))));
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
