//! A receiver for GitHub webhooks (feature `webhooks`): an axum [`Router`]
//! the embedder mounts, e.g. `app.nest("/webhooks/github", receiver.router())`.
//!
//! For every `POST` it:
//! 1. verifies `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with the
//!    webhook secret, compared in constant time); a missing or wrong
//!    signature gets `401` and nothing else happens;
//! 2. ignores events other than `issues`, `issue_comment`, `pull_request`,
//!    `pull_request_review` and `check_run` (`204`; `ping` gets `200`);
//! 3. with [`WebhookReceiver::replay_protection`], refuses a delivery whose
//!    payload is older than the replay window (`422`, see below);
//! 4. drops a delivery whose `X-GitHub-Delivery` id was already accepted by
//!    this process (`200`), since GitHub redelivers;
//! 5. with [`WebhookReceiver::replay_protection`], drops a delivery whose
//!    signed body the store already recorded inside the window (`200`,
//!    `duplicate delivery`): after a restart, and on every node sharing the
//!    store;
//! 6. hands the parsed [`WebhookEvent`] to the channel (`202`). A full or
//!    closed channel (or a store that cannot record the delivery) gets `503`
//!    and the delivery is not remembered, so a redelivery is accepted later.
//!
//! # Replay protection
//!
//! GitHub signs the body only: `X-GitHub-Delivery` and `X-GitHub-Event` are
//! not covered by the signature, and no signed delivery time exists. So a
//! captured delivery can be replayed with a fresh delivery id, and the
//! durable record is keyed by the SHA-256 of the signed body
//! ([`Catalog::record_delivery`]), which a replay cannot change (GitHub's
//! own redeliveries resend the same body too).
//!
//! The store keeps keys for one window only, so a delivery must also be
//! fresh: the newest RFC 3339 timestamp among the payload's `*_at` fields
//! (`issue.updated_at`, `comment.created_at`, `check_run.completed_at`,
//! `review.submitted_at`, `repository.pushed_at`...) must be within the
//! window of now. A payload cannot carry a timestamp later than its own
//! signing (give or take clock skew), so a replay outside the window is
//! refused by its age, and one inside it by the store. The check can refuse
//! a genuine event whose payload only carries old timestamps (a comment on a
//! long-quiet issue deleted now, a delivery GitHub held back for longer than
//! the window): such an event loses only its head start, since polling still
//! sees the change. The window is the receiver's setting; both clocks are
//! assumed to be within it of each other.
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
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use paid_core::{Catalog, Clock, RepoRef, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
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

/// Durable replay protection: where deliveries are recorded, and for how long.
#[derive(Clone)]
struct Replay {
    store: Arc<dyn Catalog>,
    clock: Arc<dyn Clock>,
    window: chrono::Duration,
}

impl Replay {
    /// The oldest time inside the window ending at `now`.
    fn cutoff(&self, now: Timestamp) -> Timestamp {
        now.checked_sub_signed(self.window).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
    }
}

/// Verifies, deduplicates and forwards GitHub webhook deliveries. Cheap to
/// clone; clones share the deduplication memory.
#[derive(Clone)]
pub struct WebhookReceiver {
    inner: Arc<Inner>,
    replay: Option<Replay>,
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
        Self { inner: Arc::new(Inner { secret, sink, seen: Mutex::new(seen) }), replay: None }
    }

    /// Refuses replays beyond this process's memory (see the module
    /// documentation): a delivery whose payload's newest timestamp is more
    /// than `window` before `clock`'s now gets `422`, and one whose signed
    /// body `store` already recorded inside `window` gets `200` (`duplicate
    /// delivery`) and goes nowhere. Nodes sharing `store` share the record.
    /// Call it before [`Self::router`].
    pub fn replay_protection(mut self, store: Arc<dyn Catalog>, clock: Arc<dyn Clock>, window: Duration) -> Self {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        self.replay = Some(Replay { store, clock, window });
        self
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

/// The newest RFC 3339 timestamp among the `*_at` fields anywhere in
/// `payload`, if any.
pub fn newest_timestamp(payload: &serde_json::Value) -> Option<Timestamp> {
    fn walk(v: &serde_json::Value, newest: &mut Option<Timestamp>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k.ends_with("_at")
                        && let Some(t) = v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    {
                        let t = t.with_timezone(&chrono::Utc);
                        if newest.is_none_or(|n| t > n) {
                            *newest = Some(t);
                        }
                    }
                    walk(v, newest);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, newest)),
            _ => {}
        }
    }
    let mut newest = None;
    walk(payload, &mut newest);
    newest
}

/// The key a delivery is recorded under: the SHA-256 of its signed body.
fn delivery_key(body: &[u8]) -> String {
    format!("github:sha256:{}", hex::encode(Sha256::digest(body)))
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
    if let Some(replay) = &receiver.replay {
        let oldest = replay.cutoff(replay.clock.now());
        if newest_timestamp(&payload).is_none_or(|t| t < oldest) {
            tracing::warn!(%delivery, "refused a webhook delivery older than the replay window: replayed or held back");
            return (StatusCode::UNPROCESSABLE_ENTITY, "stale delivery: older than the replay window\n");
        }
    }
    let first = receiver.seen().insert(&delivery);
    if !first {
        tracing::debug!(%delivery, "dropping a webhook delivery already received");
        return (StatusCode::OK, "duplicate delivery\n");
    }
    // Hold a place in the queue before recording the delivery for good, so
    // a recorded delivery is never one that was not handed on.
    let permit = match receiver.inner.sink.try_reserve() {
        Ok(permit) => permit,
        Err(e) => {
            receiver.seen().forget(&delivery);
            tracing::warn!(%delivery, error = %e, "webhook consumer is not keeping up; GitHub may redeliver");
            return (StatusCode::SERVICE_UNAVAILABLE, "busy\n");
        }
    };
    if let Some(replay) = &receiver.replay {
        let now = replay.clock.now();
        match replay.store.record_delivery(&delivery_key(&body), now, replay.cutoff(now)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%delivery, "dropping a replayed webhook delivery (its signed body was accepted before)");
                return (StatusCode::OK, "duplicate delivery\n");
            }
            Err(e) => {
                receiver.seen().forget(&delivery);
                tracing::warn!(%delivery, error = %e, "cannot record the webhook delivery; GitHub may redeliver");
                return (StatusCode::SERVICE_UNAVAILABLE, "cannot record the delivery\n");
            }
        }
    }
    permit.send(WebhookEvent::parse(delivery, kind, payload));
    (StatusCode::ACCEPTED, "accepted\n")
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
