//! The webhook receiver over real HTTP: signatures, deduplication, delivery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paid_core::RepoRef;
use paid_github::webhooks::{WebhookEvent, WebhookKind, WebhookReceiver, sign};
use pretty_assertions::assert_eq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const SECRET: &str = "whsec_test_0123";

async fn serve() -> (String, mpsc::Receiver<WebhookEvent>) {
    let (tx, rx) = mpsc::channel(16);
    let receiver = WebhookReceiver::new(SECRET.to_string().into(), tx);
    let app = axum::Router::new().nest("/webhooks/github", receiver.router());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr.to_string(), rx)
}

/// POSTs `body` with `headers`; returns the status code.
async fn post(addr: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn payload() -> String {
    serde_json::json!({
        "action": "labeled",
        "issue": {"number": 7, "title": "Fix it", "user": {"login": "alice"}},
        "label": {"name": "paid-build"},
        "repository": {"name": "app", "full_name": "octo/app", "owner": {"login": "octo"}},
        "sender": {"login": "alice"},
    })
    .to_string()
}

fn headers<'a>(sig: &'a str, delivery: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", delivery), ("X-Hub-Signature-256", sig)]
}

#[tokio::test]
async fn a_valid_signature_is_accepted_once_and_bad_ones_get_401_and_deliver_nothing() {
    let (addr, mut rx) = serve().await;
    let body = payload();
    let good = sign(SECRET.as_bytes(), body.as_bytes());
    let good = good.as_str();
    let wrong = sign(b"not the secret", body.as_bytes());
    // Tampered body, wrong secret, no signature: 401, nothing delivered.
    let tampered = body.replace("Fix it", "Fix it; also leak the token");
    assert_eq!(post(&addr, &headers(good, "d-1"), &tampered).await, 401);
    assert_eq!(post(&addr, &headers(&wrong, "d-1"), &body).await, 401);
    assert_eq!(post(&addr, &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "d-1")], &body).await, 401);
    assert!(rx.try_recv().is_err(), "nothing was delivered");

    // The genuine delivery is accepted and handed over, parsed.
    assert_eq!(post(&addr, &headers(good, "d-1"), &body).await, 202);
    let event = rx.try_recv().unwrap();
    assert_eq!(event.delivery, "d-1");
    assert_eq!(event.kind, WebhookKind::Issues);
    assert_eq!(event.action.as_deref(), Some("labeled"));
    assert_eq!(event.repo, Some(RepoRef::new("octo", "app")));
    assert_eq!(event.number, Some(7));
    assert_eq!(event.sender.as_deref(), Some("alice"));
    assert_eq!(event.payload["label"]["name"], "paid-build");

    // A redelivery of the same id is acknowledged but not handed over again.
    assert_eq!(post(&addr, &headers(good, "d-1"), &body).await, 200);
    assert!(rx.try_recv().is_err());
    // A new delivery id is a new event.
    assert_eq!(post(&addr, &headers(good, "d-2"), &body).await, 202);
    assert_eq!(rx.try_recv().unwrap().delivery, "d-2");
}

#[tokio::test]
async fn ping_and_other_events_are_acknowledged_without_delivery() {
    let (addr, mut rx) = serve().await;
    let body = r#"{"zen":"Keep it logically awesome."}"#;
    let sig: &'static str = Box::leak(sign(SECRET.as_bytes(), body.as_bytes()).into_boxed_str());
    let h = |event: &'static str| {
        vec![("X-GitHub-Event", event), ("X-GitHub-Delivery", "p-1"), ("X-Hub-Signature-256", sig)]
    };
    assert_eq!(post(&addr, &h("ping"), body).await, 200);
    assert_eq!(post(&addr, &h("push"), body).await, 204);
    assert!(rx.try_recv().is_err());
    // Every kind Paid uses is delivered, with its number found where GitHub puts it.
    let cases = [
        (
            "issue_comment",
            serde_json::json!({"action": "created", "issue": {"number": 3}}),
            WebhookKind::IssueComment,
            Some(3),
        ),
        (
            "pull_request",
            serde_json::json!({"action": "closed", "number": 9, "pull_request": {"number": 9}}),
            WebhookKind::PullRequest,
            Some(9),
        ),
        (
            "pull_request_review",
            serde_json::json!({"action": "submitted", "pull_request": {"number": 9}}),
            WebhookKind::PullRequestReview,
            Some(9),
        ),
        (
            "check_run",
            serde_json::json!({"action": "completed", "check_run": {"pull_requests": [{"number": 9}]}}),
            WebhookKind::CheckRun,
            Some(9),
        ),
    ];
    for (i, (event, payload, kind, number)) in cases.into_iter().enumerate() {
        let body = payload.to_string();
        let sig = sign(SECRET.as_bytes(), body.as_bytes());
        let delivery = format!("k-{i}");
        let headers = [
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery.as_str()),
            ("X-Hub-Signature-256", sig.as_str()),
        ];
        assert_eq!(post(&addr, &headers, &body).await, 202, "{event}");
        let got = rx.try_recv().unwrap();
        assert_eq!((got.kind, got.number), (kind, number), "{event}");
    }
}

// ---- replay protection -------------------------------------------------------

use std::sync::Arc;
use std::time::Duration;

use paid_core::testing::faults::{FaultPoint, FlakyStore};
use paid_core::{Catalog, Clock, ManualClock, Store};
use paid_store_sqlite::SqliteStore;

const WINDOW: Duration = Duration::from_secs(3600);

/// A receiver with replay protection on `store`, served on loopback.
async fn serve_protected(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> (String, mpsc::Receiver<WebhookEvent>) {
    let (tx, rx) = mpsc::channel(16);
    let store: Arc<dyn Catalog> = store;
    let receiver = WebhookReceiver::new(SECRET.to_string().into(), tx).replay_protection(store, clock, WINDOW);
    let app = axum::Router::new().nest("/webhooks/github", receiver.router());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr.to_string(), rx)
}

/// An `issues` payload updated at `updated_at`.
fn fresh_payload(issue: u64, updated_at: chrono::DateTime<chrono::Utc>) -> String {
    serde_json::json!({
        "action": "labeled",
        "issue": {"number": issue, "created_at": "2020-01-01T00:00:00Z", "updated_at": updated_at.to_rfc3339()},
        "label": {"name": "paid-build"},
        "repository": {"name": "app", "owner": {"login": "octo"}, "pushed_at": 1577836800},
        "sender": {"login": "alice"},
    })
    .to_string()
}

fn clock_at(t: chrono::DateTime<chrono::Utc>) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(t))
}

#[tokio::test]
async fn a_replayed_delivery_is_refused_after_a_restart_even_under_a_new_delivery_id() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paid.db");
    let now = chrono::Utc::now();
    let body = fresh_payload(7, now);
    let sig = sign(SECRET.as_bytes(), body.as_bytes());

    let (addr, mut rx) = serve_protected(Arc::new(SqliteStore::open(&file).unwrap()), clock_at(now)).await;
    assert_eq!(post(&addr, &headers(&sig, "d-1"), &body).await, 202);
    assert_eq!(rx.try_recv().unwrap().number, Some(7));

    // A new receiver (a restarted daemon, or another node) on the same database.
    let later = now + chrono::Duration::minutes(10);
    let (addr, mut rx) = serve_protected(Arc::new(SqliteStore::open(&file).unwrap()), clock_at(later)).await;
    assert_eq!(post(&addr, &headers(&sig, "d-1"), &body).await, 200, "the same delivery: a duplicate");
    assert_eq!(post(&addr, &headers(&sig, "forged-id"), &body).await, 200, "the delivery id is not signed");
    // The receiver hands an event on before it answers (the 202 above was
    // followed by an event at once), so an empty channel now is conclusive.
    assert!(rx.try_recv().is_err(), "a replay was handed on");

    // A different signed body is a new delivery.
    let other = fresh_payload(8, later);
    assert_eq!(post(&addr, &headers(&sign(SECRET.as_bytes(), other.as_bytes()), "d-2"), &other).await, 202);
    assert_eq!(rx.try_recv().unwrap().number, Some(8));
}

#[tokio::test]
async fn a_delivery_older_than_the_window_is_refused_with_422_and_not_recorded() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let now = chrono::Utc::now();
    let (addr, mut rx) = serve_protected(store.clone(), clock_at(now)).await;
    let stale = fresh_payload(7, now - chrono::Duration::minutes(61));
    let sig = sign(SECRET.as_bytes(), stale.as_bytes());
    assert_eq!(post(&addr, &headers(&sig, "old-1"), &stale).await, 422);
    // No `*_at` timestamp at all (only an integer `pushed_at`): nothing proves it fresh.
    let bare = payload();
    assert_eq!(post(&addr, &headers(&sign(SECRET.as_bytes(), bare.as_bytes()), "bare-1"), &bare).await, 422);
    assert!(rx.try_recv().is_err());
    // A payload just inside the window is accepted.
    let edge = fresh_payload(9, now - chrono::Duration::minutes(59));
    assert_eq!(post(&addr, &headers(&sign(SECRET.as_bytes(), edge.as_bytes()), "edge-1"), &edge).await, 202);
    assert_eq!(rx.try_recv().unwrap().number, Some(9));
    // A clock ahead of ours (skew) is fine: only old payloads are refused.
    let ahead = fresh_payload(10, now + chrono::Duration::minutes(5));
    assert_eq!(post(&addr, &headers(&sign(SECRET.as_bytes(), ahead.as_bytes()), "ahead-1"), &ahead).await, 202);
}

#[tokio::test]
async fn a_delivery_the_store_cannot_record_gets_503_and_goes_through_when_redelivered() {
    let flaky = Arc::new(FlakyStore::new(Arc::new(SqliteStore::open_in_memory().unwrap())));
    let now = chrono::Utc::now();
    let (addr, mut rx) = serve_protected(flaky.clone(), clock_at(now)).await;
    let body = fresh_payload(7, now);
    let sig = sign(SECRET.as_bytes(), body.as_bytes());
    flaky.fail("record_delivery", FaultPoint::Before, 1);
    assert_eq!(post(&addr, &headers(&sig, "d-1"), &body).await, 503);
    assert!(rx.try_recv().is_err(), "an unrecorded delivery is not handed on");
    assert_eq!(post(&addr, &headers(&sig, "d-1"), &body).await, 202, "the redelivery is accepted");
    assert_eq!(rx.try_recv().unwrap().number, Some(7));
    assert_eq!(flaky.calls("record_delivery"), 2);
}

#[test]
fn the_newest_timestamp_is_found_anywhere_in_the_payload() {
    use paid_github::webhooks::newest_timestamp;
    let v = serde_json::json!({
        "issue": {"created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-03-01T10:00:00+02:00", "closed_at": null},
        "comment": {"body": "updated_at 2099-01-01T00:00:00Z", "created_at": "not a time"},
        "check_run": {"pull_requests": [{"merged_at": "2024-03-01T09:00:00Z"}]},
        "repository": {"pushed_at": 4102444800u64},
    });
    // 10:00+02:00 is 08:00Z: the merged PR's 09:00Z is the newest.
    assert_eq!(newest_timestamp(&v).unwrap().to_rfc3339(), "2024-03-01T09:00:00+00:00");
    assert_eq!(newest_timestamp(&serde_json::json!({"zen": "x"})), None);
}
