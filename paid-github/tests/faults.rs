//! The client's layers against the fake's faults: retries with backoff,
//! rate limits waited out, metrics per endpoint and status, and 304s that
//! cost nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use paid_core::metrics::{GitHubCallLabels, Metrics, TokenIdLabels};
use paid_core::{Forge, PollRequest, RepoRef};
use paid_github::fake::{FakeFault, FakeGitHub};
use paid_github::{GitHubConfig, GitHubForge, RetryPolicy};
use pretty_assertions::assert_eq;

const ISSUES: &str = "GET /repos/{owner}/{repo}/issues";

fn repo() -> RepoRef {
    RepoRef::new("octo", "app")
}

fn poll() -> PollRequest {
    PollRequest { repo: repo(), labels: vec!["paid-build".into()] }
}

/// Fast backoff, so retried tests stay short; rate-limit waits are real.
fn quick() -> RetryPolicy {
    RetryPolicy::new()
        .delays(Duration::from_millis(10), Duration::from_millis(50))
        .max_rate_limit_wait(Duration::from_secs(5))
}

fn forge(github: &FakeGitHub, metrics: &Arc<Metrics>, policy: RetryPolicy) -> GitHubForge {
    GitHubForge::new(
        GitHubConfig::new()
            .base_uri(github.base_url())
            .per_page(2)
            .retry(policy)
            .metrics(metrics.clone())
            .token_id("ci-token"),
    )
    .unwrap()
}

fn calls(metrics: &Metrics, endpoint: &str, status: &str) -> u64 {
    metrics
        .github_api_calls_total
        .get_or_create(&GitHubCallLabels { endpoint: endpoint.into(), status: status.into() })
        .get()
}

fn statuses(github: &FakeGitHub) -> Vec<u16> {
    github.requests().iter().map(|r| r.status).collect()
}

async fn seeded(n: u64) -> FakeGitHub {
    let github = FakeGitHub::start().await.unwrap();
    for i in 1..=n {
        github.add_issue("octo", "app", i, &format!("Issue {i}"), "", "alice", &["paid-build"]);
    }
    github
}

#[tokio::test]
async fn pages_and_304s_are_counted_per_endpoint_and_304s_cost_no_rate_limit() {
    let github = seeded(5).await;
    let metrics = Arc::new(Metrics::default());
    let forge = forge(&github, &metrics, quick());

    // Three pages, each a rate-limited call.
    assert_eq!(forge.poll_triggered(&poll()).await.unwrap().len(), 5);
    assert_eq!(github.rate_limited_requests(), 3);
    assert_eq!(calls(&metrics, ISSUES, "200"), 3);
    let stats = forge.stats();
    assert_eq!((stats.requests, stats.rate_limited_calls, stats.not_modified), (3, 3, 0));

    // Nothing changed: three 304s, no rate-limited call anywhere.
    assert_eq!(forge.poll_triggered(&poll()).await.unwrap().len(), 5);
    assert_eq!(github.rate_limited_requests(), 3, "the fake charged nothing");
    assert_eq!(calls(&metrics, ISSUES, "304"), 3);
    assert_eq!(calls(&metrics, ISSUES, "200"), 3, "no new 200");
    let stats = forge.stats();
    assert_eq!((stats.requests, stats.rate_limited_calls, stats.not_modified), (6, 3, 3));
    let remaining =
        metrics.github_rate_limit_remaining.get_or_create(&TokenIdLabels { token_id: "ci-token".into() }).get();
    assert_eq!(remaining, 5000 - 3);

    // The families export under DESIGN §8's names.
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"paid_github_api_calls_total{endpoint="GET /repos/{owner}/{repo}/issues",status="304"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"paid_github_rate_limit_remaining{token_id="ci-token"} 4997"#), "{text}");
}

#[tokio::test]
async fn a_502_is_retried_and_the_poll_succeeds() {
    let github = seeded(1).await;
    let metrics = Arc::new(Metrics::default());
    let forge = forge(&github, &metrics, quick());
    github.fail_next(502, 1);
    assert_eq!(forge.poll_triggered(&poll()).await.unwrap().len(), 1);
    assert_eq!(statuses(&github), vec![502, 200]);
    assert_eq!((calls(&metrics, ISSUES, "502"), calls(&metrics, ISSUES, "200")), (1, 1));
    assert_eq!(forge.stats().retries, 1);

    // Retries are capped: a server that keeps failing gives an error the
    // engine does not retry on top, since this layer already did.
    github.fail_next(503, 10);
    let policy = quick().max_retries(2);
    let capped = GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).retry(policy)).unwrap();
    let err = capped.issue(&repo(), 1).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("503"), "{err}");
    assert!(matches!(err, paid_core::Error::RetriesExhausted { attempts: 3, .. }), "{err:?}");
    assert_eq!(capped.stats().requests, 3, "one try and two retries");
}

#[tokio::test]
async fn a_persistent_502_makes_the_documented_attempts_then_a_non_retryable_error() {
    let github = seeded(1).await;
    github.fail_always(FakeFault::Status(502));
    // The default policy (4 retries), with millisecond backoff.
    let policy = RetryPolicy::new().delays(Duration::from_millis(1), Duration::from_millis(2));
    assert_eq!(policy.attempts(), RetryPolicy::new().attempts());
    let forge = GitHubForge::new(GitHubConfig::new().base_uri(github.base_url()).retry(policy)).unwrap();

    let err = forge.issue(&repo(), 1).await.unwrap_err();
    assert_eq!(statuses(&github), vec![502; 5], "1 + RetryPolicy::new()'s 4 retries");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(matches!(err, paid_core::Error::RetriesExhausted { attempts: 5, .. }), "{err:?}");
    assert!(matches!(err.by_meaning(), paid_core::Error::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("502") && err.to_string().contains("5 attempts"), "{err}");

    // Once GitHub is back, the same forge works again.
    github.recover();
    assert_eq!(forge.issue(&repo(), 1).await.unwrap().number, 1);
}

#[tokio::test]
async fn a_secondary_rate_limit_is_waited_out_for_its_retry_after() {
    let github = seeded(1).await;
    let metrics = Arc::new(Metrics::default());
    let forge = forge(&github, &metrics, quick());
    github.inject(FakeFault::SecondaryRateLimit { retry_after: 1 }, 1);
    let started = Instant::now();
    assert_eq!(forge.issue(&repo(), 1).await.unwrap().number, 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert_eq!(statuses(&github), vec![403, 200]);
    let stats = forge.stats();
    assert_eq!((stats.rate_limit_hits, stats.rate_limit_waits, stats.retries), (1, 1, 1));
    assert_eq!(calls(&metrics, "GET /repos/{owner}/{repo}/issues/{number}", "403"), 1);

    // A POST is resent after a rate limit too: GitHub did not process it.
    github.inject(FakeFault::SecondaryRateLimit { retry_after: 1 }, 1);
    forge
        .set_labels(&paid_core::LabelChange { repo: repo(), number: 1, add: vec!["x".into()], remove: vec![] })
        .await
        .unwrap();
    assert_eq!(github.issue_labels("octo", "app", 1), vec!["paid-build", "x"]);
}

#[tokio::test]
async fn a_primary_rate_limit_is_waited_out_until_its_reset() {
    let github = seeded(1).await;
    let metrics = Arc::new(Metrics::default());
    let forge = forge(&github, &metrics, quick());
    github.inject(FakeFault::PrimaryRateLimit { reset_in: 1 }, 1);
    let started = Instant::now();
    assert_eq!(forge.issue(&repo(), 1).await.unwrap().number, 1);
    assert!(started.elapsed() >= Duration::from_millis(500), "waited {:?}", started.elapsed());
    assert_eq!(statuses(&github), vec![403, 200]);
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_cap_is_returned_and_then_not_even_sent() {
    let github = seeded(1).await;
    let metrics = Arc::new(Metrics::default());
    let forge = forge(&github, &metrics, quick().max_rate_limit_wait(Duration::from_secs(2)));
    github.inject(FakeFault::PrimaryRateLimit { reset_in: 3600 }, 1);
    let err = forge.issue(&repo(), 1).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::Unavailable { .. }) && err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("API rate limit exceeded"), "{err}");
    assert_eq!(github.request_count(), 1);
    // x-ratelimit-remaining is 0 for an hour: the next call is refused locally.
    let err = forge.issue(&repo(), 1).await.unwrap_err();
    assert!(err.to_string().contains("x-ratelimit-remaining: 0"), "{err}");
    assert_eq!(github.request_count(), 1, "no call GitHub would refuse was spent");
    assert_eq!(forge.stats().rate_limit_hits, 1);
}

#[tokio::test]
async fn unreachable_hosts_are_retried_then_reported() {
    let github = FakeGitHub::start().await.unwrap();
    let base = github.base_url().to_string();
    drop(github);
    let forge = GitHubForge::new(GitHubConfig::new().base_uri(base).retry(quick().max_retries(2))).unwrap();
    let err = forge.issue(&repo(), 1).await.unwrap_err();
    assert!(matches!(err.by_meaning(), paid_core::Error::Unavailable { .. }), "{err:?}");
    assert!(!err.is_retryable(), "retried here already: {err:?}");
    let stats = forge.stats();
    assert_eq!((stats.requests, stats.failed, stats.retries), (3, 3, 2));
}

#[tokio::test]
async fn after_a_full_last_page_the_next_page_is_probed_once_then_free() {
    // 4 issues at 2 per page: the last page is full, and a 304 for it cannot
    // say whether a page was added after it.
    let github = seeded(4).await;
    let metrics = Arc::new(Metrics::default());
    let forge = forge(&github, &metrics, quick());
    assert_eq!(forge.poll_triggered(&poll()).await.unwrap().len(), 4);
    assert_eq!(github.rate_limited_requests(), 2);
    // First idle poll: two 304s and one look at page 3 (empty).
    assert_eq!(forge.poll_triggered(&poll()).await.unwrap().len(), 4);
    assert_eq!(github.rate_limited_requests(), 3);
    // From then on: all 304s.
    for _ in 0..3 {
        assert_eq!(forge.poll_triggered(&poll()).await.unwrap().len(), 4);
    }
    assert_eq!(github.rate_limited_requests(), 3);
    // A change still shows at once.
    github.add_issue("octo", "app", 5, "new", "", "alice", &["paid-build"]);
    assert_eq!(forge.poll_triggered(&poll()).await.unwrap().len(), 5);
}
