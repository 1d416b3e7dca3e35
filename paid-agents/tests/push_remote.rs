//! `push_remote`: a project that pushes run branches to a fork. Through the
//! whole engine on real Docker and git, the run's branch lands on the fork
//! and not on the project's repository (where CI may run with the
//! repository's secrets), and the pull request is opened from the fork
//! (`owner:branch`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::Arc;

use common::engine::{Harness, REPO};
use paid_agents::CommandAgent;
use paid_core::RunState;
use paid_core::engine::EngineConfig;

const FIX: &str = "sed -i 's/\\$1 - \\$2/$1 + $2/' calc.sh && echo fixed";

fn branches(repo: &std::path::Path) -> Vec<String> {
    let out = Command::new("git").args(["branch", "--format=%(refname:short)"]).current_dir(repo).output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_branches_go_to_the_fork_and_the_pr_comes_from_it() {
    let mut h = Harness::new(&common::image(), "fixer").await;
    let fork = h.dir.path().join("fork.git");
    let out = Command::new("git").args(["clone", "-q", "--bare"]).arg(&h.remote).arg(&fork).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    h.project.settings.push_remote = Some("paid-bot/calc".into());
    h.project.settings.push_url = Some(fork.display().to_string());
    h.project.validate().unwrap();
    h.store.put_project(&h.project).await.unwrap();

    let agent = Arc::new(CommandAgent::new("fixer", FIX).unwrap());
    let config = EngineConfig { worker_id: "fork".into(), max_iterations: 1, ..EngineConfig::default() };
    let engine = h.engine_from(agent, Arc::new(h.workspaces()), config);
    let run = h.run(&engine).await;
    assert_eq!(run.state, RunState::Succeeded, "{:?}\n{}", run.failure, h.log(&run).await);

    let branch = run.branch.clone().unwrap();
    assert!(branches(&fork).contains(&branch), "the fork has the run's branch: {:?}", branches(&fork));
    assert!(!branches(&h.remote).contains(&branch), "the project's repository does not: {:?}", branches(&h.remote));
    let prs = h.github.pull_requests(REPO.0, REPO.1);
    assert_eq!(prs.len(), 1);
    assert_eq!((prs[0].head_owner.as_str(), prs[0].head.as_str()), ("paid-bot", branch.as_str()));
    assert_eq!(run.pr_url.as_deref(), Some(prs[0].html_url.as_str()));
}
