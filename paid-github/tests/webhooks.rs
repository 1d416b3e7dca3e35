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
