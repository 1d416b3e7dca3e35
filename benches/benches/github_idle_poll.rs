//! Rate-limited GitHub calls for idle poll cycles: conditional requests
//! (ETags, what `GitHubForge` does) against the naive approach (refetch every
//! page each cycle), measured in the same run against the fake GitHub.
//!
//! ```text
//! cargo bench -p paid-benches --bench github_idle_poll            # 250 issues, 10 cycles
//! cargo bench -p paid-benches --bench github_idle_poll -- 1000 20 # issues, cycles
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use paid_core::{Forge, PollRequest, RepoRef};
use paid_github::fake::FakeGitHub;
use paid_github::{GitHubConfig, GitHubForge};

fn poll() -> PollRequest {
    PollRequest { repo: RepoRef::new("octo", "app"), labels: vec!["paid-build".into(), "paid-plan".into()] }
}

fn forge(github: &FakeGitHub) -> GitHubForge {
    GitHubForge::new(GitHubConfig::new().base_uri(github.base_url())).unwrap()
}

fn main() {
    // `cargo bench` passes `--bench`; take the first two numbers given.
    let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let issues = numbers.first().copied().unwrap_or(250);
    let cycles = numbers.get(1).copied().unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let github = FakeGitHub::start().await.unwrap();
        for n in 1..=issues {
            let labels: &[&str] = if n % 10 == 0 { &["paid-plan"] } else { &["paid-build"] };
            github.add_issue("octo", "app", n, &format!("Issue {n}"), "", "alice", labels);
        }
        let conditional = forge(&github);
        let first = conditional.poll_triggered(&poll()).await.unwrap();
        let first_cost = github.rate_limited_requests();

        let started = Instant::now();
        for _ in 0..cycles {
            assert_eq!(conditional.poll_triggered(&poll()).await.unwrap().len(), first.len());
        }
        let conditional_time = started.elapsed();
        let conditional_calls = github.rate_limited_requests() - first_cost;

        let before = github.rate_limited_requests();
        let started = Instant::now();
        for _ in 0..cycles {
            assert_eq!(forge(&github).poll_triggered(&poll()).await.unwrap().len(), first.len());
        }
        let naive_time = started.elapsed();
        let naive_calls = github.rate_limited_requests() - before;

        println!("github_idle_poll: {issues} open issues, {cycles} idle cycles, labels paid-build + paid-plan");
        println!("  first poll (either way):  {first_cost} rate-limited calls");
        println!(
            "  conditional (ETag/304):   {conditional_calls} rate-limited calls, {} requests answered 304, {:?}",
            conditional.stats().not_modified,
            conditional_time
        );
        println!("  naive (refetch all):      {naive_calls} rate-limited calls, {naive_time:?}");
        println!(
            "  ratio conditional/naive:  calls {}/{}, time {:.2}",
            conditional_calls,
            naive_calls,
            conditional_time.as_secs_f64() / naive_time.as_secs_f64().max(f64::MIN_POSITIVE)
        );
    });
}
