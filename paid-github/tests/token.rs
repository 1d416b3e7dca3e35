//! The forge's token: checked before it is relied on
//! (`GitHubForge::check_token`), and read from a token source on every
//! request, so a rotated token is used from the next request on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use paid_core::{CommentRequest, Forge, RepoRef};
use paid_github::fake::{FakeConfig, FakeGitHub};
use paid_github::{Error, GitHubConfig, GitHubForge, RetryPolicy, SharedToken};
use pretty_assertions::assert_eq;
use serde_json::json;

const TOKEN: &str = "ghp_current_0123456789";

fn app() -> RepoRef {
    RepoRef::new("octo", "app")
}

/// A fake accepting `TOKEN` as `octocat`, with `octo/app` and an issue.
async fn github_with(config: FakeConfig) -> FakeGitHub {
    let github = FakeGitHub::start_with(config.token(TOKEN).login("octocat")).await.unwrap();
    github.add_issue("octo", "app", 1, "Fix the build", "It fails.", "alice", &["paid-build"]);
    github
}

fn forge(github: &FakeGitHub, token: &str) -> GitHubForge {
    let config = GitHubConfig::new().base_uri(github.base_url()).retry(RetryPolicy::none());
    GitHubForge::new(config.token(token.to_string().into())).unwrap()
}

fn paths(github: &FakeGitHub) -> Vec<String> {
    github.requests().iter().map(|r| format!("{} {} {}", r.method, r.path, r.status)).collect()
}

#[tokio::test]
async fn a_classic_token_with_the_repo_scope_passes_and_says_who_it_is() {
    let github = github_with(FakeConfig::new().scopes(&["repo", "workflow"])).await;
    let check = forge(&github, TOKEN).check_token(&[app()]).await.unwrap();
    assert_eq!(
        serde_json::to_value(&check).unwrap(),
        json!({
            "login": "octocat",
            "scopes": ["repo", "workflow"],
            "repositories": ["octo/app"],
            "warnings": [],
            "rate_limit_remaining": 4997,
        })
    );
    assert_eq!(paths(&github), vec!["GET /user 200", "GET /repos/octo/app/issues 200", "GET /repos/octo/app 200"]);
}

#[tokio::test]
async fn a_fine_grained_token_reports_no_scopes_and_is_checked_on_the_repositories() {
    let github = github_with(FakeConfig::new()).await;
    let check = forge(&github, TOKEN).check_token(&[app()]).await.unwrap();
    assert_eq!((check.login.as_deref(), check.scopes.as_ref()), (Some("octocat"), None));
    assert_eq!(
        check.warnings,
        vec!["the token reports no scopes (fine-grained or app token); repository access was checked directly"]
    );
    assert_eq!(check.repositories, vec!["octo/app"]);
}

#[tokio::test]
async fn public_repo_alone_passes_with_a_warning() {
    let github = github_with(FakeConfig::new().scopes(&["public_repo"])).await;
    let check = forge(&github, TOKEN).check_token(&[app()]).await.unwrap();
    assert_eq!(check.warnings, vec!["the token has `public_repo` only: private repositories are out of reach"]);
}

#[tokio::test]
async fn a_token_without_the_repo_scope_is_refused_naming_the_scope() {
    let github = github_with(FakeConfig::new().scopes(&["gist", "read:user"])).await;
    let err = forge(&github, TOKEN).check_token(&[app()]).await.unwrap_err();
    assert!(
        matches!(&err, Error::MissingScope { scope: "repo", granted } if granted == &["gist", "read:user"]),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("lacks the `repo` scope (it has: gist, read:user)"), "{message}");
    let none = github_with(FakeConfig::new().scopes(&[])).await;
    let err = forge(&none, TOKEN).check_token(&[]).await.unwrap_err();
    assert!(err.to_string().contains("(it has: none)"), "{err}");
}

#[tokio::test]
async fn an_invalid_or_revoked_token_is_refused_as_such() {
    let github = github_with(FakeConfig::new().scopes(&["repo"])).await;
    let err = forge(&github, "ghp_revoked").check_token(&[app()]).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("401 Bad credentials") && message.contains("revoked"), "{message}");
    assert_eq!(paths(&github), vec!["GET /user 401"], "a 401 is not retried");
}

#[tokio::test]
async fn no_token_at_all_is_a_configuration_error() {
    let github = github_with(FakeConfig::new()).await;
    let forge = GitHubForge::new(GitHubConfig::new().base_uri(github.base_url())).unwrap();
    let err = forge.check_token(&[app()]).await.unwrap_err();
    assert!(matches!(err, Error::Config { what: "token", .. }), "{err:?}");
    assert_eq!(github.request_count(), 0);
}

#[tokio::test]
async fn a_repository_the_token_cannot_see_is_not_found() {
    let github = github_with(FakeConfig::new().scopes(&["repo"])).await;
    let err = forge(&github, TOKEN).check_token(&[app(), RepoRef::new("octo", "secret")]).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { entity: "repository", id, .. } if id == "octo/secret"), "{err:?}");
    assert!(err.to_string().contains("check the repository name and the token's access"), "{err}");
}

#[tokio::test]
async fn read_only_access_is_refused() {
    let github = github_with(FakeConfig::new()).await;
    assert!(github.set_push_access("octo", "app", false));
    let err = forge(&github, TOKEN).check_token(&[app()]).await.unwrap_err();
    assert!(matches!(&err, Error::NoPushAccess { repo } if repo == "octo/app"), "{err:?}");
    assert!(err.to_string().contains("can read octo/app but not push to it"), "{err}");
}

#[tokio::test]
async fn a_rotated_token_is_used_from_the_next_request_without_rebuilding_the_forge() {
    let github = github_with(FakeConfig::new()).await;
    let token = SharedToken::new(Some(TOKEN.to_string().into()));
    let forge: Arc<dyn Forge> = Arc::new(
        GitHubForge::new(
            GitHubConfig::new()
                .base_uri(github.base_url())
                .retry(RetryPolicy::none())
                .token_source(Arc::new(token.clone())),
        )
        .unwrap(),
    );
    let comment =
        |body: &str| CommentRequest { repo: app(), number: 1, marker: "<!-- paid:run:1 -->".into(), body: body.into() };
    forge.upsert_comment(&comment("first")).await.unwrap();

    // The operator rotates the token on GitHub: the old one is refused ...
    github.set_token(Some("ghp_rotated_9876543210"));
    let err = forge.issue(&app(), 1).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("401 Bad credentials"), "{err}");
    // ... and once the daemon stores the new one, the next request carries it.
    assert!(token.set(Some("ghp_rotated_9876543210".to_string().into())));
    assert_eq!(forge.issue(&app(), 1).await.unwrap().number, 1);
    forge.upsert_comment(&comment("second")).await.unwrap();

    let comments = github.comments("octo", "app", 1);
    assert_eq!(comments.len(), 1, "the comment was edited, not duplicated: {comments:?}");
    assert!(comments[0].body.starts_with("second"));
    let users: Vec<String> = paths(&github).into_iter().filter(|p| p.starts_with("GET /user ")).collect();
    assert_eq!(users, vec!["GET /user 200", "GET /user 200"], "the login is asked again for the new token");
}
