//! Fetch and push over smart HTTP with a token: the remote is a bare
//! repository served by `git http-backend` behind a server that demands
//! HTTP basic auth, so the credentials callback is exercised for real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use git2::{Repository, Signature};
use http::{HeaderMap, Method, StatusCode, Uri};
use paid_core::{CommitRequest, Ids, Project, ProjectId, RepoRef, RunId, SequentialIds, Workspaces, WorktreeRequest};
use paid_github::{GitWorkspaces, GitWorkspacesConfig, SharedToken, WebOrigin};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "ghs_http_test_token_0123456789";

#[derive(Clone)]
struct Server {
    root: PathBuf,
    expected_auth: String,
    /// Authorization headers seen, in order (None: the request had none).
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs `git http-backend` as a CGI for one request.
async fn handle(State(s): State<Server>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    s.seen.lock().unwrap().push(auth.clone());
    if auth.as_deref() != Some(s.expected_auth.as_str()) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", "Basic realm=\"git\"")
            .body(Body::empty())
            .unwrap();
    }
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &s.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "paid")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", headers.get("content-encoding").and_then(|v| v.to_str().ok()).unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("git http-backend");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head_len, sep) = split.expect("CGI headers");
    let head = String::from_utf8_lossy(&out.stdout[..head_len]).to_string();
    let mut response = Response::builder();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.trim().split(' ').next().unwrap().parse().unwrap();
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value.trim());
        }
    }
    response.body(Body::from(out.stdout[head_len + sep..].to_vec())).unwrap()
}

/// Workspaces under `root` whose forge is the test server at `base`.
fn config(root: &Path, base: &str) -> GitWorkspacesConfig {
    GitWorkspacesConfig::new(root).forge_origin(WebOrigin::parse(base).unwrap())
}

async fn serve(root: &Path) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Server {
        root: root.to_path_buf(),
        expected_auth: format!("Basic {}", base64(format!("x-access-token:{TOKEN}").as_bytes())),
        seen: seen.clone(),
    };
    let app = axum::Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn bare_remote(root: &Path) -> git2::Oid {
    let repo = Repository::init_bare(root.join("app.git")).unwrap();
    let blob = repo.blob(b"# app\n").unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    tree.insert("README.md", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = Signature::now("Someone", "someone@example.com").unwrap();
    let oid = repo.commit(Some("refs/heads/main"), &sig, &sig, "initial", &tree, &[]).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    oid
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_and_push_over_http_with_the_token_from_the_callback() {
    let served = tempfile::tempdir().unwrap();
    let initial = bare_remote(served.path());
    let (base, seen) = serve(served.path()).await;
    let url = format!("{base}/app.git");
    let ids = SequentialIds::default();
    let project = Project::new(ProjectId(ids.uuid()), RepoRef::new("octo", "app"), &url, chrono::Utc::now());

    // Without a token the server's 401 becomes a clone error.
    let anonymous_root = tempfile::tempdir().unwrap();
    let anonymous = GitWorkspaces::new(config(anonymous_root.path(), &base));
    let err = anonymous.ensure_mirror(&project).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::Clone { .. }), "{err:?}");

    // A wrong token is tried once, then refused (no endless retry loop).
    let wrong_root = tempfile::tempdir().unwrap();
    let wrong = GitWorkspaces::new(config(wrong_root.path(), &base).token("nope".to_string().into()));
    let before = seen.lock().unwrap().len();
    let err = wrong.ensure_mirror(&project).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::Clone { .. }), "{err:?}");
    assert!(seen.lock().unwrap().len() - before <= 3, "{:?}", seen.lock().unwrap());

    let root = tempfile::tempdir().unwrap();
    // The token is pinned to the forge: workspaces whose forge is github.com
    // (the default) do not send it to this server, even for a project that
    // allowlists its host.
    let elsewhere_root = tempfile::tempdir().unwrap();
    let elsewhere = GitWorkspaces::new(GitWorkspacesConfig::new(elsewhere_root.path()).token(TOKEN.to_string().into()));
    let mut allowlisted = project.clone();
    allowlisted.settings.allowed_clone_hosts = vec!["127.0.0.1".into()];
    let before = seen.lock().unwrap().len();
    let err = elsewhere.ensure_mirror(&allowlisted).await.unwrap_err();
    assert!(seen.lock().unwrap()[before..].iter().all(Option::is_none), "{:?}", seen.lock().unwrap());
    assert!(err.to_string().contains("refusing to send the forge token"), "{err}");

    let ws = GitWorkspaces::new(config(root.path(), &base).token(TOKEN.to_string().into()));
    ws.ensure_mirror(&project).await.unwrap();
    let run = RunId(ids.uuid());
    let branch = "paid/1-http-abcdef";
    let wt = ws.create_worktree(&WorktreeRequest { project: &project, run_id: run, branch }).await.unwrap();
    assert_eq!(wt.base_commit, initial.to_string());
    std::fs::write(wt.path.join("fix.txt"), "fixed\n").unwrap();
    let commit = ws
        .commit_all(&CommitRequest {
            worktree: &wt,
            message: "fix",
            author_name: "Paid",
            author_email: "p@example.com",
            limits: Default::default(),
        })
        .await
        .unwrap()
        .unwrap();
    ws.push(&project, &wt).await.unwrap();
    ws.push(&project, &wt).await.unwrap();

    let remote = Repository::open_bare(served.path().join("app.git")).unwrap();
    assert_eq!(remote.refname_to_id(&format!("refs/heads/{branch}")).unwrap().to_string(), commit);
    // The token went over the wire as basic auth ...
    assert!(seen.lock().unwrap().iter().flatten().any(|a| a.starts_with("Basic ")));
    // ... and never to disk: not the mirror's config, not the worktree.
    let config = std::fs::read_to_string(root.path().join("mirrors/octo/app.git/config")).unwrap();
    assert!(config.contains(&url) && !config.contains(TOKEN), "{config}");
    let mut stack = vec![root.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "token found in {}", p.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clone_over_http_reports_progress_and_a_replaced_token_is_used() {
    let served = tempfile::tempdir().unwrap();
    bare_remote(served.path());
    let (base, _) = serve(served.path()).await;
    let url = format!("{base}/app.git");
    let ids = SequentialIds::default();
    let project = Project::new(ProjectId(ids.uuid()), RepoRef::new("octo", "app"), &url, chrono::Utc::now());

    // Started with a token the remote refuses; the operator replaces it.
    let root = tempfile::tempdir().unwrap();
    let ws = GitWorkspaces::new(config(root.path(), &base).token("ghs_revoked".to_string().into()));
    assert!(matches!(ws.ensure_mirror(&project).await.unwrap_err(), paid_core::Error::Clone { .. }));
    ws.set_token(Some(TOKEN.to_string().into()));

    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let path = ws.ensure_mirror_with_progress(&project, move |p| sink.lock().unwrap().push(p)).await.unwrap();
    assert_eq!(path, root.path().join("mirrors/octo/app.git"));
    let reports = reports.lock().unwrap().clone();
    let last = reports.last().copied().expect("progress was reported");
    assert_eq!(last.received_objects, last.total_objects, "{reports:?}");
    assert_eq!(last.total_objects, 3, "a commit, a tree, a blob: {reports:?}");
    assert!(last.received_bytes > 0);
    assert!(Repository::open_bare(&path).unwrap().refname_to_id("refs/remotes/origin/main").is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn workspaces_read_a_shared_token_anew_for_each_fetch() {
    let served = tempfile::tempdir().unwrap();
    bare_remote(served.path());
    let (base, _) = serve(served.path()).await;
    let url = format!("{base}/app.git");
    let ids = SequentialIds::default();
    let project = Project::new(ProjectId(ids.uuid()), RepoRef::new("octo", "app"), &url, chrono::Utc::now());

    // The daemon's shared token, revoked at first, then replaced: nothing
    // is rebuilt, the next fetch reads the new one.
    let token = SharedToken::new(Some("ghs_revoked".to_string().into()));
    let root = tempfile::tempdir().unwrap();
    let ws = GitWorkspaces::new(config(root.path(), &base).token_source(Arc::new(token.clone())));
    assert!(matches!(ws.ensure_mirror(&project).await.unwrap_err(), paid_core::Error::Clone { .. }));
    assert!(token.set(Some(TOKEN.to_string().into())));
    ws.ensure_mirror(&project).await.unwrap();
}
