//! A receiver for GitHub webhooks (feature `webhooks`): an axum [`Router`]
//! the embedder mounts, e.g. `app.nest("/webhooks/github", receiver.router())`.
//!
//! For every `POST` it:
//! 1. verifies `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with the
//!    webhook secret, compared in constant time); a missing or wrong
//!    signature gets `401` and nothing else happens;
//! 2. ignores events other than `issues`, `issue_comment`, `pull_request`,
//!    `pull_request_review` and `check_run` (`204`; `ping` gets `200`);
//! 3. drops a delivery whose `X-GitHub-Delivery` id was already accepted
//!    (`200`), since GitHub redelivers;
//! 4. hands the parsed [`WebhookEvent`] to the channel (`202`). A full or
//!    closed channel gets `503` and the delivery is not remembered, so a
//!    redelivery is accepted later.
//!
//! Events carry text from anyone who can comment: the consumer applies the
//! project's trust policy (e.g. to [`WebhookEvent::sender`]) before any of it
//! goes near a prompt. Polling stays the fallback; webhooks only make Paid
//! notice sooner.
//!
//! ```
//! use paid_github::webhooks::{WebhookEvent, WebhookReceiver};
//!
//! let (tx, mut rx) = tokio::sync::mpsc::channel::<WebhookEvent>(64);
//! let receiver = WebhookReceiver::new("webhook-secret".to_string().into(), tx);
//! let app: axum::Router = axum::Router::new().nest("/webhooks/github", receiver.router());
//! # let _ = (app, &mut rx);
//! ```

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use paid_core::RepoRef;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc;

/// GitHub caps webhook payloads at 25 MB.
const MAX_BODY: usize = 25 * 1024 * 1024;
/// Remember this many delivery ids by default.
const DEFAULT_DEDUPE: usize = 10_000;

/// The kinds of event Paid listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WebhookKind {
    /// `issues`: opened, labeled, closed...
    Issues,
    /// `issue_comment` (on issues and pull requests).
    IssueComment,
    /// `pull_request`: opened, closed (merged or not), synchronize...
    PullRequest,
    /// `pull_request_review`: submitted, dismissed...
    PullRequestReview,
    /// `check_run`: completed...
    CheckRun,
}

impl WebhookKind {
    /// The kind for an `X-GitHub-Event` value, if Paid listens to it.
    pub fn from_header(event: &str) -> Option<Self> {
        Some(match event {
            "issues" => Self::Issues,
            "issue_comment" => Self::IssueComment,
            "pull_request" => Self::PullRequest,
            "pull_request_review" => Self::PullRequestReview,
            "check_run" => Self::CheckRun,
            _ => return None,
        })
    }
}

/// A verified, first-seen webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebhookEvent {
    /// `X-GitHub-Delivery`: unique per delivery (redeliveries keep it).
    pub delivery: String,
    /// `X-GitHub-Event`.
    pub kind: WebhookKind,
    /// `action`, e.g. `opened`, `labeled`, `completed`.
    pub action: Option<String>,
    /// The repository.
    pub repo: Option<RepoRef>,
    /// The issue or pull request number (for a check run, its first PR's).
    pub number: Option<u64>,
    /// The login of whoever caused the event. Untrusted until checked.
    pub sender: Option<String>,
    /// The whole payload.
    pub payload: serde_json::Value,
}

impl WebhookEvent {
    fn parse(delivery: String, kind: WebhookKind, payload: serde_json::Value) -> Self {
        let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let repo = payload.get("repository").and_then(|r| {
            let owner = s(&r["owner"]["login"])?;
            let name = s(&r["name"])?;
            Some(RepoRef::new(owner, name))
        });
        let number = match kind {
            WebhookKind::Issues | WebhookKind::IssueComment => payload["issue"]["number"].as_u64(),
            WebhookKind::PullRequest => {
                payload["pull_request"]["number"].as_u64().or_else(|| payload["number"].as_u64())
            }
            WebhookKind::PullRequestReview => payload["pull_request"]["number"].as_u64(),
            WebhookKind::CheckRun => payload["check_run"]["pull_requests"][0]["number"].as_u64(),
        };
        Self {
            delivery,
            kind,
            action: s(&payload["action"]),
            repo,
            number,
            sender: s(&payload["sender"]["login"]),
            payload,
        }
    }
}

/// Delivery ids seen, oldest dropped first.
#[derive(Debug)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Seen {
    /// Records `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.ids.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }

    fn forget(&mut self, id: &str) {
        if self.ids.remove(id) {
            self.order.retain(|x| x != id);
        }
    }
}

struct Inner {
    secret: SecretString,
    sink: mpsc::Sender<WebhookEvent>,
    seen: Mutex<Seen>,
}

/// Verifies, deduplicates and forwards GitHub webhook deliveries. Cheap to
/// clone; clones share the deduplication memory.
#[derive(Clone)]
pub struct WebhookReceiver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver").field("secret", &"[redacted]").finish_non_exhaustive()
    }
}

impl WebhookReceiver {
    /// A receiver checking signatures with `secret` (the webhook's secret
    /// on GitHub) and sending accepted events to `sink`. Remembers the last
    /// 10,000 delivery ids.
    pub fn new(secret: SecretString, sink: mpsc::Sender<WebhookEvent>) -> Self {
        Self::with_capacity(secret, sink, DEFAULT_DEDUPE)
    }

    /// [`Self::new`], remembering the last `capacity` delivery ids.
    pub fn with_capacity(secret: SecretString, sink: mpsc::Sender<WebhookEvent>, capacity: usize) -> Self {
        let seen = Seen { ids: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) };
        Self { inner: Arc::new(Inner { secret, sink, seen: Mutex::new(seen) }) }
    }

    /// The routes: `POST /` takes deliveries. Mount it where GitHub posts.
    pub fn router(&self) -> Router {
        Router::new().route("/", post(receive)).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(self.clone())
    }

    /// Whether `signature` (the `X-Hub-Signature-256` value, `sha256=<hex>`)
    /// is this receiver's HMAC-SHA256 of `body`, compared in constant time.
    pub fn verify(&self, signature: &str, body: &[u8]) -> bool {
        verify(self.inner.secret.expose_secret().as_bytes(), signature, body)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.inner.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`) — what GitHub sends.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn verify(secret: &[u8], signature: &str, body: &[u8]) -> bool {
    let Some(given) = signature.trim().strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    State(receiver): State<WebhookReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let delivery = header(&headers, "x-github-delivery").unwrap_or_default().to_string();
    let signed = header(&headers, "x-hub-signature-256").is_some_and(|sig| receiver.verify(sig, &body));
    if !signed {
        tracing::warn!(%delivery, "rejected a webhook delivery with a missing or wrong signature");
        return (StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    let event = header(&headers, "x-github-event").unwrap_or_default();
    if event == "ping" {
        return (StatusCode::OK, "pong\n");
    }
    let Some(kind) = WebhookKind::from_header(event) else {
        tracing::debug!(%delivery, event, "ignoring a webhook event Paid does not use");
        return (StatusCode::NO_CONTENT, "");
    };
    if delivery.is_empty() {
        return (StatusCode::BAD_REQUEST, "missing X-GitHub-Delivery\n");
    }
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(%delivery, error = %e, "webhook body is not JSON");
            return (StatusCode::BAD_REQUEST, "body is not JSON\n");
        }
    };
    if !receiver.seen().insert(&delivery) {
        tracing::debug!(%delivery, "dropping a webhook delivery already received");
        return (StatusCode::OK, "duplicate delivery\n");
    }
    let event = WebhookEvent::parse(delivery.clone(), kind, payload);
    match receiver.inner.sink.try_send(event) {
        Ok(()) => (StatusCode::ACCEPTED, "accepted\n"),
        Err(e) => {
            receiver.seen().forget(&delivery);
            tracing::warn!(%delivery, error = %e, "webhook consumer is not keeping up; GitHub may redeliver");
            (StatusCode::SERVICE_UNAVAILABLE, "busy\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let sig = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(sig, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
        assert!(verify(b"It's a Secret to Everybody", &sig, b"Hello, World!"));
        assert!(!verify(b"It's a Secret to Everybody", &sig, b"Hello, World?"));
        assert!(!verify(b"another secret", &sig, b"Hello, World!"));
        assert!(!verify(b"It's a Secret to Everybody", "sha1=abc", b"Hello, World!"));
        assert!(!verify(b"It's a Secret to Everybody", "sha256=zz", b"Hello, World!"));
    }

    #[test]
    fn dedupe_memory_is_bounded() {
        let mut seen = Seen { ids: HashSet::new(), order: VecDeque::new(), capacity: 2 };
        assert!(seen.insert("a"));
        assert!(!seen.insert("a"));
        assert!(seen.insert("b"));
        assert!(seen.insert("c"));
        assert!(seen.insert("a"), "the oldest id was forgotten");
        seen.forget("c");
        assert!(seen.insert("c"));
    }
}
