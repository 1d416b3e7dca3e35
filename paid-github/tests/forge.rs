//! `GitHubForge` against the fake GitHub server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paid_core::{CommentRequest, Forge, IssueState, LabelChange, PollRequest, PrRequest, RepoRef};
use paid_github::fake::{FakeConfig, FakeGitHub};
use paid_github::{GitHubConfig, GitHubForge, RetryPolicy};
use pretty_assertions::assert_eq;

fn repo() -> RepoRef {
    RepoRef::new("octo", "app")
}

fn forge(github: &FakeGitHub, per_page: u8) -> GitHubForge {
    GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).per_page(per_page)).unwrap()
}

/// A bare HTTP/1.1 GET, returning the whole response as text.
async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

fn poll(labels: &[&str]) -> PollRequest {
    PollRequest { repo: repo(), labels: labels.iter().map(|l| l.to_string()).collect() }
}

fn pr(head: &str, title: &str) -> PrRequest {
    PrRequest {
        repo: repo(),
        head: head.into(),
        base: "main".into(),
        title: title.into(),
        body: "Closes #1".into(),
        labels: vec!["paid-generated".into()],
    }
}

#[tokio::test]
async fn poll_queries_each_label_follows_pages_dedupes_and_skips_pull_requests() {
    let github = FakeGitHub::start().await.unwrap();
    for n in 1..=5 {
        github.add_issue("octo", "app", n, &format!("Build {n}"), "", "alice", &["paid-build"]);
    }
    github.add_issue("octo", "app", 4, "Both", "body", "alice", &["paid-build", "paid-plan"]);
    github.add_issue("octo", "app", 6, "Plan", "", "bob", &["paid-plan"]);
    github.add_issue("octo", "app", 7, "Unlabeled", "", "alice", &[]);
    github.add_issue("octo", "app", 8, "Closed", "", "alice", &["paid-build"]);
    assert!(github.close_issue("octo", "app", 8));
    let forge = forge(&github, 2);
    // A pull request carrying the label shows up in the issues API; it must be skipped.
    let opened = forge
        .find_or_create_pr(&PrRequest { labels: vec!["paid-build".into()], ..pr("feature", "A PR") })
        .await
        .unwrap();
    assert_eq!(opened.number, 9);

    let issues = forge.poll_triggered(&poll(&["paid-build", "paid-plan"])).await.unwrap();
    let numbers: Vec<u64> = issues.iter().map(|i| i.number).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6]);
    let four = &issues[3];
    assert_eq!(four.title, "Both");
    assert_eq!(four.body, "body");
    assert_eq!(four.author, "alice");
    assert_eq!(four.labels, vec!["paid-build", "paid-plan"]);
    assert_eq!(four.state, IssueState::Open);
    assert_eq!(four.url, format!("{}/octo/app/issues/4", github.base_url()));

    // paid-build: 5 issues + 1 PR at 2 per page = 3 pages, following GitHub's
    // `link` to /repositories/{id}/issues; paid-plan: 1 page. One label per query.
    let lists: Vec<String> = github
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/issues"))
        .map(|r| format!("{}?{}", r.path, r.query.clone().unwrap_or_default()))
        .collect();
    assert_eq!(lists.len(), 4, "{lists:#?}");
    assert!(lists[0].starts_with("/repos/octo/app/issues?state=open&labels=paid-build&per_page=2"), "{lists:#?}");
    assert!(lists[1].starts_with("/repositories/") && lists[1].ends_with("page=2"), "{lists:#?}");
    assert!(lists[2].ends_with("page=3"), "{lists:#?}");
    assert!(lists[3].contains("labels=paid-plan"), "{lists:#?}");
    assert!(lists.iter().all(|l| !l.contains("%2C") && !l.contains(',')), "labels are never comma-joined");
}

#[tokio::test]
async fn an_unchanged_poll_is_answered_from_etags_without_spending_rate_limit() {
    let github = FakeGitHub::start().await.unwrap();
    for n in 1..=5 {
        github.add_issue("octo", "app", n, "t", "", "alice", &["paid-build"]);
    }
    let forge = forge(&github, 2);
    let first = forge.poll_triggered(&poll(&["paid-build"])).await.unwrap();
    let spent = github.rate_limited_requests();
    assert_eq!(spent, 3);

    let second = forge.poll_triggered(&poll(&["paid-build"])).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(github.rate_limited_requests(), spent, "304s are free");
    assert_eq!(forge.stats().not_modified, 3);
    assert!(github.requests().iter().rev().take(3).all(|r| r.status == 304));

    // A change shows up at once.
    github.add_issue("octo", "app", 6, "new", "", "alice", &["paid-build"]);
    let third = forge.poll_triggered(&poll(&["paid-build"])).await.unwrap();
    assert_eq!(third.len(), 6);
    let rate = forge.rate_limit().expect("rate-limit headers");
    assert_eq!(rate.limit, 5000);
    assert_eq!(rate.remaining, 5000 - github.rate_limited_requests());
}

#[tokio::test]
async fn issue_reads_one_issue_and_unknown_ones_are_not_found() {
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue("octo", "app", 3, "Crash", "Steps...", "carol", &["bug"]);
    let forge = forge(&github, 100);
    let issue = forge.issue(&repo(), 3).await.unwrap();
    assert_eq!((issue.number, issue.title.as_str(), issue.author.as_str()), (3, "Crash", "carol"));
    assert_eq!(issue.labels, vec!["bug"]);
    match forge.issue(&repo(), 99).await.unwrap_err() {
        paid_core::Error::NotFound { entity, id } => assert_eq!((entity, id.as_str()), ("issue", "octo/app#99")),
        other => panic!("{other:?}"),
    }
    let err = forge.issue(&RepoRef::new("octo", "nope"), 1).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn upsert_comment_edits_the_marked_comment_instead_of_adding_one() {
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue("octo", "app", 1, "t", "", "alice", &["paid-build"]);
    // Enough human comments that the run's comment sits on a later page.
    for i in 0..4 {
        github.add_comment("octo", "app", 1, "alice", &format!("human {i}")).unwrap();
    }
    let forge = forge(&github, 2);
    let marker = "<!-- paid:run:r1 -->";
    let req = |body: &str| CommentRequest { repo: repo(), number: 1, marker: marker.into(), body: body.into() };

    let id = forge.upsert_comment(&req("Working on it.")).await.unwrap();
    let again = forge.upsert_comment(&req("Done: PR #2.")).await.unwrap();
    assert_eq!(again, id);
    let comments = github.comments("octo", "app", 1);
    assert_eq!(comments.len(), 5);
    let ours = comments.last().unwrap();
    assert_eq!(ours.id, id);
    assert_eq!(ours.author, "paid-bot");
    assert_eq!(ours.body, format!("Done: PR #2.\n\n{marker}"), "the marker is appended once");
    assert_eq!(ours.edits, 1);
    assert!(comments[..4].iter().all(|c| c.edits == 0));

    // The same body again changes nothing and sends no edit.
    let patches = || github.requests().iter().filter(|r| r.method == "PATCH").count();
    let before = patches();
    assert_eq!(forge.upsert_comment(&req("Done: PR #2.")).await.unwrap(), id);
    assert_eq!(patches(), before);
    // A body that already carries the marker is kept as is.
    forge.upsert_comment(&req(&format!("{marker}\nFailed."))).await.unwrap();
    assert_eq!(github.comments("octo", "app", 1).last().unwrap().body, format!("{marker}\nFailed."));

    let err = forge.upsert_comment(&CommentRequest { number: 42, ..req("x") }).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::NotFound { entity: "issue", .. }), "{err:?}");
}

#[tokio::test]
async fn set_labels_adds_and_removes_ignoring_absent_ones() {
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue("octo", "app", 1, "t", "", "alice", &["paid-build", "bug"]);
    let forge = forge(&github, 100);
    let change = |add: &[&str], remove: &[&str]| LabelChange {
        repo: repo(),
        number: 1,
        add: add.iter().map(|s| s.to_string()).collect(),
        remove: remove.iter().map(|s| s.to_string()).collect(),
    };
    forge.set_labels(&change(&["paid-in-progress"], &["paid-build", "never-there"])).await.unwrap();
    assert_eq!(github.issue_labels("octo", "app", 1), vec!["bug", "paid-in-progress"]);
    forge.set_labels(&change(&["paid-done"], &["paid-in-progress"])).await.unwrap();
    forge.set_labels(&change(&["paid-done"], &["paid-in-progress"])).await.unwrap();
    assert_eq!(github.issue_labels("octo", "app", 1), vec!["bug", "paid-done"]);
    // Label names with spaces travel percent-encoded.
    forge.set_labels(&change(&["good first issue"], &[])).await.unwrap();
    forge.set_labels(&change(&[], &["good first issue"])).await.unwrap();
    assert_eq!(github.issue_labels("octo", "app", 1), vec!["bug", "paid-done"]);
}

#[tokio::test]
async fn find_or_create_pr_is_idempotent_per_head_branch() {
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue("octo", "app", 1, "Bug", "", "alice", &["paid-build"]);
    let forge = forge(&github, 100);
    let req = pr("paid/1-bug-abcdef", "Fix #1: Bug");

    let first = forge.find_or_create_pr(&req).await.unwrap();
    assert!(first.created);
    assert_eq!(first.number, 2);
    assert_eq!(first.head, "paid/1-bug-abcdef");
    assert_eq!(first.url, format!("{}/octo/app/pull/2", github.base_url()));
    let second = forge.find_or_create_pr(&req).await.unwrap();
    assert!(!second.created);
    assert_eq!((second.number, second.url.as_str()), (first.number, first.url.as_str()));

    let pulls = github.pull_requests("octo", "app");
    assert_eq!(pulls.len(), 1);
    let p = &pulls[0];
    assert_eq!((p.title.as_str(), p.body.as_str(), p.base.as_str()), ("Fix #1: Bug", "Closes #1", "main"));
    assert_eq!(p.labels, vec!["paid-generated"]);
    assert_eq!(p.state, "open");
    assert_eq!(p.html_url, first.url);
    // The fake serves a readable page at the PR's html_url.
    let page = http_get(&first.url).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Pull request #2 in octo/app: Fix #1: Bug") && page.contains("paid-generated"), "{page}");
    // Labels are added once; nothing is ever merged.
    let label_posts = github.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/labels")).count();
    assert_eq!(label_posts, 1);
    assert!(github.requests().iter().all(|r| !r.path.contains("merge")));

    // A PR for another branch is another PR.
    let other = forge.find_or_create_pr(&pr("paid/1-bug-fedcba", "Fix #1: Bug")).await.unwrap();
    assert!(other.created);
    assert_eq!(other.number, 3);
}

#[tokio::test]
async fn a_422_surfaces_as_a_typed_error_with_githubs_message() {
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue("octo", "app", 1, "Bug", "", "alice", &[]);
    let forge = forge(&github, 100);
    let err = forge.find_or_create_pr(&pr("paid/1-bug-abcdef", "")).await.unwrap_err();
    match &err {
        paid_core::Error::InvalidInput { what, message } => {
            assert_eq!(what, "GitHub request POST /repos/octo/app/pulls");
            assert!(message.contains("422 Validation Failed"), "{message}");
            assert!(message.contains("PullRequest.title missing_field"), "{message}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(github.pull_requests("octo", "app").is_empty());
    let rejected = github.requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(rejected.status, 422);
}

#[tokio::test]
async fn the_token_is_required_and_checked() {
    let github = FakeGitHub::start_with(FakeConfig::new().token("s3cret")).await.unwrap();
    github.add_issue("octo", "app", 1, "t", "", "alice", &["paid-build"]);

    let anonymous = forge(&github, 100);
    let err = anonymous.poll_triggered(&poll(&["paid-build"])).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("401"), "{err}");

    let wrong =
        GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).token("nope".to_string().into())).unwrap();
    let err = wrong.issue(&repo(), 1).await.unwrap_err();
    assert!(err.to_string().contains("Bad credentials") && err.to_string().contains("check the token"), "{err}");

    let right =
        GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).token("s3cret".to_string().into())).unwrap();
    assert_eq!(right.poll_triggered(&poll(&["paid-build"])).await.unwrap().len(), 1);
    // Pagination links keep the token: they are followed relative to the base.
    for n in 2..=5 {
        github.add_issue("octo", "app", n, "t", "", "alice", &["paid-build"]);
    }
    let paged = GitHubForge::new(
        GitHubConfig::new().base_uri(github.base_url()).token("s3cret".to_string().into()).per_page(2),
    )
    .unwrap();
    assert_eq!(paged.poll_triggered(&poll(&["paid-build"])).await.unwrap().len(), 5);
}

#[tokio::test]
async fn without_retries_server_errors_and_unreachable_hosts_are_retryable_errors() {
    let github = FakeGitHub::start().await.unwrap();
    github.add_issue("octo", "app", 1, "t", "", "alice", &["paid-build"]);
    let forge = GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).retry(RetryPolicy::none())).unwrap();
    github.fail_next(502, 1);
    let err = forge.poll_triggered(&poll(&["paid-build"])).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("502"), "{err}");
    // Retrying (the engine's job) then succeeds.
    assert_eq!(forge.poll_triggered(&poll(&["paid-build"])).await.unwrap().len(), 1);

    github.fail_next(429, 1);
    let err = forge.issue(&repo(), 1).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("retry after 1s"), "{err}");

    let base = github.base_url().to_string();
    drop(github);
    let gone = GitHubForge::new(GitHubConfig::new().base_uri(base).retry(RetryPolicy::none())).unwrap();
    let err = gone.issue(&repo(), 1).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn the_forge_needs_a_runtime_and_a_usable_base() {
    let err = GitHubForge::new(GitHubConfig::new()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let err = GitHubForge::new(GitHubConfig::new().base_uri("not a uri")).unwrap_err();
        assert!(matches!(err, paid_github::Error::Config { what: "base_uri", .. }), "{err:?}");
    });
}
