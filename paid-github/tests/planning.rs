//! Planning: sub-issues under a parent, through GitHub's sub-issue API or,
//! for a forge configured without it, a task list; idempotent per key.
//! Errors of the sub-issue API are errors, never a reason to fall back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use paid_core::ports::forge::{SubIssueLink, SubIssueRequest};
use paid_core::{Forge, RepoRef};
use paid_github::fake::{FakeConfig, FakeGitHub, SubIssueSupport};
use paid_github::{Capabilities, GitHubConfig, GitHubForge, RetryPolicy, SharedToken};
use pretty_assertions::assert_eq;

fn req(key: &str, title: &str) -> SubIssueRequest {
    SubIssueRequest {
        repo: RepoRef::new("octo", "app"),
        parent: 1,
        title: title.into(),
        body: format!("Acceptance: {title} works."),
        labels: vec!["paid-build".into()],
        key: key.into(),
    }
}

async fn setup(support: SubIssueSupport) -> (FakeGitHub, Arc<dyn Forge>) {
    setup_with(support, Capabilities::new()).await
}

async fn setup_with(support: SubIssueSupport, caps: Capabilities) -> (FakeGitHub, Arc<dyn Forge>) {
    let github = FakeGitHub::start_with(FakeConfig::new().sub_issues(support)).await.unwrap();
    github.add_issue("octo", "app", 1, "Big feature", "We want it all.", "alice", &["paid-plan"]);
    let config = GitHubConfig::new().base_uri(github.base_url()).per_page(2).capabilities(caps);
    (github, Arc::new(GitHubForge::new(config).unwrap()))
}

fn sub_issue_calls(github: &FakeGitHub) -> usize {
    github.requests().iter().filter(|r| r.path.ends_with("/sub_issues")).count()
}

#[tokio::test]
async fn sub_issues_are_created_labeled_and_linked_once() {
    let (github, forge) = setup(SubIssueSupport::Enabled).await;
    let a = forge.create_sub_issue(&req("run-1:0", "Parser")).await.unwrap();
    let b = forge.create_sub_issue(&req("run-1:1", "Printer")).await.unwrap();
    assert_eq!((a.number, a.link, a.created), (2, SubIssueLink::SubIssue, true));
    assert_eq!((b.number, b.link, b.created), (3, SubIssueLink::SubIssue, true));
    assert_eq!(a.url, format!("{}/octo/app/issues/2", github.base_url()));
    assert_eq!(github.sub_issues("octo", "app", 1), vec![2, 3]);
    assert_eq!(github.issue_labels("octo", "app", 2), vec!["paid-build"]);
    let body = github.issue_body("octo", "app", 2).unwrap();
    assert!(
        body.starts_with("Acceptance: Parser works.") && body.contains("<!-- paid:sub-issue:run-1:0 -->"),
        "{body}"
    );

    // A retry (or a resumed planning run) finds them again: nothing is duplicated.
    let again = forge.create_sub_issue(&req("run-1:0", "Parser")).await.unwrap();
    assert_eq!((again.number, again.link, again.created), (2, SubIssueLink::SubIssue, false));
    assert_eq!(github.sub_issues("octo", "app", 1), vec![2, 3]);
    assert_eq!(github.issue_count("octo", "app"), 3);
    assert_eq!(github.issue_body("octo", "app", 1).unwrap(), "We want it all.", "the parent body is untouched");
}

#[tokio::test]
async fn a_forge_configured_without_sub_issues_links_them_with_a_task_list() {
    for support in [SubIssueSupport::NotFound, SubIssueSupport::Enabled] {
        let (github, forge) = setup_with(support, Capabilities::new().sub_issues(false)).await;
        let a = forge.create_sub_issue(&req("k:0", "Parser")).await.unwrap();
        let b = forge.create_sub_issue(&req("k:1", "Printer\nsecond line")).await.unwrap();
        assert_eq!((a.number, a.link, a.created), (2, SubIssueLink::TaskList, true), "{support:?}");
        assert_eq!(b.link, SubIssueLink::TaskList);
        let again = forge.create_sub_issue(&req("k:0", "Parser")).await.unwrap();
        assert_eq!((again.number, again.created), (2, false));
        assert_eq!(
            github.issue_body("octo", "app", 1).unwrap(),
            "We want it all.\n- [ ] #2 Parser\n- [ ] #3 Printer second line",
            "{support:?}"
        );
        assert!(github.sub_issues("octo", "app", 1).is_empty());
        assert_eq!(sub_issue_calls(&github), 0, "the sub-issue API is not even tried");
        assert_eq!(github.issue_labels("octo", "app", 3), vec!["paid-build"]);
    }
}

#[tokio::test]
async fn with_sub_issues_on_a_404_of_the_api_is_an_error_not_a_task_list() {
    let (github, forge) = setup(SubIssueSupport::NotFound).await;
    let err = forge.create_sub_issue(&req("k:0", "Parser")).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("404") && message.contains("Capabilities::sub_issues(false)"), "{message}");
    assert_eq!(github.issue_body("octo", "app", 1).unwrap(), "We want it all.", "no task list behind our back");
}

#[tokio::test]
async fn a_repository_that_is_gone_is_an_error_not_a_task_list() {
    let (github, forge) = setup(SubIssueSupport::Enabled).await;
    let missing = SubIssueRequest { repo: RepoRef::new("octo", "gone"), ..req("k:0", "Parser") };
    let err = forge.create_sub_issue(&missing).await.unwrap_err();
    assert!(matches!(&err, paid_core::Error::NotFound { entity: "repository", id } if id == "octo/gone"), "{err:?}");
    assert_eq!(sub_issue_calls(&github), 0);
}

#[tokio::test]
async fn a_revoked_token_is_an_error_not_a_task_list() {
    let github = FakeGitHub::start_with(FakeConfig::new().token("ghp_ok")).await.unwrap();
    github.add_issue("octo", "app", 1, "Big feature", "We want it all.", "alice", &["paid-plan"]);
    let token = SharedToken::new(Some("ghp_ok".to_string().into()));
    let forge = GitHubForge::new(
        GitHubConfig::new().base_uri(github.base_url()).retry(RetryPolicy::none()).token_source(Arc::new(token)),
    )
    .unwrap();
    assert_eq!(forge.create_sub_issue(&req("k:0", "Parser")).await.unwrap().link, SubIssueLink::SubIssue);

    github.set_token(Some("ghp_other"));
    let err = Forge::create_sub_issue(&forge, &req("k:1", "Printer")).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("401 Bad credentials") && err.to_string().contains("revoked"), "{err}");
    assert_eq!(github.sub_issues("octo", "app", 1), vec![2]);
    assert_eq!(github.issue_body("octo", "app", 1).unwrap(), "We want it all.");
}

#[tokio::test]
async fn sub_issues_disabled_on_the_repository_are_not_supported() {
    let (_github, forge) = setup(SubIssueSupport::Disabled).await;
    let err = forge.create_sub_issue(&req("k:0", "Parser")).await.unwrap_err();
    assert!(matches!(&err, paid_core::Error::NotSupported { what } if what.contains("disabled")), "{err:?}");
    assert!(err.to_string().contains("Capabilities::sub_issues(false)"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_forge_without_sub_issues_or_task_lists_reports_not_supported_before_any_request() {
    let caps = Capabilities::new().sub_issues(false).task_lists(false);
    let github = FakeGitHub::start().await.unwrap();
    let forge = GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).capabilities(caps)).unwrap();
    assert_eq!(forge.capabilities(), caps);
    let err = Forge::create_sub_issue(&forge, &req("k:0", "Parser")).await.unwrap_err();
    assert!(matches!(&err, paid_core::Error::NotSupported { what } if what.contains("octo/app#1")), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(github.request_count(), 0);
}

#[tokio::test]
async fn a_missing_parent_or_a_bad_key_is_an_error() {
    let (_github, forge) = setup(SubIssueSupport::NotFound).await;
    let err = forge.create_sub_issue(&SubIssueRequest { parent: 99, ..req("k", "x") }).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::NotFound { entity: "issue", .. }), "{err:?}");
    let err = forge.create_sub_issue(&req("", "x")).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::InvalidInput { .. }), "{err:?}");
}

/// A forge that does not override the port's default method says so.
#[tokio::test]
async fn the_port_default_is_not_supported() {
    struct Minimal;
    #[async_trait::async_trait]
    impl Forge for Minimal {
        async fn poll_triggered(&self, _: &paid_core::PollRequest) -> paid_core::Result<Vec<paid_core::ForgeIssue>> {
            Ok(vec![])
        }
        async fn issue(&self, _: &RepoRef, n: u64) -> paid_core::Result<paid_core::ForgeIssue> {
            Err(paid_core::Error::NotFound { entity: "issue", id: n.to_string() })
        }
        async fn upsert_comment(&self, _: &paid_core::CommentRequest) -> paid_core::Result<u64> {
            Ok(0)
        }
        async fn set_labels(&self, _: &paid_core::LabelChange) -> paid_core::Result<()> {
            Ok(())
        }
        async fn find_or_create_pr(&self, _: &paid_core::PrRequest) -> paid_core::Result<paid_core::PullRequest> {
            Err(paid_core::Error::Cancelled)
        }
    }
    let err = Minimal.create_sub_issue(&req("k", "x")).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("does not support creating sub-issues"), "{err}");
}
