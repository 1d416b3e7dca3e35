//! The [`Forge`] conformance suite.
//!
//! A backend's test seeds a repository with three open issues and a pushed
//! branch, describes them in a [`ForgeFixture`], and calls [`run_all`]. Each
//! function uses its own markers, so they can run one after another on one
//! fixture. The PR test creates one PR from `fixture.head`.

#![allow(clippy::expect_used, reason = "a conformance failure should fail the calling test loudly")]

use std::sync::Arc;

use crate::{
    CommentRequest, Error, Forge, LabelChange, PollRequest, PrFeedbackRequest, PrRequest, PrState, RepoRef, Votes,
};

/// What the backend's test seeded.
pub struct ForgeFixture {
    /// The forge under test.
    pub forge: Arc<dyn Forge>,
    /// The repository holding the issues.
    pub repo: RepoRef,
    /// An open issue labeled `paid-build`, opened by `alice`, titled
    /// `Build me`.
    pub build_issue: u64,
    /// An open issue labeled `paid-plan`.
    pub plan_issue: u64,
    /// An open issue with neither label.
    pub other_issue: u64,
    /// A branch that exists on the remote, with a commit not on `base`.
    pub head: String,
    /// The base branch for PRs.
    pub base: String,
}

impl std::fmt::Debug for ForgeFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeFixture").field("repo", &self.repo).field("head", &self.head).finish_non_exhaustive()
    }
}

/// Every test of the suite, in order.
pub async fn run_all(f: &ForgeFixture) {
    polls_issues_carrying_any_trigger_label(f).await;
    reads_one_issue(f).await;
    missing_issue_is_not_found(f).await;
    comment_with_a_marker_is_edited_in_place(f).await;
    labels_are_added_and_removed(f).await;
    pull_request_is_created_once_per_head_branch(f).await;
    pr_feedback_of_an_open_pr_without_trusted_authors(f).await;
    closed_issues_lists_only_closed_ones(f).await;
}

/// `poll_triggered` returns open issues carrying **any** of the labels,
/// each once, and nothing else.
pub async fn polls_issues_carrying_any_trigger_label(f: &ForgeFixture) {
    let req = PollRequest { repo: f.repo.clone(), labels: vec!["paid-build".into(), "paid-plan".into()] };
    let mut numbers: Vec<u64> = f.forge.poll_triggered(&req).await.expect("poll").iter().map(|i| i.number).collect();
    numbers.sort_unstable();
    let mut expected = vec![f.build_issue, f.plan_issue];
    expected.sort_unstable();
    assert_eq!(numbers, expected, "poll must be any-of, without duplicates");

    let only_build = PollRequest { repo: f.repo.clone(), labels: vec!["paid-build".into()] };
    let issues = f.forge.poll_triggered(&only_build).await.expect("poll");
    assert_eq!(issues.iter().map(|i| i.number).collect::<Vec<_>>(), vec![f.build_issue]);
}

/// `issue` returns the issue's fields as the forge has them.
pub async fn reads_one_issue(f: &ForgeFixture) {
    let issue = f.forge.issue(&f.repo, f.build_issue).await.expect("issue");
    assert_eq!(issue.number, f.build_issue);
    assert_eq!(issue.title, "Build me");
    assert_eq!(issue.author, "alice");
    assert!(issue.labels.contains(&"paid-build".to_string()), "{:?}", issue.labels);
    assert_eq!(issue.state, crate::IssueState::Open);
    assert!(!issue.url.is_empty());
}

/// An issue that does not exist is [`Error::NotFound`].
pub async fn missing_issue_is_not_found(f: &ForgeFixture) {
    let err = f.forge.issue(&f.repo, 987_654).await.expect_err("no such issue");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

/// `upsert_comment` with one marker creates one comment and then edits it.
pub async fn comment_with_a_marker_is_edited_in_place(f: &ForgeFixture) {
    let marker = "<!-- paid:conformance:comment -->".to_string();
    let first =
        CommentRequest { repo: f.repo.clone(), number: f.build_issue, marker: marker.clone(), body: "one".into() };
    let id1 = f.forge.upsert_comment(&first).await.expect("create comment");
    let second = CommentRequest { body: "two".into(), ..first.clone() };
    let id2 = f.forge.upsert_comment(&second).await.expect("edit comment");
    assert_eq!(id1, id2, "the marked comment must be edited, not duplicated");
    let other = CommentRequest { marker: "<!-- paid:conformance:other -->".into(), ..first };
    let id3 = f.forge.upsert_comment(&other).await.expect("second marker");
    assert_ne!(id1, id3, "another marker is another comment");
}

/// `set_labels` adds and removes; removing an absent label is not an error.
pub async fn labels_are_added_and_removed(f: &ForgeFixture) {
    let change = LabelChange {
        repo: f.repo.clone(),
        number: f.other_issue,
        add: vec!["paid-in-progress".into()],
        remove: vec!["never-there".into()],
    };
    f.forge.set_labels(&change).await.expect("add");
    let labels = f.forge.issue(&f.repo, f.other_issue).await.expect("issue").labels;
    assert!(labels.contains(&"paid-in-progress".to_string()), "{labels:?}");
    let change = LabelChange {
        repo: f.repo.clone(),
        number: f.other_issue,
        add: vec!["paid-done".into()],
        remove: vec!["paid-in-progress".into()],
    };
    f.forge.set_labels(&change).await.expect("move");
    let labels = f.forge.issue(&f.repo, f.other_issue).await.expect("issue").labels;
    assert!(labels.contains(&"paid-done".to_string()), "{labels:?}");
    assert!(!labels.contains(&"paid-in-progress".to_string()), "{labels:?}");
}

/// `find_or_create_pr` creates the PR once; the second call finds it.
pub async fn pull_request_is_created_once_per_head_branch(f: &ForgeFixture) {
    let req = PrRequest {
        repo: f.repo.clone(),
        head: f.head.clone(),
        base: f.base.clone(),
        title: format!("Fix #{}: Build me", f.build_issue),
        body: format!("Closes #{}", f.build_issue),
        labels: vec!["paid-generated".into()],
    };
    let first = f.forge.find_or_create_pr(&req).await.expect("create PR");
    assert!(first.created);
    assert_eq!(first.head, f.head);
    let second = f.forge.find_or_create_pr(&req).await.expect("find PR");
    assert!(!second.created, "the second call must find the first PR");
    assert_eq!(second.number, first.number);
    assert_eq!(second.url, first.url);
}

/// `pr_feedback` on the open PR (created by
/// [`pull_request_is_created_once_per_head_branch`]) reports it open, and
/// with no trusted authors returns no review text and no votes.
pub async fn pr_feedback_of_an_open_pr_without_trusted_authors(f: &ForgeFixture) {
    let req = PrRequest {
        repo: f.repo.clone(),
        head: f.head.clone(),
        base: f.base.clone(),
        title: format!("Fix #{}: Build me", f.build_issue),
        body: format!("Closes #{}", f.build_issue),
        labels: vec!["paid-generated".into()],
    };
    let pr = f.forge.find_or_create_pr(&req).await.expect("find PR");
    let feedback = f
        .forge
        .pr_feedback(&PrFeedbackRequest {
            repo: f.repo.clone(),
            number: pr.number,
            trusted_authors: Vec::new(),
            trusted_author_ids: Vec::new(),
        })
        .await
        .expect("pr_feedback");
    assert_eq!(feedback.state, PrState::Open);
    assert!(feedback.review_comments.is_empty(), "untrusted text returned: {:?}", feedback.review_comments);
    assert_eq!(feedback.votes, Votes::default());
}

/// `closed_issues` never returns an open issue (the fixture's issues are all
/// open).
pub async fn closed_issues_lists_only_closed_ones(f: &ForgeFixture) {
    let since = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let closed = f.forge.closed_issues(&f.repo, since).await.expect("closed_issues");
    assert!(closed.iter().all(|i| i.state == crate::IssueState::Closed), "{closed:?}");
    for open in [f.build_issue, f.plan_issue, f.other_issue] {
        assert!(!closed.iter().any(|i| i.number == open), "open issue #{open} listed as closed");
    }
}
