//! Neither the proxy's upstream client nor the providers' client follows a
//! redirect: requests carry real API keys, and reqwest's default policy
//! resends headers such as `x-api-key` to wherever a redirect points. An
//! upstream that answers 3xx gets the caller a 502, and the redirect's
//! target hears nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use paid_core::Store;
use paid_core::testing::fixtures;
use paid_llm::RunningServer;
use paid_llm::providers::{ProviderKind, http_client};
use paid_llm::proxy::{Proxy, Upstream};
use paid_store_sqlite::SqliteStore;

const ANTHROPIC_KEY: &str = "sk-ant-REAL-anthropic-key";
const OPENAI_KEY: &str = "sk-REAL-openai-key";
const GEMINI_KEY: &str = "REAL-gemini-key";

/// Every request a listener got: method, path and headers.
type Seen = Arc<Mutex<Vec<(String, String, HeaderMap)>>>;

async fn record(State(seen): State<Seen>, req: http::Request<axum::body::Body>) -> Response {
    seen.lock().unwrap().push((req.method().to_string(), req.uri().to_string(), req.headers().clone()));
    (StatusCode::OK, [("content-type", "application/json")], "{}").into_response()
}

/// A listener on loopback that records every request and answers `200 {}`.
async fn target() -> (RunningServer, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(record).with_state(seen.clone());
    (RunningServer::bind("127.0.0.1:0".parse().unwrap(), app).await.unwrap(), seen)
}

/// A listener on loopback that answers every request with `status` to the
/// same path on `to`, recording what it got.
async fn redirecting(status: StatusCode, to: String) -> (RunningServer, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(move |State(seen): State<Seen>, req: http::Request<axum::body::Body>| {
        let to = to.clone();
        async move {
            seen.lock().unwrap().push((req.method().to_string(), req.uri().to_string(), req.headers().clone()));
            let location = format!("{to}{}", req.uri());
            (status, [("location", location)], "").into_response()
        }
    });
    (RunningServer::bind("127.0.0.1:0".parse().unwrap(), app.with_state(seen.clone())).await.unwrap(), seen)
}

fn carries_a_key(headers: &HeaderMap) -> bool {
    headers.iter().any(|(_, v)| {
        let v = v.to_str().unwrap_or_default();
        [ANTHROPIC_KEY, OPENAI_KEY, GEMINI_KEY].iter().any(|k| v.contains(k))
    })
}

#[tokio::test]
async fn the_proxy_never_follows_an_upstream_redirect() {
    for status in [StatusCode::FOUND, StatusCode::MOVED_PERMANENTLY, StatusCode::TEMPORARY_REDIRECT] {
        let (elsewhere, reached) = target().await;
        let (upstream, asked) = redirecting(status, elsewhere.url()).await;

        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let project = fixtures::project("widgets");
        store.put_project(&project).await.unwrap();
        store.put_issue(&fixtures::issue(project.id, 1)).await.unwrap();
        let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
        let proxy = Proxy::builder(store.clone())
            .upstream(Upstream::new(ProviderKind::Anthropic, upstream.url(), Some(ANTHROPIC_KEY.into())))
            .upstream(Upstream::new(ProviderKind::OpenAi, upstream.url(), Some(OPENAI_KEY.into())))
            .upstream(Upstream::new(ProviderKind::Gemini, upstream.url(), Some(GEMINI_KEY.into())))
            .build()
            .unwrap();
        let server = proxy.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let token = proxy.issue_token(run.id, project.id);
        let caller = http_client().unwrap();
        let body = serde_json::json!({
            "model": "claude-haiku-4-5", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]
        });

        let answers = [
            caller
                .post(format!("{}/anthropic/v1/messages", server.url()))
                .header("x-api-key", token.expose())
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await
                .unwrap(),
            caller
                .post(format!("{}/openai/v1/chat/completions", server.url()))
                .bearer_auth(token.expose())
                .json(&serde_json::json!({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap(),
            caller
                .post(format!("{}/gemini/v1beta/models/gemini-2.5-pro:generateContent", server.url()))
                .header("x-goog-api-key", token.expose())
                .json(&serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
                .send()
                .await
                .unwrap(),
        ];
        // The upstream was asked, with the real keys ...
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 3, "{status}: {asked:?}");
        assert!(asked.iter().all(|(_, _, h)| carries_a_key(h)));
        // ... and the redirect's target heard nothing: no key, no request.
        let reached = reached.lock().unwrap().clone();
        assert!(!reached.iter().any(|(_, _, h)| carries_a_key(h)), "{status}: a key was sent on: {reached:?}");
        assert!(reached.is_empty(), "{status}: the redirect was followed: {reached:?}");

        for resp in answers {
            // The caller gets an error, not the redirect (its SDK would follow it past the proxy).
            assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{status}");
            assert!(resp.headers().get("location").is_none());
            let text = resp.text().await.unwrap();
            assert!(text.contains("redirect"), "{text}");
        }
    }
}

#[tokio::test]
async fn the_providers_client_returns_a_redirect_as_is() {
    let (elsewhere, reached) = target().await;
    let (upstream, asked) = redirecting(StatusCode::FOUND, elsewhere.url()).await;
    let resp = http_client()
        .unwrap()
        .post(format!("{}/v1/messages", upstream.url()))
        .header("x-api-key", ANTHROPIC_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(reached.lock().unwrap().is_empty(), "followed: {:?}", reached.lock().unwrap());
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(asked.lock().unwrap().len(), 1);
}
