//! A [`Server`] wired as `paid serve` wires it, on the in-process instant
//! backends and a SQLite file in a temporary directory: for tests of the
//! HTTP surface (requests go through [`TestServer::call`], or to real
//! loopback listeners once it runs).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers: panicking is how they report")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use paid_core::testing::instant::InstantBackends;
use tower::ServiceExt as _;

use crate::{Config, Server};

/// The API's bearer token.
pub(crate) const TOKEN: &str = "test-api-token-0123456789";
/// The GitHub webhook secret.
pub(crate) const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";
/// The one declared project.
pub(crate) const REPO: (&str, &str) = ("octo", "app");

/// A directory holding the configuration, keys, token and database.
pub(crate) struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-token"), TOKEN).unwrap();
        std::fs::write(dir.path().join("webhook-secret"), WEBHOOK_SECRET).unwrap();
        crate::vault::write_new_key(&dir.path().join("master.key")).unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The configuration, with `api` and `github` lines added to those
    /// sections.
    pub fn config(&self, api: &str, github: &str) -> Config {
        let d = self.dir.path().display();
        let text = format!(
            r#"
data_dir = "{d}/data"
[store]
url = "{d}/paid.db"
[api]
bind = "127.0.0.1:0"
token_file = "{d}/api-token"
{api}
[keys]
master_key_file = "{d}/master.key"
[github]
api_url = "http://127.0.0.1:9"
webhook_secret_file = "{d}/webhook-secret"
{github}
[[projects]]
repo = "{}/{}"
allowed_authors = ["alice"]
agent = "{}"
"#,
            REPO.0,
            REPO.1,
            paid_core::testing::instant::AGENT_KIND
        );
        Config::parse(&self.path("paid.toml"), &text, &BTreeMap::new()).unwrap()
    }
}

/// Builds the server of `config`, its poller off, on the instant backends.
pub(crate) async fn build(config: Config, dir: &Path) -> Server {
    let b = InstantBackends::unrecorded(dir.join("worktrees"));
    Server::builder(config)
        .runtime(b.runtime.clone())
        .forge(b.forge.clone())
        .workspaces(b.workspaces.clone())
        .agents(vec![b.agent.clone() as Arc<dyn paid_core::Agent>])
        .poller(false)
        .build()
        .await
        .unwrap()
}

/// Sends `req` to the API listener's router, as the listener would.
pub(crate) async fn call(server: &Server, req: Request<Body>) -> Response<Body> {
    server.app.clone().oneshot(req).await.unwrap()
}

/// The body of `resp`, as text.
pub(crate) async fn text(resp: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A GET of `path` with `Host: host`, with the bearer token when `auth`.
pub(crate) fn get(path: &str, host: &str, auth: bool) -> Request<Body> {
    let mut b = Request::get(path).header("host", host);
    if auth {
        b = b.header("authorization", format!("Bearer {TOKEN}"));
    }
    b.body(Body::empty()).unwrap()
}

/// A POST of `json` to `path` with the bearer token.
pub(crate) fn post_json(path: &str, json: &serde_json::Value) -> Request<Body> {
    Request::post(path)
        .header("host", "127.0.0.1:8700")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(json.to_string()))
        .unwrap()
}
