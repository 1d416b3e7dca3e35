//! A thin REST client over octocrab's raw request methods.
//!
//! It sends relative URIs (so octocrab adds the token and the base URI),
//! reads the status and headers itself, and maps failures into
//! [`crate::Error`]. Every request goes through the layers of
//! [`super::layer`] (retry, then metrics, then octocrab). Along the way the
//! client:
//! - follows `link: <...>; rel="next"` for lists;
//! - makes list requests conditional (`If-None-Match` with the last `etag`),
//!   reusing the cached page on `304 Not Modified`, which GitHub does not
//!   count against the rate limit;
//! - remembers the last `x-ratelimit-*` headers, see [`RateLimit`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use octocrab::Octocrab;
use paid_core::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::layer::metrics::{MetricsLayer, Observer};
use super::layer::retry::{RetryLayer, RetryPolicy};
use super::layer::{Call, Transport};
use super::models::ErrorBody;
use super::token::TokenSource;
use crate::error::{Error, Result};

/// Stop following `next` links after this many pages of one list.
const MAX_PAGES: usize = 200;
/// Keep at most this many cached list pages (ETag and body).
const MAX_CACHED_PAGES: usize = 1024;

/// The rate-limit state GitHub reported on the last response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// `x-ratelimit-limit`: calls allowed per window.
    pub limit: u64,
    /// `x-ratelimit-remaining`: calls left in this window.
    pub remaining: u64,
    /// `x-ratelimit-used`: calls used in this window.
    pub used: Option<u64>,
    /// `x-ratelimit-reset`: when the window resets.
    pub reset: Option<Timestamp>,
    /// `x-ratelimit-resource`, e.g. `core`.
    pub resource: Option<String>,
}

impl RateLimit {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        Some(Self {
            limit: header_u64(headers, "x-ratelimit-limit")?,
            remaining: header_u64(headers, "x-ratelimit-remaining")?,
            used: header_u64(headers, "x-ratelimit-used"),
            reset: header_u64(headers, "x-ratelimit-reset").and_then(timestamp),
            resource: header_str(headers, "x-ratelimit-resource").map(str::to_string),
        })
    }
}

/// A response, read to the end.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Debug, Clone)]
struct CachedPage {
    etag: String,
    body: String,
    next: Option<String>,
    /// Whether it held `per_page` items (so a page may follow it later).
    full: bool,
}

/// The `per_page` of a list URI (GitHub's default is 30).
fn per_page_of(uri: &str) -> usize {
    uri.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("per_page=")?.parse().ok())
        .unwrap_or(30)
}

/// Counters of what the client did, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Requests sent (every attempt, answered or not).
    pub requests: u64,
    /// Conditional requests answered with `304 Not Modified` (free on GitHub).
    pub not_modified: u64,
    /// Answered requests that count against GitHub's rate limit: every
    /// answer but a `304`.
    pub rate_limited_calls: u64,
    /// Answers that said a rate limit was hit (`403`/`429`).
    pub rate_limit_hits: u64,
    /// Attempts that got no answer (connection, TLS, timeout).
    pub failed: u64,
    /// Requests sent again after a failure or a rate limit.
    pub retries: u64,
    /// Waits for a rate limit to pass (before sending or between attempts).
    pub rate_limit_waits: u64,
}

/// The bottom of the stack: one request through octocrab, with the token
/// source's current token.
pub(crate) struct OctoTransport {
    octo: Octocrab,
    base: String,
    token: Arc<dyn TokenSource>,
}

impl OctoTransport {
    /// `Authorization: Bearer <token>` for the current token, if any.
    fn authorization(&self) -> Result<Option<HeaderValue>> {
        let Some(token) = self.token.token() else { return Ok(None) };
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).map_err(|_| {
            Error::Config { what: "token", message: "the token contains characters an HTTP header cannot carry".into() }
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

impl Transport for OctoTransport {
    async fn send(&self, call: &Call) -> Result<Reply> {
        let request = describe(&call.method, &call.uri);
        let transport =
            |source| Error::Transport { base: self.base.clone(), request: request.clone(), source: Box::new(source) };
        let mut builder = http::Request::builder().method(call.method.clone()).uri(call.uri.as_str());
        for (name, value) in &call.headers {
            builder = builder.header(name, value);
        }
        // octocrab is built without a token: this is the only place one is added.
        if let Some(auth) = self.authorization()? {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        let req = self.octo.build_request(builder, call.body.as_ref()).map_err(transport)?;
        let res = self.octo.execute(req).await.map_err(transport)?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = self.octo.body_to_string(res).await.map_err(transport)?;
        tracing::debug!(%request, status = status.as_u16(), "github");
        Ok(Reply { status, headers, body })
    }
}

type Stack = RetryLayer<MetricsLayer<OctoTransport>>;

pub(crate) struct Client {
    stack: Stack,
    observer: Arc<Observer>,
    token: Arc<dyn TokenSource>,
    base: String,
    base_path: String,
    cache: Mutex<HashMap<String, CachedPage>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// What [`Client::new`] needs beside octocrab.
pub(crate) struct ClientParts {
    pub token: Arc<dyn TokenSource>,
    pub policy: RetryPolicy,
    pub metrics: Option<Arc<paid_core::metrics::Metrics>>,
    pub token_id: String,
}

impl Client {
    pub fn new(octo: Octocrab, base: &str, parts: ClientParts) -> Result<Self> {
        let uri: http::Uri =
            base.parse().map_err(|e| Error::Config { what: "base_uri", message: format!("{base:?}: {e}") })?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(Error::Config {
                what: "base_uri",
                message: format!("{base:?} is not an absolute http(s) URI"),
            });
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let base = base.trim_end_matches('/').to_string();
        let observer = Arc::new(Observer::new(parts.metrics, parts.token_id));
        let token = parts.token.clone();
        let transport = OctoTransport { octo, base: base.clone(), token: parts.token };
        let stack = RetryLayer::new(MetricsLayer::new(transport, observer.clone()), parts.policy, observer.clone());
        Ok(Self { stack, observer, token, base, base_path, cache: Mutex::new(HashMap::new()) })
    }

    /// The token the next request will carry.
    pub fn token(&self) -> Option<SecretString> {
        self.token.token()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.observer.rate_limit()
    }

    pub fn stats(&self) -> ClientStats {
        self.observer.stats()
    }

    /// Sends `call` through the layers.
    pub async fn send(&self, call: &Call) -> Result<Reply> {
        self.stack.send(call).await
    }

    fn call_of<B: Serialize + ?Sized>(method: Method, uri: &str, body: Option<&B>) -> Result<Call> {
        let mut call = Call::new(method.clone(), uri);
        if let Some(b) = body {
            call.body = Some(
                serde_json::to_value(b).map_err(|source| Error::Decode { request: describe(&method, uri), source })?,
            );
        }
        Ok(call)
    }

    /// Sends a request and decodes a successful JSON answer. `POST`s are
    /// not resent after a lost answer; see [`Self::json_idempotent`].
    pub async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        uri: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let call = Self::call_of(method, uri, body)?;
        self.json_call(&call).await
    }

    /// [`Self::json`] for a `POST` that is safe to resend (GitHub rejects or
    /// ignores a repeat).
    pub async fn json_idempotent<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        uri: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut call = Self::call_of(method, uri, body)?;
        call.idempotent = true;
        self.json_call(&call).await
    }

    async fn json_call<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        let request = describe(&call.method, &call.uri);
        let reply = self.send(call).await?;
        if !reply.status.is_success() {
            return Err(error_from(&request, &reply));
        }
        decode(&request, &reply.body)
    }

    /// Sends a request whose answer body is not needed. `idempotent` says
    /// whether it may be resent after a lost answer.
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        uri: &str,
        body: Option<&B>,
        idempotent: bool,
    ) -> Result<()> {
        let mut call = Self::call_of(method, uri, body)?;
        call.idempotent = idempotent;
        let reply = self.send(&call).await?;
        if reply.status.is_success() { Ok(()) } else { Err(error_from(&describe(&call.method, uri), &reply)) }
    }

    /// All items of a list, following `next` links. Each page is requested
    /// conditionally when it was seen before.
    pub async fn list<T: DeserializeOwned>(&self, first: &str) -> Result<Vec<T>> {
        self.list_with(first, decode).await
    }

    /// [`Self::list`] for lists wrapped in an object, e.g. the `check_runs`
    /// of `{"total_count": 2, "check_runs": [...]}`.
    pub async fn list_in<T: DeserializeOwned>(&self, first: &str, field: &str) -> Result<Vec<T>> {
        self.list_with(first, |request, body| {
            let mut v: serde_json::Value = decode(request, body)?;
            let items = v.get_mut(field).map(serde_json::Value::take).unwrap_or(serde_json::Value::Array(Vec::new()));
            serde_json::from_value(items).map_err(|source| Error::Decode { request: request.to_string(), source })
        })
        .await
    }

    async fn list_with<T>(&self, first: &str, parse: impl Fn(&str, &str) -> Result<Vec<T>>) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next = Some(first.to_string());
        let mut pages = 0;
        while let Some(uri) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                tracing::warn!(uri = first, pages = MAX_PAGES, "stopped following pagination links");
                break;
            }
            let page = self.page(&uri).await?;
            let mut batch: Vec<T> = parse(&describe(&Method::GET, &uri), &page.body)?;
            items.append(&mut batch);
            next = page.next;
        }
        Ok(items)
    }

    async fn page(&self, uri: &str) -> Result<CachedPage> {
        let mut cached = lock(&self.cache).get(uri).cloned();
        let mut call = Call::new(Method::GET, uri);
        if let Some(c) = &cached
            && let Ok(v) = HeaderValue::from_str(&c.etag)
        {
            call.headers.insert(header::IF_NONE_MATCH, v);
        }
        let reply = self.send(&call).await?;
        if reply.status == StatusCode::NOT_MODIFIED
            && let Some(mut c) = cached.take()
        {
            // The page is unchanged, but pages may have been added after
            // it: trust a `link` sent with the 304; else, after a full
            // last page, look at the page after it, conditionally too
            // (an empty page, once seen, is a free 304 from then on).
            if let Some(link) = header_str(&reply.headers, "link") {
                c.next = next_link(link).map(|u| self.relative(&u));
            }
            if c.next.is_none() && c.full {
                c.next = Some(following_page(uri));
            }
            return Ok(c);
        }
        if !reply.status.is_success() {
            return Err(error_from(&describe(&Method::GET, uri), &reply));
        }
        let next = header_str(&reply.headers, "link").and_then(next_link).map(|u| self.relative(&u));
        let count = serde_json::from_str::<Vec<serde::de::IgnoredAny>>(&reply.body).map_or(0, |v| v.len());
        let page = CachedPage {
            etag: header_str(&reply.headers, "etag").unwrap_or_default().to_string(),
            full: count >= per_page_of(uri),
            body: reply.body,
            next,
        };
        if !page.etag.is_empty() {
            let mut cache = lock(&self.cache);
            if cache.len() >= MAX_CACHED_PAGES {
                cache.clear();
            }
            cache.insert(uri.to_string(), page.clone());
        }
        Ok(page)
    }

    fn relative(&self, link: &str) -> String {
        relative(&self.base_path, link)
    }
}

/// `uri` with its `page` query parameter (1 when absent) plus one.
fn following_page(uri: &str) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut page = 1u64;
    let mut params: Vec<String> = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        match p.strip_prefix("page=") {
            Some(n) => page = n.parse().unwrap_or(1),
            None => params.push(p.to_string()),
        }
    }
    params.push(format!("page={}", page + 1));
    format!("{path}?{}", params.join("&"))
}

/// A link from GitHub (absolute) as a path relative to the base URI (whose
/// path is `base_path`), so that octocrab sends it to the configured host
/// with the token.
fn relative(base_path: &str, link: &str) -> String {
    let path = match link.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => link,
    };
    match path.strip_prefix(base_path) {
        Some(rest) if !base_path.is_empty() && rest.starts_with('/') => rest.to_string(),
        _ => path.to_string(),
    }
}

/// `METHOD /path` (no query), for messages.
pub(crate) fn describe(method: &Method, uri: &str) -> String {
    format!("{method} {}", uri.split('?').next().unwrap_or(uri))
}

fn decode<T: DeserializeOwned>(request: &str, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|source| Error::Decode { request: request.to_string(), source })
}

/// The error for a non-success reply.
pub(crate) fn error_from(request: &str, reply: &Reply) -> Error {
    let parsed: ErrorBody = serde_json::from_str(&reply.body).unwrap_or_default();
    let message = parsed
        .message
        .clone()
        .or_else(|| Some(reply.body.trim().chars().take(200).collect::<String>()).filter(|s| !s.is_empty()))
        .or_else(|| reply.status.canonical_reason().map(str::to_string))
        .unwrap_or_default();
    let request = request.to_string();
    let status = reply.status;
    let retry_after = header_u64(&reply.headers, "retry-after").map(Duration::from_secs);
    let exhausted = header_u64(&reply.headers, "x-ratelimit-remaining") == Some(0);
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (exhausted || retry_after.is_some() || message.to_ascii_lowercase().contains("rate limit")));
    if rate_limited {
        let reset = header_u64(&reply.headers, "x-ratelimit-reset").and_then(timestamp);
        return Error::RateLimited { request, message, retry_after, reset };
    }
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized { request, message },
        StatusCode::FORBIDDEN => Error::Forbidden { request, message },
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            let id = request.split_once(' ').map_or(request.clone(), |(_, p)| p.to_string());
            Error::NotFound { entity: "resource", id, request }
        }
        StatusCode::UNPROCESSABLE_ENTITY => {
            Error::Validation { request, message, errors: parsed.errors.into_iter().map(Into::into).collect() }
        }
        s if s.is_server_error() => Error::Server { request, status: s.as_u16(), message },
        s => Error::Unexpected { request, status: s.as_u16(), message },
    }
}

/// The `rel="next"` target of a `link` header.
pub(crate) fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=").is_some_and(|v| v.trim_matches('"').split_whitespace().any(|r| r == "next"))
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for path
/// segments and query values.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name)?.trim().parse().ok()
}

fn timestamp(secs: u64) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGINATE: &str = include_str!("../../fixtures/github/paginate-issues.json");

    #[test]
    fn next_links_of_the_recorded_session() {
        let session: Vec<serde_json::Value> = serde_json::from_str(PAGINATE).unwrap();
        let nexts: Vec<Option<String>> =
            session.iter().map(|e| e["headers"]["link"].as_str().and_then(next_link)).collect();
        assert_eq!(
            nexts,
            vec![
                Some("https://api.github.com/repositories/1000/issues?per_page=3&page=2".to_string()),
                Some("https://api.github.com/repositories/1000/issues?per_page=3&page=3".to_string()),
                Some("https://api.github.com/repositories/1000/issues?per_page=3&page=4".to_string()),
                Some("https://api.github.com/repositories/1000/issues?per_page=3&page=5".to_string()),
                None,
            ]
        );
    }

    #[test]
    fn links_become_relative_to_the_base() {
        assert_eq!(
            relative("", "https://api.github.com/repositories/1/issues?page=2"),
            "/repositories/1/issues?page=2"
        );
        assert_eq!(
            relative("/api/v3", "https://ghe.example.com/api/v3/repositories/1/issues?page=2"),
            "/repositories/1/issues?page=2"
        );
        assert_eq!(relative("/api/v3", "/api/v3x/y"), "/api/v3x/y");
    }

    #[test]
    fn the_following_page() {
        assert_eq!(
            following_page("/repos/o/r/issues?state=open&per_page=2"),
            "/repos/o/r/issues?state=open&per_page=2&page=2"
        );
        assert_eq!(
            following_page("/repositories/1/issues?per_page=2&page=7&x=y"),
            "/repositories/1/issues?per_page=2&x=y&page=8"
        );
        assert_eq!(following_page("/x"), "/x?page=2");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("paid-build"), "paid-build");
        assert_eq!(encode("good first issue"), "good%20first%20issue");
        assert_eq!(encode("a/b:c,d&e"), "a%2Fb%3Ac%2Cd%26e");
        assert_eq!(encode("ü"), "%C3%BC");
    }

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        Reply { status: StatusCode::from_u16(status).unwrap(), headers: h, body: body.to_string() }
    }

    #[test]
    fn statuses_map_to_meanings() {
        let r = |s, h: &[(&str, &str)], b| error_from("GET /x", &reply(s, h, b));
        assert!(
            matches!(r(401, &[], r#"{"message":"Bad credentials"}"#), Error::Unauthorized { message, .. } if message == "Bad credentials")
        );
        assert!(matches!(
            r(403, &[], r#"{"message":"Resource not accessible by integration"}"#),
            Error::Forbidden { .. }
        ));
        assert!(matches!(
            r(
                403,
                &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000000")],
                r#"{"message":"API rate limit exceeded"}"#
            ),
            Error::RateLimited { reset: Some(_), retry_after: None, .. }
        ));
        assert!(matches!(
            r(403, &[("retry-after", "30")], r#"{"message":"You have exceeded a secondary rate limit"}"#),
            Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(30)
        ));
        assert!(matches!(r(429, &[], ""), Error::RateLimited { .. }));
        assert!(matches!(r(404, &[], r#"{"message":"Not Found"}"#), Error::NotFound { .. }));
        assert!(matches!(r(502, &[], "<html>bad gateway</html>"), Error::Server { status: 502, .. }));
        assert!(matches!(r(502, &[], ""), Error::Server { message, .. } if message == "Bad Gateway"));
        assert!(matches!(r(418, &[], ""), Error::Unexpected { status: 418, .. }));
    }
}
