//! A store with a running run, the fake upstream, and the proxy in front of it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use paid_core::testing::fixtures;
use paid_core::{Project, Run, Store};
use paid_llm::RunningServer;
use paid_llm::fake::FakeUpstream;
use paid_llm::providers::ProviderKind;
use paid_llm::proxy::auth::RunToken;
use paid_llm::proxy::budget::BudgetConfig;
use paid_llm::proxy::{Proxy, ProxyConfig, Upstream};
use paid_store_sqlite::SqliteStore;

pub const ANTHROPIC_KEY: &str = "sk-ant-REAL-anthropic-key";
pub const OPENAI_KEY: &str = "sk-REAL-openai-key";
pub const GEMINI_KEY: &str = "REAL-gemini-key";

pub struct Env {
    pub store: Arc<dyn Store>,
    pub project: Project,
    pub run: Run,
    pub fake: FakeUpstream,
    pub proxy: Proxy,
    pub server: RunningServer,
    pub token: RunToken,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn new() -> Self {
        Self::with_config(ProxyConfig::default()).await
    }

    pub async fn with_budgets(budgets: BudgetConfig) -> Self {
        Self::with_config(ProxyConfig { budgets, ..ProxyConfig::default() }).await
    }

    pub async fn with_config(config: ProxyConfig) -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let project = fixtures::project("widgets");
        store.put_project(&project).await.unwrap();
        store.put_issue(&fixtures::issue(project.id, 1)).await.unwrap();
        let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
        let fake = FakeUpstream::start().await.unwrap();
        let proxy = Proxy::builder(store.clone())
            .upstream(Upstream::new(ProviderKind::Anthropic, fake.url(), Some(ANTHROPIC_KEY.into())))
            .upstream(Upstream::new(ProviderKind::OpenAi, fake.url(), Some(OPENAI_KEY.into())))
            .upstream(Upstream::new(ProviderKind::Gemini, fake.url(), Some(GEMINI_KEY.into())))
            .config(config)
            .build()
            .unwrap();
        let server = proxy.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let token = proxy.issue_token(run.id, project.id);
        Self { store, project, run, fake, proxy, server, token, http: paid_llm::providers::http_client().unwrap() }
    }

    /// A second run of the same project, with its own token.
    pub async fn another_run(&self, issue: u64) -> (Run, RunToken) {
        self.store.put_issue(&fixtures::issue(self.project.id, issue)).await.unwrap();
        let run = self.store.create_run(&fixtures::new_run(self.project.id, issue)).await.unwrap();
        let token = self.proxy.issue_token(run.id, self.project.id);
        (run, token)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// A request as each official client would send it, authenticated with `token`.
    pub fn request(&self, kind: ProviderKind, token: &str, model: &str, stream: bool) -> reqwest::RequestBuilder {
        match kind {
            ProviderKind::Anthropic => {
                let mut body = serde_json::json!({
                    "model": model, "max_tokens": 256,
                    "messages": [{"role": "user", "content": "Say hello"}]
                });
                if stream {
                    body["stream"] = true.into();
                }
                self.http
                    .post(self.url("/anthropic/v1/messages"))
                    .header("x-api-key", token)
                    .header("anthropic-version", "2023-06-01")
                    .json(&body)
            }
            ProviderKind::Gemini => {
                let path = if stream {
                    format!("/gemini/v1beta/models/{model}:streamGenerateContent?alt=sse")
                } else {
                    format!("/gemini/v1beta/models/{model}:generateContent")
                };
                self.http.post(self.url(&path)).header("x-goog-api-key", token).json(&serde_json::json!({
                    "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]
                }))
            }
            _ => {
                let mut body = serde_json::json!({
                    "model": model,
                    "messages": [{"role": "user", "content": "Say hello"}]
                });
                if stream {
                    body["stream"] = true.into();
                }
                self.http.post(self.url("/openai/v1/chat/completions")).bearer_auth(token).json(&body)
            }
        }
    }
}
