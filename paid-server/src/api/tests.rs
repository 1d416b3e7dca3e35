//! The API listener's guarantees, through the router `paid serve` wires:
//! `/metrics` access, the `Host` check, paths confined to the data
//! directory, model names checked.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::secrets::inside_data_dir;
use crate::test_server::{self, TestDir, call, get, post_json, text};

const LOCAL: &str = "127.0.0.1:8700";

#[tokio::test]
async fn metrics_are_open_on_the_api_listener_by_default() {
    let dir = TestDir::new();
    let server = test_server::build(dir.config("", ""), dir.dir.path()).await;
    let resp = call(&server, get("/metrics", LOCAL, false)).await;
    assert_eq!(resp.status(), 200);
    assert!(text(resp).await.contains("# TYPE"), "metrics were served");
    assert_eq!(server.metrics_addr(), None, "no second listener");
    // The API itself still needs the token.
    assert_eq!(call(&server, get("/api/v1/status", LOCAL, false)).await.status(), 401);
}

#[tokio::test]
async fn metrics_auth_puts_metrics_behind_the_api_token() {
    let dir = TestDir::new();
    let server = test_server::build(dir.config("metrics_auth = true", ""), dir.dir.path()).await;
    let resp = call(&server, get("/metrics", LOCAL, false)).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let wrong = axum::http::Request::get("/metrics")
        .header("host", LOCAL)
        .header("authorization", "Bearer not-the-token-0123456789")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(call(&server, wrong).await.status(), 401);
    let resp = call(&server, get("/metrics", LOCAL, true)).await;
    assert_eq!(resp.status(), 200);
    assert!(text(resp).await.contains("# TYPE"));
    // Health probes carry no token and stay open.
    assert_eq!(call(&server, get("/health", LOCAL, false)).await.status(), 200);
}

/// A plain HTTP/1.1 GET of `path` on `addr`: the status and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut out)).await.unwrap().unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_bind_serves_metrics_alone_on_a_listener_of_its_own() {
    let dir = TestDir::new();
    let server = test_server::build(dir.config("metrics_bind = \"127.0.0.1:0\"", ""), dir.dir.path()).await;
    let (api, metrics) = (server.addr(), server.metrics_addr().expect("a metrics listener"));
    assert_ne!(api, metrics);
    // Off the API listener.
    assert_eq!(call(&server, get("/metrics", LOCAL, false)).await.status(), 404);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.run(shutdown.clone()));
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE"), "{body}");
    // Only /metrics there: not the health endpoints, not the API.
    for path in ["/health", "/api/v1/status", "/webhooks/github"] {
        assert_eq!(http_get(metrics, path).await.0, 404, "{path}");
    }
    assert_eq!(http_get(api, "/metrics").await.0, 404);
    assert_eq!(http_get(api, "/health").await.0, 200);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), running).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn metrics_bind_and_metrics_auth_together_need_the_token_on_the_metrics_listener() {
    let dir = TestDir::new();
    let config = dir.config("metrics_bind = \"127.0.0.1:0\"\nmetrics_auth = true", "");
    let server = test_server::build(config, dir.dir.path()).await;
    let app = server.metrics_listener.as_ref().unwrap().app.clone();
    use tower::ServiceExt as _;
    assert_eq!(app.clone().oneshot(get("/metrics", LOCAL, false)).await.unwrap().status(), 401);
    assert_eq!(app.oneshot(get("/metrics", LOCAL, true)).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_host_other_than_the_public_urls_gets_421() {
    let dir = TestDir::new();
    let server = test_server::build(dir.config("public_url = \"https://paid.example.com\"", ""), dir.dir.path()).await;
    for host in ["paid.example.com", "PAID.example.com:443", "paid.example.com.", LOCAL, "[::1]:8700"] {
        assert_eq!(call(&server, get("/api/v1/status", host, true)).await.status(), 200, "{host}");
    }
    for host in ["evil.example", "paid.example.com.evil.example", "paid.example.com:8443", "localhost:8700"] {
        for path in ["/api/v1/status", "/metrics", "/health"] {
            let resp = call(&server, get(path, host, true)).await;
            assert_eq!(resp.status(), 421, "{host} {path}");
            let body: Value = serde_json::from_str(&text(resp).await).unwrap();
            assert_eq!(body["error"]["code"], "misdirected_request");
            assert!(body["error"]["message"].as_str().unwrap().contains("paid.example.com"), "{body}");
        }
    }
    // Unauthenticated requests are refused for the host first: nothing else is revealed.
    assert_eq!(call(&server, get("/api/v1/status", "evil.example", false)).await.status(), 421);

    // Without public_url, any Host is served.
    let dir = TestDir::new();
    let server = test_server::build(dir.config("", ""), dir.dir.path()).await;
    assert_eq!(call(&server, get("/api/v1/status", "evil.example", true)).await.status(), 200);
}

async fn rotate(server: &crate::Server, file: &str) -> (u16, Value) {
    let resp = call(server, post_json("/api/v1/keys/rotate", &json!({ "new_key_file": file }))).await;
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&text(resp).await).unwrap())
}

#[tokio::test]
async fn rotate_key_reads_a_key_file_only_inside_the_data_directory() {
    let dir = TestDir::new();
    let server = test_server::build(dir.config("", ""), dir.dir.path()).await;
    // A valid key outside the data directory, reachable by `..`, by its
    // absolute path and through a symlink inside the data directory.
    let outside = dir.path("outside.key");
    crate::vault::write_new_key(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path("data/link.key")).unwrap();
    for (given, says) in [
        ("../outside.key".to_string(), "contains `..`"),
        (format!("{}/data/../outside.key", dir.dir.path().display()), "contains `..`"),
        (outside.display().to_string(), "outside the data directory"),
        ("/etc/passwd".to_string(), "outside the data directory"),
        ("link.key".to_string(), "outside the data directory"),
        ("missing.key".to_string(), "cannot read"),
    ] {
        let (status, body) = rotate(&server, &given).await;
        assert_eq!(status, 422, "{given}: {body}");
        assert_eq!(body["error"]["code"], "invalid_key_path", "{given}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{given}: {message}");
    }
    // Inside it, relative or absolute: rotated.
    crate::vault::write_new_key(&dir.path("data/new.key")).unwrap();
    let (status, body) = rotate(&server, "new.key").await;
    assert_eq!(status, 200, "{body}");
    crate::vault::write_new_key(&dir.path("data/newer.key")).unwrap();
    let (status, body) = rotate(&server, &dir.path("data/newer.key").display().to_string()).await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn inside_data_dir_resolves_symlinks_and_refuses_parent_components() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("keys")).unwrap();
    std::fs::write(data.join("keys/k"), "x").unwrap();
    std::fs::write(dir.path().join("secret"), "x").unwrap();
    std::os::unix::fs::symlink(dir.path(), data.join("up")).unwrap();
    let real = data.canonicalize().unwrap().join("keys/k");
    assert_eq!(inside_data_dir(&data, "keys/k").unwrap(), real);
    assert_eq!(inside_data_dir(&data, real.to_str().unwrap()).unwrap(), real);
    assert!(inside_data_dir(&data, "keys/../keys/k").unwrap_err().contains(".."));
    assert!(inside_data_dir(&data, "up/secret").unwrap_err().contains("outside the data directory"));
    assert!(inside_data_dir(&data, "").is_err());
}

#[tokio::test]
async fn a_comparison_naming_a_bad_model_is_refused_by_the_api() {
    let dir = TestDir::new();
    let server = test_server::build(dir.config("", ""), dir.dir.path()).await;
    let thousand = "m".repeat(1000);
    for bad in ["gpt 5", "gpt-5\nfake_metric 1", thousand.as_str()] {
        let req = json!({ "repo": "octo/app", "issue": 1, "compare": { "models": ["gpt-5", bad] } });
        let resp = call(&server, post_json("/api/v1/runs", &req)).await;
        assert_eq!(resp.status(), 422, "{bad:?}");
        let body: Value = serde_json::from_str(&text(resp).await).unwrap();
        assert_eq!(body["error"]["details"]["field"], "compare.models", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("not a model name"), "{body}");
    }
    assert!(server.store.runs(&paid_core::RunFilter::all()).await.unwrap().is_empty(), "nothing was queued");
}
