//! The retry layer: [`RetryPolicy`] decides, backon and tokio's timer carry
//! it out. It is the one place GitHub calls are retried: octocrab's own
//! retry middleware is off ([`crate::GitHubForge::new`] sets
//! `RetryConfig::None`), and what this layer retried and gave up on is not
//! retried again by the engine (see [`RetryPolicy`]).
//!
//! The decision is a pure function ([`RetryPolicy::decide`]) of the request's
//! idempotency, the error and the backoff step, so it is tested without a
//! server or a clock. The mechanism ([`RetryLayer`]) turns answers worth
//! retrying (5xx, rate limits) into errors, asks the policy, sleeps and
//! resends, and gives up with the last error, wrapped in
//! [`Error::RetriesExhausted`] when its retries ran out.
//!
//! Before sending, the layer also honors the last `x-ratelimit-remaining:
//! 0`: it waits for `x-ratelimit-reset` when that is within the cap, and
//! otherwise fails at once with [`Error::RateLimited`] instead of spending a
//! call GitHub would refuse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use http::StatusCode;
use paid_core::Timestamp;

use super::metrics::Observer;
use super::{Call, Transport};
use crate::error::{Error, Result};
use crate::forge::RateLimit;
use crate::forge::client::{Reply, describe, error_from};

/// When GitHub sends no `retry-after` with a secondary rate limit, wait this
/// long (GitHub's documentation: "wait for at least one minute").
const SECONDARY_DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Slack added to waits until `x-ratelimit-reset`, whose resolution is a second.
const RESET_SLACK: Duration = Duration::from_millis(500);

/// How GitHub calls are retried: the decision, apart from the mechanism.
///
/// - `5xx` answers and connection failures are retried with exponential
///   backoff and jitter, at most `max_retries` times, for idempotent requests
///   only (a `POST` whose answer was lost may have taken effect; the
///   operation above it, e.g. the marker-keyed comment upsert, is what makes
///   it safe to repeat).
/// - Rate limits (`403`/`429` with `retry-after`, or with
///   `x-ratelimit-remaining: 0`) are waited out for any request (GitHub did
///   not process it): `retry-after` when given, else until
///   `x-ratelimit-reset`, else one minute. A wait longer than
///   `max_rate_limit_wait` is not made: the [`Error::RateLimited`] is returned
///   so the caller (the engine's step retry) can come back later.
/// - Nothing else is retried.
///
/// **One retry layer per boundary.** When the retries run out, the last
/// error is returned as [`Error::RetriesExhausted`], which is not retryable
/// (nor is the [`paid_core::Error::RetriesExhausted`] it converts into), so
/// the engine does not retry the step on top. Errors the policy declined to
/// retry keep their own flag: a `5xx` answer to a `POST` (retried, if at
/// all, by the engine's step, whose idempotency key makes it safe) and a
/// rate limit too long to wait out.
///
/// **Attempts of a persistent `502`.** An idempotent request (`GET`,
/// `PATCH`, `PUT`, `DELETE`, and the `POST`s marked safe to resend) is sent
/// `1 + max_retries` times ([`RetryPolicy::attempts`]): 5 with the default
/// policy (4 retries), with backoffs of about 0.5, 1, 2 and 4 s (plus
/// jitter) between them, then fails with a non-retryable
/// [`Error::RetriesExhausted`]. A plain `POST` is sent once and fails with a
/// retryable [`Error::Server`]. With [`RetryPolicy::none`], every request is
/// sent once and the error keeps its flag: the engine is then the one
/// retrying layer.
///
/// ```
/// use std::time::Duration;
/// use paid_github::RetryPolicy;
///
/// let policy = RetryPolicy::new().max_retries(5).delays(Duration::from_millis(200), Duration::from_secs(5));
/// let server = paid_github::Error::Server { request: "GET /x".into(), status: 502, message: "Bad Gateway".into() };
/// let step = Duration::from_millis(400);
/// assert_eq!(policy.decide(true, &server, Some(step), chrono::Utc::now()), Some(step));
/// assert_eq!(policy.decide(false, &server, Some(step), chrono::Utc::now()), None, "a POST is not resent");
/// assert_eq!(RetryPolicy::none().decide(true, &server, None, chrono::Utc::now()), None);
/// assert_eq!(RetryPolicy::new().attempts(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: usize,
    min_delay: Duration,
    max_delay: Duration,
    max_rate_limit_wait: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_rate_limit_wait: Duration::from_secs(90),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// 4 retries, backoff from 0.5 s doubling to at most 10 s with jitter,
    /// rate-limit waits up to 90 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Never retry and never wait: every failure is returned at once.
    pub fn none() -> Self {
        Self { max_retries: 0, max_rate_limit_wait: Duration::ZERO, ..Self::default() }
    }

    /// At most this many retries of one request (waits included).
    pub fn max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    /// The most attempts one request makes: `1 + max_retries`.
    pub fn attempts(&self) -> usize {
        self.max_retries.saturating_add(1)
    }

    /// The first backoff delay and the cap of the doubling delays.
    pub fn delays(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max.max(min);
        self
    }

    /// The longest rate-limit wait to make before giving up.
    pub fn max_rate_limit_wait(mut self, wait: Duration) -> Self {
        self.max_rate_limit_wait = wait;
        self
    }

    /// Whether backoff delays are randomized (on by default).
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The decision: whether a failed attempt is tried again, and after how
    /// long. `backoff` is the next step of the exponential backoff, `None`
    /// once the retries are used up.
    pub fn decide(&self, idempotent: bool, err: &Error, backoff: Option<Duration>, now: Timestamp) -> Option<Duration> {
        let backoff = backoff?;
        match err {
            Error::RateLimited { retry_after, reset, .. } => {
                let wait = match (retry_after, reset) {
                    (Some(d), _) => *d,
                    (None, Some(reset)) => until(*reset, now),
                    (None, None) => SECONDARY_DEFAULT_WAIT,
                };
                (wait <= self.max_rate_limit_wait).then_some(wait)
            }
            Error::Server { .. } | Error::Transport { .. } if idempotent => Some(backoff),
            _ => None,
        }
    }

    /// Before sending: how long to wait for an exhausted primary limit to
    /// reset. `Err` with the wait when it is longer than the cap.
    pub(crate) fn gate(&self, rate: Option<&RateLimit>, now: Timestamp) -> Result<Duration, Duration> {
        match rate {
            Some(RateLimit { remaining: 0, reset: Some(reset), .. }) if *reset > now => {
                let wait = until(*reset, now);
                if wait <= self.max_rate_limit_wait { Ok(wait) } else { Err(wait) }
            }
            _ => Ok(Duration::ZERO),
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries);
        if self.jitter { b.with_jitter() } else { b }
    }
}

fn until(reset: Timestamp, now: Timestamp) -> Duration {
    (reset - now).to_std().unwrap_or_default() + RESET_SLACK
}

/// Retries what [`RetryPolicy`] says to retry.
#[derive(Debug)]
pub(crate) struct RetryLayer<T> {
    inner: T,
    policy: RetryPolicy,
    observer: Arc<Observer>,
}

impl<T> RetryLayer<T> {
    pub fn new(inner: T, policy: RetryPolicy, observer: Arc<Observer>) -> Self {
        Self { inner, policy, observer }
    }
}

/// Whether an answer is worth retrying (it becomes an error for the retry loop).
fn retryable_answer(reply: &Reply) -> bool {
    reply.status.is_server_error()
        || reply.status == StatusCode::TOO_MANY_REQUESTS
        || (reply.status == StatusCode::FORBIDDEN && matches!(error_from("", reply), Error::RateLimited { .. }))
}

impl<T: Transport> Transport for RetryLayer<T> {
    async fn send(&self, call: &Call) -> Result<Reply> {
        let request = describe(&call.method, &call.uri);
        match self.policy.gate(self.observer.rate_limit().as_ref(), chrono::Utc::now()) {
            Ok(wait) if wait.is_zero() => {}
            Ok(wait) => {
                tracing::warn!(%request, wait_ms = wait.as_millis() as u64, "GitHub rate limit exhausted; waiting for the reset");
                self.observer.update_stats(|s| s.rate_limit_waits += 1);
                tokio::time::sleep(wait).await;
            }
            Err(wait) => {
                let reset = self.observer.rate_limit().and_then(|r| r.reset);
                return Err(Error::RateLimited {
                    request,
                    message: format!(
                        "the primary rate limit is used up (x-ratelimit-remaining: 0) for another {}s; not sending",
                        wait.as_secs()
                    ),
                    retry_after: None,
                    reset,
                });
            }
        }
        let attempts = AtomicU32::new(0);
        let ran_out = AtomicBool::new(false);
        let attempt = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let reply = self.inner.send(call).await?;
            if retryable_answer(&reply) { Err(error_from(&request, &reply)) } else { Ok(reply) }
        };
        let result = attempt
            .retry(self.policy.backoff().build())
            .sleep(tokio::time::sleep)
            .when(|e: &Error| e.is_retryable())
            .adjust(|e: &Error, backoff| {
                let now = chrono::Utc::now();
                let decided = self.policy.decide(call.idempotent, e, backoff, now);
                // No backoff step left, though the policy would retry this error.
                if decided.is_none() && backoff.is_none() {
                    let would = self.policy.decide(call.idempotent, e, Some(Duration::ZERO), now).is_some();
                    ran_out.store(would, Ordering::Relaxed);
                }
                decided
            })
            .notify(|e: &Error, wait: Duration| {
                self.observer.update_stats(|s| {
                    s.retries += 1;
                    if matches!(e, Error::RateLimited { .. }) {
                        s.rate_limit_waits += 1;
                    }
                });
                tracing::warn!(%request, error = %e, wait_ms = wait.as_millis() as u64, "retrying GitHub request");
            })
            .await;
        let attempts = attempts.load(Ordering::Relaxed);
        match result {
            Err(e) if attempts > 1 && ran_out.load(Ordering::Relaxed) => {
                tracing::warn!(%request, attempts, error = %e, "giving up on GitHub request");
                Err(Error::RetriesExhausted { attempts, source: Box::new(e) })
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http::{HeaderMap, Method};

    use super::*;

    /// A GitHub that answers every request with `status`, counting them.
    struct Down {
        status: StatusCode,
        sent: AtomicUsize,
    }

    impl Transport for Down {
        async fn send(&self, _: &Call) -> Result<Reply> {
            self.sent.fetch_add(1, Ordering::Relaxed);
            Ok(Reply { status: self.status, headers: HeaderMap::new(), body: String::new() })
        }
    }

    fn layer(policy: RetryPolicy) -> RetryLayer<Down> {
        let down = Down { status: StatusCode::BAD_GATEWAY, sent: AtomicUsize::new(0) };
        let policy = policy.delays(Duration::from_millis(1), Duration::from_millis(1));
        RetryLayer::new(down, policy, Arc::new(Observer::new(None, "t".into())))
    }

    #[tokio::test]
    async fn a_persistent_502_is_sent_as_often_as_documented() {
        // An idempotent request: 1 + max_retries attempts, then not retryable.
        let get = layer(RetryPolicy::new());
        let err = get.send(&Call::new(Method::GET, "/x")).await.unwrap_err();
        assert_eq!(get.inner.sent.load(Ordering::Relaxed), RetryPolicy::new().attempts());
        assert!(
            matches!(&err, Error::RetriesExhausted { attempts: 5, source } if matches!(**source, Error::Server { status: 502, .. }))
        );
        assert!(!err.is_retryable() && !paid_core::Error::from(err).is_retryable());

        // A POST: sent once; the engine's step (keyed) is the one retrying.
        let post = layer(RetryPolicy::new());
        let err = post.send(&Call::new(Method::POST, "/x")).await.unwrap_err();
        assert_eq!(post.inner.sent.load(Ordering::Relaxed), 1);
        assert!(matches!(err, Error::Server { .. }) && err.is_retryable());

        // No retries here: the error keeps its flag for the engine.
        let none = layer(RetryPolicy::none());
        let err = none.send(&Call::new(Method::GET, "/x")).await.unwrap_err();
        assert_eq!(none.inner.sent.load(Ordering::Relaxed), 1);
        assert!(matches!(err, Error::Server { .. }) && err.is_retryable());
    }

    fn limited(retry_after: Option<u64>, reset_in: Option<i64>, now: Timestamp) -> Error {
        Error::RateLimited {
            request: "GET /x".into(),
            message: "limit".into(),
            retry_after: retry_after.map(Duration::from_secs),
            reset: reset_in.map(|s| now + chrono::Duration::seconds(s)),
        }
    }

    #[test]
    fn rate_limits_are_waited_out_up_to_the_cap_for_any_method() {
        let p = RetryPolicy::new().max_rate_limit_wait(Duration::from_secs(120));
        let now = chrono::Utc::now();
        let step = Some(Duration::from_millis(500));
        assert_eq!(p.decide(false, &limited(Some(1), None, now), step, now), Some(Duration::from_secs(1)));
        assert_eq!(p.decide(true, &limited(None, Some(30), now), step, now), Some(Duration::from_millis(30_500)));
        assert_eq!(p.decide(true, &limited(None, None, now), step, now), Some(SECONDARY_DEFAULT_WAIT));
        assert_eq!(p.decide(true, &limited(None, Some(3600), now), step, now), None, "an hour is too long");
        assert_eq!(p.decide(true, &limited(Some(1), None, now), None, now), None, "retries used up");
    }

    #[test]
    fn server_errors_are_retried_only_when_idempotent_and_others_never() {
        let p = RetryPolicy::new();
        let now = chrono::Utc::now();
        let step = Some(Duration::from_secs(2));
        let server = Error::Server { request: "x".into(), status: 503, message: "m".into() };
        assert_eq!(p.decide(true, &server, step, now), step);
        assert_eq!(p.decide(false, &server, step, now), None);
        let invalid = Error::Validation { request: "x".into(), message: "m".into(), errors: vec![] };
        assert_eq!(p.decide(true, &invalid, step, now), None);
        let auth = Error::Unauthorized { request: "x".into(), message: "m".into() };
        assert_eq!(p.decide(true, &auth, step, now), None);
    }

    #[test]
    fn an_exhausted_primary_limit_gates_the_next_request() {
        let p = RetryPolicy::new().max_rate_limit_wait(Duration::from_secs(10));
        let now = chrono::Utc::now();
        let rate = |remaining, reset_in: i64| RateLimit {
            limit: 5000,
            remaining,
            used: None,
            reset: Some(now + chrono::Duration::seconds(reset_in)),
            resource: None,
        };
        assert_eq!(p.gate(None, now), Ok(Duration::ZERO));
        assert_eq!(p.gate(Some(&rate(10, 5)), now), Ok(Duration::ZERO));
        assert_eq!(p.gate(Some(&rate(0, 2)), now), Ok(Duration::from_millis(2500)));
        assert_eq!(p.gate(Some(&rate(0, 60)), now), Err(Duration::from_millis(60_500)));
        assert_eq!(p.gate(Some(&rate(0, -5)), now), Ok(Duration::ZERO), "already reset");
    }
}
