//! Requests without a valid run token, for a run that ended, to paths off
//! the allowlist, or too large, are refused in the provider's own error
//! format, and never reach the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use paid_llm::providers::ProviderKind;
use paid_llm::proxy::ProxyConfig;
use paid_llm::proxy::auth::RunLimits;
use serde_json::{Value, json};

async fn refused(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status(), status);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_bad_token_is_refused_in_each_providers_format() {
    let env = Env::new().await;
    let bad = "paid-0000000000000000000000000000000000000000000000000000000000000000";

    let body =
        refused(env.request(ProviderKind::Anthropic, bad, "claude-haiku-4-5", false).send().await.unwrap(), 401).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    let body = refused(env.request(ProviderKind::OpenAi, bad, "gpt-5", false).send().await.unwrap(), 401).await;
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let body =
        refused(env.request(ProviderKind::Gemini, bad, "gemini-2.5-pro", false).send().await.unwrap(), 401).await;
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(body["error"]["code"], 401);

    // No token at all.
    let resp =
        env.http.post(env.url("/openai/v1/chat/completions")).json(&json!({"model": "gpt-5"})).send().await.unwrap();
    refused(resp, 401).await;

    // The provider's real key is no run token either.
    let resp =
        env.request(ProviderKind::Anthropic, common::ANTHROPIC_KEY, "claude-haiku-4-5", false).send().await.unwrap();
    refused(resp, 401).await;

    assert!(env.fake.received().is_empty());
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let env = Env::new().await;
    let ok = env.request(ProviderKind::OpenAi, env.token.expose(), "gpt-5", false).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(env.proxy.revoke(env.run.id), 1);
    let body =
        refused(env.request(ProviderKind::OpenAi, env.token.expose(), "gpt-5", false).send().await.unwrap(), 401).await;
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(env.fake.received().len(), 1);
}

#[tokio::test]
async fn the_token_of_a_run_that_ended_is_refused() {
    let env = Env::new().await;
    let ok = env.request(ProviderKind::Anthropic, env.token.expose(), "claude-haiku-4-5", false).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // The run ends (here: cancelled) without anyone revoking the token.
    let run = env.store.request_cancel(env.run.id, chrono::Utc::now()).await.unwrap();
    assert!(run.state.is_terminal());
    let body = refused(
        env.request(ProviderKind::Anthropic, env.token.expose(), "claude-haiku-4-5", false).send().await.unwrap(),
        401,
    )
    .await;
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("ended"));
    assert_eq!(env.fake.received().len(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let env = Env::new().await;
    let expired = env.proxy.issue_token_with(
        env.run.id,
        env.project.id,
        Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
        RunLimits::default(),
    );
    refused(env.request(ProviderKind::Gemini, expired.expose(), "gemini-2.5-pro", false).send().await.unwrap(), 401)
        .await;
    assert!(env.fake.received().is_empty());
}

#[tokio::test]
async fn paths_off_the_allowlist_are_not_found() {
    let env = Env::new().await;
    let t = env.token.expose();
    let cases = [
        ("/anthropic/v1/files", ProviderKind::Anthropic),
        ("/anthropic/v1/messages/batches", ProviderKind::Anthropic),
        ("/openai/v1/embeddings", ProviderKind::OpenAi),
        ("/openai/v1/chat/completions/../../v1/files", ProviderKind::OpenAi),
        ("/gemini/v1beta/models/gemini-2.5-pro:embedContent", ProviderKind::Gemini),
        ("/gemini/v1beta/tunedModels", ProviderKind::Gemini),
    ];
    for (path, kind) in cases {
        let resp =
            env.http.post(env.url(path)).header("x-api-key", t).bearer_auth(t).json(&json!({})).send().await.unwrap();
        let body = refused(resp, 404).await;
        match kind {
            ProviderKind::Anthropic => assert_eq!(body["error"]["type"], "not_found_error", "{path}"),
            ProviderKind::Gemini => assert_eq!(body["error"]["status"], "NOT_FOUND", "{path}"),
            _ => assert_eq!(body["error"]["code"], "unknown_url", "{path}"),
        }
    }
    // The right path with the wrong method.
    let resp = env.http.get(env.url("/openai/v1/chat/completions")).bearer_auth(t).send().await.unwrap();
    refused(resp, 404).await;
    // An upstream that is not configured.
    let resp = env.http.post(env.url("/mistral/v1/chat/completions")).bearer_auth(t).send().await.unwrap();
    refused(resp, 404).await;
    assert!(env.fake.received().is_empty());
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let env = Env::with_config(ProxyConfig { max_body_bytes: 1024, ..ProxyConfig::default() }).await;
    let big = "x".repeat(4096);
    let resp = env
        .http
        .post(env.url("/anthropic/v1/messages"))
        .header("x-api-key", env.token.expose())
        .json(&json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": big}]}))
        .send()
        .await
        .unwrap();
    let body = refused(resp, 413).await;
    assert_eq!(body["error"]["type"], "request_too_large");
    assert!(env.fake.received().is_empty());
}

#[tokio::test]
async fn health_needs_no_token() {
    let env = Env::new().await;
    let resp = env.http.get(env.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn invalid_model_names_are_refused_before_forwarding_or_recording() {
    let env = Env::new().await;
    let t = env.token.expose();
    let thousand = "m".repeat(1000);
    for bad in ["gpt 5", "gpt-5\nfake_metric{x=\"1\"} 1", thousand.as_str()] {
        let body = refused(env.request(ProviderKind::OpenAi, t, bad, false).send().await.unwrap(), 400).await;
        assert_eq!(body["error"]["type"], "invalid_request_error", "{bad:?}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("not a model name") && message.len() < 200, "{message}");
        let body = refused(env.request(ProviderKind::Anthropic, t, bad, false).send().await.unwrap(), 400).await;
        assert_eq!(body["type"], "error", "{bad:?}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{bad:?}");
    }
    // Gemini names the model in the path: over the length bound, refused too.
    let body = refused(env.request(ProviderKind::Gemini, t, &thousand, false).send().await.unwrap(), 400).await;
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert!(env.fake.received().is_empty(), "nothing reached the upstream");
    assert!(env.store.usage(env.run.id).await.unwrap().is_empty(), "nothing was recorded");

    // A valid name, priced or not, goes through.
    for ok in ["gpt-5", "org/some-model@v2"] {
        assert_eq!(env.request(ProviderKind::OpenAi, t, ok, false).send().await.unwrap().status(), 200, "{ok}");
    }
}

/// The token the engine hands an agent expires with the step's time limit,
/// so one that leaks from a sandbox stops working.
#[tokio::test]
async fn a_run_token_expires_with_the_step_that_issued_it() {
    use paid_core::RunCredentials as _;
    use secrecy::ExposeSecret as _;

    let env = Env::new().await;
    env.fake.set_default(paid_llm::fake::Canned::text("ok"));
    let clock = std::sync::Arc::new(paid_core::ManualClock::new(chrono::Utc::now()));
    let proxy = paid_llm::proxy::Proxy::builder(env.store.clone())
        .upstream(paid_llm::proxy::Upstream::new(ProviderKind::Anthropic, env.fake.url(), Some("k".into())))
        .clock(clock.clone())
        .build()
        .unwrap();
    let server = proxy.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let credentials = paid_llm::proxy::ProxyCredentials::new(proxy, server.url());
    let endpoint = credentials.issue(env.run.id, env.project.id, std::time::Duration::from_secs(600)).await.unwrap();
    let send = || {
        env.http
            .post(format!("{}/anthropic/v1/messages", server.url()))
            .header("x-api-key", endpoint.token.expose_secret())
            .json(&json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    clock.advance(chrono::Duration::seconds(599));
    assert_eq!(send().await.unwrap().status(), 200, "still within the step's limit");
    clock.advance(chrono::Duration::seconds(2));
    refused(send().await.unwrap(), 401).await;
    assert_eq!(env.fake.received().len(), 2);
}
