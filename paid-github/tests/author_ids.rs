//! Authors by immutable user id: the forge reports GitHub's numeric
//! `user.id` with every issue and with the review text it keeps, and trusts
//! review text and votes by id as well as by login.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paid_core::{Forge, PrRequest, RepoRef};
use paid_github::fake::FakeGitHub;
use paid_github::{FeedbackRequest, GitHubConfig, GitHubForge};
use pretty_assertions::assert_eq;

fn repo() -> RepoRef {
    RepoRef::new("octo", "app")
}

fn forge(github: &FakeGitHub) -> GitHubForge {
    GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).per_page(2)).unwrap()
}

#[tokio::test]
async fn issues_carry_their_authors_user_id_and_a_reregistered_login_shows_a_new_one() {
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue("octo", "app", 1, "Bug", "It breaks.", "alice", &["paid-build"]);
    let forge = forge(&github);
    let alice = github.user_id("alice");
    assert_eq!(github.user_id("ALICE"), alice, "one login, one account, whatever the case");

    let issue = forge.issue(&repo(), 1).await.unwrap();
    assert_eq!((issue.author.as_str(), issue.author_id), ("alice", Some(alice)));
    let polled = forge
        .poll_triggered(&paid_core::PollRequest { repo: repo(), labels: vec!["paid-build".into()] })
        .await
        .unwrap();
    assert_eq!(polled[0].author_id, Some(alice), "listed issues too");

    // The account is deleted and someone else registers "alice".
    github.set_user_id("alice", 31_337);
    let issue = forge.issue(&repo(), 1).await.unwrap();
    assert_eq!((issue.author.as_str(), issue.author_id), ("alice", Some(31_337)));
}

#[tokio::test]
async fn review_text_and_votes_are_trusted_by_id_or_login_and_carry_the_id() {
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue("octo", "app", 1, "Bug", "", "alice", &["paid-build"]);
    let forge = forge(&github);
    let pr = forge
        .find_or_create_pr(&PrRequest {
            repo: repo(),
            head: "paid/1-bug-abcdef".into(),
            base: "main".into(),
            title: "Fix #1: Bug".into(),
            body: "Closes #1".into(),
            labels: Vec::new(),
        })
        .await
        .unwrap()
        .number;
    let (o, r) = ("octo", "app");
    github.add_review_comment(o, r, pr, "alice", "src/lib.rs", 1, "by login", None).unwrap();
    github.add_review_comment(o, r, pr, "carol", "src/lib.rs", 2, "by id", None).unwrap();
    github.add_review_comment(o, r, pr, "mallory", "src/lib.rs", 3, "untrusted", None).unwrap();
    github.add_review(o, r, pr, "carol", "CHANGES_REQUESTED", "fix it").unwrap();
    github.add_reaction(o, r, pr, "carol", "+1").unwrap();
    github.add_reaction(o, r, pr, "mallory", "-1").unwrap();
    let carol = github.user_id("carol");

    let req = FeedbackRequest {
        repo: repo(),
        number: pr,
        trusted_authors: vec!["alice".into()],
        trusted_author_ids: vec![carol],
    };
    let fb = forge.pr_feedback(&req).await.unwrap();
    let comments: Vec<(String, Option<u64>, String)> = fb
        .threads
        .iter()
        .flat_map(|t| t.comments.iter().map(|c| (c.author.clone(), c.author_id, c.body.clone())))
        .collect();
    assert_eq!(
        comments,
        vec![
            ("alice".to_string(), Some(github.user_id("alice")), "by login".to_string()),
            ("carol".to_string(), Some(carol), "by id".to_string()),
        ]
    );
    assert_eq!(
        fb.reviews.iter().map(|r| (r.author.as_str(), r.author_id)).collect::<Vec<_>>(),
        [("carol", Some(carol))]
    );
    assert_eq!((fb.votes.up, fb.votes.down), (1, 0));
    assert_eq!(fb.excluded, 2, "mallory's comment and vote");

    // Through the port: the same, with the ids on the review comments.
    let port = Forge::pr_feedback(
        &forge,
        &paid_core::PrFeedbackRequest {
            repo: repo(),
            number: pr,
            trusted_authors: Vec::new(),
            trusted_author_ids: vec![carol],
        },
    )
    .await
    .unwrap();
    assert!(port.review_comments.iter().all(|c| c.author == "carol" && c.author_id == Some(carol)), "{port:?}");
    assert_eq!(port.review_comments.len(), 2, "{port:?}");

    // Carol's login taken by another account: nothing of hers counts by id.
    github.set_user_id("carol", 1);
    let fb = forge.pr_feedback(&req).await.unwrap();
    assert!(fb.threads.iter().all(|t| t.comments.iter().all(|c| c.author == "alice")), "{fb:?}");
    assert!(fb.reviews.is_empty());
    assert_eq!((fb.votes.up, fb.votes.down), (0, 0));
}
