//! The token goes only to the forge's origin: redirects elsewhere (before or
//! after the token was sent) never carry it on, a clone URL off the forge's
//! host is refused before anything connects, and the REST client does not
//! follow redirects. Every server here is a loopback listener of the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri};
use paid_core::{Ids, Project, ProjectId, RepoRef, SequentialIds, Workspaces};
use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig, RetryPolicy, WebOrigin};

const TOKEN: &str = "ghs_pinned_token_0123456789";

/// What one listener does with a request.
#[derive(Clone)]
enum Mode {
    /// `401` asking for basic auth, always (a remote that wants a token).
    AskForAuth,
    /// `302` to the same path and query on `to`.
    Redirect { to: String },
    /// `401` until a request carries credentials, then `302` to `to`.
    AuthThenRedirect { to: String },
}

/// Every request a listener got: path and query, and its `Authorization`.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone)]
struct Listener {
    mode: Mode,
    seen: Seen,
}

async fn handle(State(l): State<Listener>, uri: Uri, headers: HeaderMap) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    l.seen.lock().unwrap().push((uri.to_string(), auth.clone()));
    let ask = || (StatusCode::UNAUTHORIZED, [("www-authenticate", "Basic realm=\"git\"")]).into_response();
    let redirect = |to: &str| (StatusCode::FOUND, [("location", format!("{to}{uri}"))]).into_response();
    match &l.mode {
        Mode::AskForAuth => ask(),
        Mode::Redirect { to } => redirect(to),
        Mode::AuthThenRedirect { to } if auth.is_some() => redirect(to),
        Mode::AuthThenRedirect { .. } => ask(),
    }
}

/// Binds a loopback listener; returns its port and what it sees.
async fn listen() -> (tokio::net::TcpListener, u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn serve(listener: tokio::net::TcpListener, mode: Mode) -> Seen {
    let seen = Seen::default();
    let app = axum::Router::new().fallback(handle).with_state(Listener { mode, seen: seen.clone() });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    seen
}

fn project(url: &str) -> Project {
    Project::new(ProjectId(SequentialIds::default().uuid()), RepoRef::new("octo", "app"), url, chrono::Utc::now())
}

/// Workspaces whose forge is at `origin`, with the token.
fn workspaces(root: &std::path::Path, origin: &str) -> GitWorkspaces {
    GitWorkspaces::new(
        GitWorkspacesConfig::new(root).token(TOKEN.to_string().into()).forge_origin(WebOrigin::parse(origin).unwrap()),
    )
}

fn carried_token(seen: &Seen) -> bool {
    seen.lock().unwrap().iter().any(|(_, auth)| auth.is_some())
}

/// libgit2 follows no redirect to another host name (`RemoteRedirect::None`):
/// the second server is never asked anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_host_is_not_followed() {
    let (second, second_port) = listen().await;
    let second_seen = serve(second, Mode::AskForAuth);
    let (first, first_port) = listen().await;
    let first_seen = serve(first, Mode::Redirect { to: format!("http://localhost:{second_port}") });
    let origin = format!("http://127.0.0.1:{first_port}");

    let root = tempfile::tempdir().unwrap();
    let err = workspaces(root.path(), &origin).ensure_mirror(&project(&format!("{origin}/app.git"))).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::Clone { .. }), "{err:?}");
    assert!(!first_seen.lock().unwrap().is_empty(), "the first server was asked");
    assert!(second_seen.lock().unwrap().is_empty(), "the redirect was followed: {:?}", second_seen.lock().unwrap());
    assert!(!err.to_string().contains(TOKEN));
}

/// A redirect elsewhere after the forge accepted the token is not followed
/// either: the other host is never contacted, so it cannot ask for (or be
/// sent) credentials.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_after_the_token_was_sent_does_not_carry_it_away() {
    let (second, second_port) = listen().await;
    let second_seen = serve(second, Mode::AskForAuth);
    let (first, first_port) = listen().await;
    let first_seen = serve(first, Mode::AuthThenRedirect { to: format!("http://localhost:{second_port}") });
    let origin = format!("http://127.0.0.1:{first_port}");

    let root = tempfile::tempdir().unwrap();
    let err = workspaces(root.path(), &origin).ensure_mirror(&project(&format!("{origin}/app.git"))).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::Clone { .. }), "{err:?}");
    // The forge's origin got the token (that is where it belongs) ...
    assert!(carried_token(&first_seen), "{:?}", first_seen.lock().unwrap());
    // ... and nothing reached the other server, least of all the token.
    assert!(!carried_token(&second_seen), "the token followed the redirect: {:?}", second_seen.lock().unwrap());
    assert!(second_seen.lock().unwrap().is_empty(), "{:?}", second_seen.lock().unwrap());
}

/// libgit2 does follow a redirect to the same host name on another port;
/// there the callback is asked for the new URL and refuses, since "the
/// forge" is its exact origin (scheme, host and port).
#[tokio::test(flavor = "multi_thread")]
async fn the_callback_refuses_the_target_of_a_redirect() {
    let (second, second_port) = listen().await;
    let second_seen = serve(second, Mode::AskForAuth);
    let (first, first_port) = listen().await;
    let first_seen = serve(first, Mode::Redirect { to: format!("http://127.0.0.1:{second_port}") });
    let origin = format!("http://127.0.0.1:{first_port}");

    let root = tempfile::tempdir().unwrap();
    let err = workspaces(root.path(), &origin).ensure_mirror(&project(&format!("{origin}/app.git"))).await.unwrap_err();
    // The second server was asked (libgit2 followed) but never got the token.
    assert!(!second_seen.lock().unwrap().is_empty(), "the redirect was not followed this time");
    assert!(!carried_token(&second_seen), "the token reached the redirect's target: {:?}", second_seen.lock().unwrap());
    assert!(!carried_token(&first_seen));
    assert!(!first_seen.lock().unwrap().is_empty());
    assert!(matches!(err, paid_core::Error::Clone { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing to send the forge token"), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{second_port}")), "{err}");
}

/// A project may clone from an allowlisted host, but the token stays with
/// the forge: a remote there that asks for credentials gets a refusal.
#[tokio::test(flavor = "multi_thread")]
async fn an_allowlisted_clone_host_never_gets_the_token() {
    let (mirror, mirror_port) = listen().await;
    let mirror_seen = serve(mirror, Mode::AskForAuth);
    let url = format!("http://127.0.0.1:{mirror_port}/app.git");

    // The forge is github.com (the default); the project allowlists the mirror.
    let root = tempfile::tempdir().unwrap();
    let ws = GitWorkspaces::new(GitWorkspacesConfig::new(root.path()).token(TOKEN.to_string().into()));
    let mut allowed = project(&url);
    allowed.settings.allowed_clone_hosts = vec!["127.0.0.1".into()];
    allowed.validate().unwrap();
    let err = ws.ensure_mirror(&allowed).await.unwrap_err();
    assert!(!mirror_seen.lock().unwrap().is_empty(), "the allowlisted host was cloned from");
    assert!(!carried_token(&mirror_seen), "the token left the forge: {:?}", mirror_seen.lock().unwrap());
    assert!(matches!(err, paid_core::Error::Clone { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing to send the forge token"), "{err}");
    assert!(err.to_string().contains("https://github.com"), "{err}");
}

/// Without the allowlist, a clone URL off the forge's host is refused
/// before anything connects, naming the setting; ssh URLs too.
#[tokio::test(flavor = "multi_thread")]
async fn a_clone_url_off_the_forge_host_is_refused_before_connecting() {
    let (other, other_port) = listen().await;
    let other_seen = serve(other, Mode::AskForAuth);
    let root = tempfile::tempdir().unwrap();
    let ws = GitWorkspaces::new(GitWorkspacesConfig::new(root.path()).token(TOKEN.to_string().into()));

    let err = ws.ensure_mirror(&project(&format!("http://127.0.0.1:{other_port}/app.git"))).await.unwrap_err();
    assert!(
        matches!(&err, paid_core::Error::InvalidInput { what, message }
            if what == "project.clone_url" && message.contains("allowed_clone_hosts")),
        "{err:?}"
    );
    assert!(other_seen.lock().unwrap().is_empty());
    let err = ws.ensure_mirror(&project("git@github.com:octo/app.git")).await.unwrap_err();
    assert!(matches!(&err, paid_core::Error::InvalidInput { message, .. } if message.contains("ssh")), "{err:?}");
    // Nothing was made on disk for them either.
    assert!(!root.path().join("mirrors/octo/app.git").exists());
}

/// The REST client (octocrab without its `follow-redirect` feature) returns
/// a redirect as an answer: the API token is never sent after it.
#[tokio::test(flavor = "multi_thread")]
async fn the_rest_client_does_not_follow_redirects() {
    let (second, second_port) = listen().await;
    let second_seen = serve(second, Mode::AskForAuth);
    let (first, first_port) = listen().await;
    let first_seen = serve(first, Mode::Redirect { to: format!("http://127.0.0.1:{second_port}") });

    let forge = GitHubForge::new(
        GitHubConfig::new()
            .base_uri(format!("http://127.0.0.1:{first_port}"))
            .token(TOKEN.to_string().into())
            .retry(RetryPolicy::none()),
    )
    .unwrap();
    let err = forge.login().await.unwrap_err();
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(carried_token(&first_seen), "the API itself got the token");
    assert!(second_seen.lock().unwrap().is_empty(), "the redirect was followed: {:?}", second_seen.lock().unwrap());
}
