//! GitHub webhooks in `paid serve`: the `paid-github` receiver, mounted at
//! `POST /webhooks/github` when a webhook secret is configured
//! (`github.webhook_secret_env` or `github.webhook_secret_file`; never
//! inline).
//!
//! The receiver verifies `X-Hub-Signature-256` (a bad or missing signature
//! gets `401` and nothing else happens) and deduplicates by delivery id. A
//! verified event only *nudges* the poller, which does the work as on its
//! interval (one task, so a nudge never races a scheduled poll):
//!
//! - `issues`, `issue_comment`: poll that project now;
//! - `pull_request`, `pull_request_review`, `check_run`: read its pull
//!   requests' feedback now (`Engine::follow_up`).
//!
//! Nothing from the payload but the repository name is used: the poll and
//! the follow-up read the forge and apply the trust policy as always.
//! Polling stays the fallback when a delivery is lost.
//!
//! The route is guarded ([`guard`]), before any handler runs:
//!
//! - a body over `github.webhook_max_body_bytes` (default 1 MiB) gets `413`
//!   before it is read: a `Content-Length` over the limit at once, a
//!   chunked body as soon as it crosses it;
//! - at most `github.webhook_max_concurrency` deliveries (default 16) are
//!   handled at once; more get `503` at once, never queued.
//!
//! **Replays** are refused durably (`paid_github`'s replay protection, on
//! the store, over `github.webhook_replay_window_secs`, default one hour):
//! a delivery whose signed body was already accepted gets `200` (`duplicate
//! delivery`) and nudges nothing, after a restart and on every node
//! sharing the store, whatever its `X-GitHub-Delivery` (which GitHub does
//! not sign); a delivery whose payload's newest timestamp is older than the
//! window gets `422`, since the store forgets accepted deliveries after it.

use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use paid_core::{Catalog, Clock, ProjectId, Store, StoreExt};
use paid_github::webhooks::{WebhookEvent, WebhookKind, WebhookReceiver};
use secrecy::SecretString;
use tokio::sync::mpsc;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::{debug, info, warn};

use crate::config::{Config, ConfigError, GitHubSettings};

/// Where the receiver is mounted.
pub const PATH: &str = "/webhooks/github";

/// Deliveries waiting for the poller; more get `503` and GitHub redelivers.
const QUEUE: usize = 256;

/// What a webhook asks the poller to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    /// Poll the project's issues.
    Poll(ProjectId),
    /// Read the feedback on the project's pull requests.
    FollowUp(ProjectId),
}

/// The webhook secret the configuration names: the file, else the
/// environment variable. `None` when neither is configured (webhooks off).
pub fn secret(config: &Config) -> Result<Option<SecretString>, ConfigError> {
    let err = |key: &str, reason: String| ConfigError { file: config.file.clone(), key: key.into(), reason };
    let (text, key) = match (&config.github.webhook_secret_file, &config.github.webhook_secret_env) {
        (Some(f), _) => (
            std::fs::read_to_string(f)
                .map_err(|e| err("github.webhook_secret_file", format!("cannot read {}: {e}", f.display())))?,
            "github.webhook_secret_file",
        ),
        (None, Some(var)) => (
            std::env::var(var)
                .map_err(|_| err("github.webhook_secret_env", format!("environment variable {var} is not set")))?,
            "github.webhook_secret_env",
        ),
        (None, None) => return Ok(None),
    };
    let text = text.trim();
    if text.len() < 16 {
        return Err(err(key, "the webhook secret is shorter than 16 characters".into()));
    }
    Ok(Some(SecretString::from(text.to_string())))
}

/// The routes to mount at [`PATH`]: the receiver, replay-protected on
/// `store` and [`guard`]ed with `settings`' limits; and the nudges its
/// verified events become (for the poller). Runs a small task until the
/// routes are dropped.
pub fn start(
    secret: SecretString,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: &GitHubSettings,
) -> (Router, mpsc::Receiver<Nudge>) {
    let (events_tx, events) = mpsc::channel(QUEUE);
    let (nudges_tx, nudges) = mpsc::channel(QUEUE);
    let deliveries: Arc<dyn Catalog> = store.clone();
    tokio::spawn(translate(events, nudges_tx, store));
    let receiver =
        WebhookReceiver::new(secret, events_tx).replay_protection(deliveries, clock, settings.webhook_replay_window);
    let routes = guard(receiver.router(), settings.webhook_max_body_bytes, settings.webhook_max_concurrency);
    (routes, nudges)
}

/// `routes` behind the webhook limits: a body over `max_body_bytes` gets
/// `413` before it is read (at once when its `Content-Length` says so), and
/// beyond `max_in_flight` requests in progress, one more gets `503` at once
/// (shed, not queued). One semaphore covers every route of `routes`.
pub fn guard(routes: Router, max_body_bytes: usize, max_in_flight: usize) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(max_body_bytes))
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                (StatusCode::SERVICE_UNAVAILABLE, "busy: too many webhook deliveries at once\n")
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(max_in_flight.max(1))),
    )
}

async fn translate(mut events: mpsc::Receiver<WebhookEvent>, nudges: mpsc::Sender<Nudge>, store: Arc<dyn Store>) {
    while let Some(event) = events.recv().await {
        let Some(nudge) = nudge_for(store.as_ref(), &event).await else { continue };
        info!(delivery = %event.delivery, kind = ?event.kind, ?nudge, "webhook: acting now instead of at the next poll");
        if nudges.send(nudge).await.is_err() {
            return; // the poller stopped
        }
    }
}

/// The nudge for a verified event: by kind, for the project of its
/// repository (`None` for repositories Paid does not manage).
pub async fn nudge_for(store: &dyn Store, event: &WebhookEvent) -> Option<Nudge> {
    let repo = event.repo.as_ref()?;
    let project = match store.project_by_repo(repo).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "webhook: cannot list projects; the next poll catches up");
            return None;
        }
    };
    let Some(project) = project else {
        debug!(%repo, "webhook for a repository that is not a project; ignored");
        return None;
    };
    Some(match event.kind {
        WebhookKind::Issues | WebhookKind::IssueComment => Nudge::Poll(project.id),
        _ => Nudge::FollowUp(project.id),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::post;
    use tower::ServiceExt as _;

    use super::*;
    use crate::test_server::{self, REPO, TestDir, WEBHOOK_SECRET};

    /// A signed `issues` delivery for the test project, updated now.
    fn delivery(id: &str, body: &[u8]) -> Request<Body> {
        Request::post(PATH)
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", paid_github::webhooks::sign(WEBHOOK_SECRET.as_bytes(), body))
            .body(Body::from(body.to_vec()))
            .unwrap()
    }

    fn issues_event(number: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "action": "labeled",
            "issue": { "number": number, "updated_at": chrono::Utc::now().to_rfc3339() },
            "label": { "name": "paid-build" },
            "repository": { "name": REPO.1, "owner": { "login": REPO.0 } },
            "sender": { "login": "alice" },
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_replayed_delivery_is_refused_after_the_server_is_recreated_on_the_same_store() {
        let dir = TestDir::new();
        let server = test_server::build(dir.config("", ""), dir.dir.path()).await;
        let project = server.store.project_by_repo(&paid_core::RepoRef::new(REPO.0, REPO.1)).await.unwrap().unwrap();
        let mut server = server;
        let mut nudges = server.nudges.take().unwrap();
        let body = issues_event(7);
        let resp = test_server::call(&server, delivery("d-1", &body)).await;
        assert_eq!(resp.status(), 202);
        let nudge = tokio::time::timeout(Duration::from_secs(5), nudges.recv()).await.unwrap();
        assert_eq!(nudge, Some(Nudge::Poll(project.id)));
        drop(server);

        // The daemon restarts on the same database: the replay is
        // acknowledged (200, so GitHub stops redelivering) and acted on by
        // nobody, whatever delivery id it carries.
        let mut server = test_server::build(dir.config("", ""), dir.dir.path()).await;
        let mut nudges = server.nudges.take().unwrap();
        for id in ["d-1", "d-forged"] {
            let resp = test_server::call(&server, delivery(id, &body)).await;
            assert_eq!(resp.status(), 200, "{id}");
            assert_eq!(test_server::text(resp).await, "duplicate delivery\n");
        }
        // A new delivery still goes through.
        assert_eq!(test_server::call(&server, delivery("d-2", &issues_event(8))).await.status(), 202);
        // Dropping the routes ends the one task that turns events into
        // nudges, in order, and so closes the channel: every nudge there
        // will ever be is then counted, a replay's included.
        drop(server);
        let mut seen = Vec::new();
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(nudge) = nudges.recv().await {
                seen.push(nudge);
            }
        });
        drained.await.expect("the nudge channel was not closed with the routes");
        assert_eq!(seen, [Nudge::Poll(project.id)], "only the new delivery nudges");
    }

    #[tokio::test]
    async fn the_server_applies_the_configured_webhook_body_limit() {
        let dir = TestDir::new();
        let config = dir.config("", "webhook_max_body_bytes = 1024");
        let server = test_server::build(config, dir.dir.path()).await;
        let mut big = issues_event(7);
        big.truncate(big.len() - 1);
        big.extend_from_slice(format!(", \"pad\": \"{}\"}}", "x".repeat(2048)).as_bytes());
        let resp = test_server::call(&server, delivery("big-1", &big)).await;
        assert_eq!(resp.status(), 413);
    }

    /// A router whose one handler tells `entered` it runs, then waits for
    /// `release`.
    fn slow_routes(entered: mpsc::Sender<()>, release: Arc<tokio::sync::Semaphore>) -> Router {
        Router::new().route(
            "/",
            post(move |body: axum::body::Bytes| {
                let (entered, release) = (entered.clone(), release.clone());
                async move {
                    let _ = entered.send(()).await;
                    let _permit = release.acquire().await;
                    format!("{} bytes\n", body.len())
                }
            }),
        )
    }

    fn post_body(body: Body, length: Option<usize>) -> Request<Body> {
        let mut b = Request::post("/");
        if let Some(n) = length {
            b = b.header("content-length", n);
        }
        b.body(body).unwrap()
    }

    #[tokio::test]
    async fn an_oversized_body_gets_413_before_it_is_read() {
        let (entered, mut entered_rx) = mpsc::channel(8);
        let release = Arc::new(tokio::sync::Semaphore::new(100));
        let app = guard(slow_routes(entered, release), 1024, 4);
        // A declared length over the limit: answered at once, though the
        // body would never arrive.
        let never = Body::from_stream(futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>());
        let resp = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(post_body(never, Some(4096))))
            .await
            .expect("the oversized request was read (or waited for)")
            .unwrap();
        assert_eq!(resp.status(), 413);
        assert!(entered_rx.try_recv().is_err(), "the handler ran");
        // Chunked (no length): cut off as it crosses the limit.
        let chunks =
            futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 512]))));
        let resp = app.clone().oneshot(post_body(Body::from_stream(chunks), None)).await.unwrap();
        assert_eq!(resp.status(), 413);
        // Within the limit: served.
        let resp = app.oneshot(post_body(Body::from(vec![b'x'; 1000]), Some(1000))).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(test_server::text(resp).await, "1000 bytes\n");
    }

    #[tokio::test]
    async fn deliveries_beyond_the_concurrency_cap_get_503_at_once() {
        let (entered, mut entered_rx) = mpsc::channel(8);
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let app = guard(slow_routes(entered, release.clone()), 1024, 2);
        let held: Vec<_> =
            (0..2).map(|_| tokio::spawn(app.clone().oneshot(post_body(Body::from("a"), Some(1))))).collect();
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), entered_rx.recv()).await.unwrap();
        }
        // Two in progress: a third is shed, not queued.
        let resp =
            tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(post_body(Body::from("b"), Some(1))))
                .await
                .expect("the third request waited instead of being shed")
                .unwrap();
        assert_eq!(resp.status(), 503);
        release.add_permits(100);
        for h in held {
            assert_eq!(h.await.unwrap().unwrap().status(), 200);
        }
        // The slots are free again.
        assert_eq!(app.oneshot(post_body(Body::from("c"), Some(1))).await.unwrap().status(), 200);
    }
}
