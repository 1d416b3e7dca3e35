//! Planning: sub-issues under a parent, through GitHub's sub-issue API or a
//! task list where that API is missing; idempotent per key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use paid_core::ports::forge::{SubIssueLink, SubIssueRequest};
use paid_core::{Forge, RepoRef};
use paid_github::fake::{FakeConfig, FakeGitHub, SubIssueSupport};
use paid_github::{GitHubConfig, GitHubForge};
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
    let github = FakeGitHub::start_with(FakeConfig::new().sub_issues(support)).await.unwrap();
    github.add_issue("octo", "app", 1, "Big feature", "We want it all.", "alice", &["paid-plan"]);
    let forge = GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).per_page(2)).unwrap();
    (github, Arc::new(forge))
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
async fn without_the_sub_issue_api_a_task_list_links_them() {
    for support in [SubIssueSupport::NotFound, SubIssueSupport::Disabled] {
        let (github, forge) = setup(support).await;
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
        assert_eq!(github.issue_labels("octo", "app", 3), vec!["paid-build"]);
    }
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
