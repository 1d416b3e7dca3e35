//! The issue's measure: rate-limited GitHub calls for 10 idle poll cycles of
//! a project with 250 open issues, conditional requests against the naive
//! approach (refetch every page each cycle), in the same run. The bench
//! binary `paid-benches/benches/github_idle_poll.rs` prints the same figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paid_core::{Forge, PollRequest, RepoRef};
use paid_github::fake::FakeGitHub;
use paid_github::{GitHubConfig, GitHubForge};

const ISSUES: u64 = 250;
const CYCLES: usize = 10;

fn poll() -> PollRequest {
    PollRequest { repo: RepoRef::new("octo", "app"), labels: vec!["paid-build".into(), "paid-plan".into()] }
}

fn forge(github: &FakeGitHub) -> GitHubForge {
    GitHubForge::new(GitHubConfig::new().base_uri(github.base_url())).unwrap()
}

#[tokio::test]
async fn ten_idle_polls_of_250_issues_cost_no_rate_limited_call() {
    let github = FakeGitHub::start().await.unwrap();
    for n in 1..=ISSUES {
        let labels: &[&str] = if n % 10 == 0 { &["paid-plan"] } else { &["paid-build"] };
        github.add_issue("octo", "app", n, &format!("Issue {n}"), "", "alice", labels);
    }

    // Conditional (ETags): one full poll, then idle cycles.
    let conditional = forge(&github);
    let first = conditional.poll_triggered(&poll()).await.unwrap();
    assert_eq!(first.len(), ISSUES as usize);
    let first_cost = github.rate_limited_requests();
    for _ in 0..CYCLES {
        assert_eq!(conditional.poll_triggered(&poll()).await.unwrap(), first);
    }
    let idle_conditional = github.rate_limited_requests() - first_cost;

    // Naive: no ETag cache, every page fetched again each cycle.
    let before = github.rate_limited_requests();
    for _ in 0..CYCLES {
        assert_eq!(forge(&github).poll_triggered(&poll()).await.unwrap(), first);
    }
    let idle_naive = github.rate_limited_requests() - before;

    println!(
        "{CYCLES} idle poll cycles, {ISSUES} open issues, labels paid-build + paid-plan, 100 per page: \
         conditional {idle_conditional} rate-limited calls ({} answered 304), naive {idle_naive} \
         (first poll: {first_cost} calls either way)",
        conditional.stats().not_modified
    );
    assert_eq!(idle_conditional, 0);
    // paid-build: 225 issues = 3 pages; paid-plan: 25 = 1 page.
    assert_eq!(first_cost, 4);
    assert_eq!(idle_naive, 40);
    assert_eq!(conditional.stats().not_modified, 40);
}
