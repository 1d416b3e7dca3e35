//! The conformance suites' negative controls: every case of every suite
//! runs against its port's null backend (`paid_core::testing::null`), whose
//! writes do nothing, and must fail. A case that passes against a backend
//! that stores, sends and runs nothing checks nothing.
//!
//! The table of cases (`suite / case / caught it`) goes to stderr; see it
//! with `cargo test -p paid-core --all-features --test null_backends -- --nocapture`.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use paid_core::ports::learning::LearningStore;
use paid_core::testing::forge::ForgeFixture;
use paid_core::testing::null::{
    CaseOutcome, NullForge, NullLearningStore, NullRuntime, NullSecretStore, NullStore, NullWorkspaces, run_case,
};
use paid_core::testing::workspaces::WorkspacesFixture;
use paid_core::testing::{fixtures, forge, learning, sandbox, secrets, store, workspaces};
use paid_core::{RepoRef, Store};

/// Cases that cannot tell a no-op backend apart, by `(suite, case)`, each
/// with the reason. Empty: every case has a positive control.
const EXEMPT: &[(&str, &str)] = &[];

/// The longest a case may take against a null backend.
const LIMIT: Duration = Duration::from_secs(30);

async fn store_cases() -> Vec<CaseOutcome> {
    let mut out = Vec::new();
    for (name, test) in store::TESTS {
        out.push(run_case("store", name, LIMIT, test(Arc::new(NullStore) as Arc<dyn Store>)).await);
    }
    let concurrent = store::concurrent_writers(Arc::new(NullStore), Arc::new(NullStore));
    out.push(run_case("store", "concurrent_writers", LIMIT, concurrent).await);
    out
}

async fn learning_cases() -> Vec<CaseOutcome> {
    let mut out = Vec::new();
    for (name, test) in learning::TESTS {
        out.push(run_case("learning", name, LIMIT, test(Arc::new(NullLearningStore) as Arc<dyn LearningStore>)).await);
    }
    out
}

async fn secrets_cases() -> Vec<CaseOutcome> {
    let mut out = Vec::new();
    for (name, test) in secrets::TESTS {
        out.push(run_case("secrets", name, LIMIT, test(&NullSecretStore)).await);
    }
    out
}

async fn forge_cases() -> Vec<CaseOutcome> {
    let fixture = ForgeFixture {
        forge: Arc::new(NullForge),
        repo: RepoRef::new("null", "repo"),
        build_issue: 1,
        plan_issue: 2,
        other_issue: 3,
        closed_issue: 4,
        head: "paid/1-build-me-abcdef".into(),
        base: "main".into(),
        // The forge stores nothing, so no comment is there to read.
        comment_body: Box::new(|_, _| None),
        seed_review_comment: Box::new(|_, _, _, _, _| {}),
        seed_vote: Box::new(|_, _, _| {}),
    };
    let mut out = Vec::new();
    for (name, test) in forge::TESTS {
        out.push(run_case("forge", name, LIMIT, test(&fixture)).await);
    }
    out
}

async fn workspaces_cases() -> Vec<CaseOutcome> {
    let root = tempfile::tempdir().unwrap();
    let mut project = fixtures::project("null");
    project.clone_url = root.path().join("remote.git").display().to_string();
    let fixture = WorkspacesFixture {
        workspaces: Arc::new(NullWorkspaces::new(root.path().join("worktrees"))),
        project,
        // Nothing ever reaches the remote.
        remote_branch: Box::new(|_| None),
        remote_commit: Box::new(|_, _, _| "0".repeat(40)),
    };
    let mut out = Vec::new();
    for (name, test) in workspaces::TESTS {
        out.push(run_case("workspaces", name, LIMIT, test(&fixture)).await);
    }
    out
}

async fn sandbox_cases() -> Vec<CaseOutcome> {
    let worktrees = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for (name, dir, test) in sandbox::TESTS {
        let dir = worktrees.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        out.push(run_case("sandbox", name, LIMIT, test(&NullRuntime, "null/image:latest", &dir)).await);
    }
    let dir = worktrees.path().join("reap");
    std::fs::create_dir_all(&dir).unwrap();
    let reap = sandbox::reap_removes_sandboxes_of_runs_not_kept(&NullRuntime, "null/image:latest", &dir);
    out.push(run_case("sandbox", "reap_removes_sandboxes_of_runs_not_kept", LIMIT, reap).await);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_suite_case_fails_against_a_null_backend() {
    // The failing cases' panics are the expected result: keep them quiet.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut outcomes = store_cases().await;
    outcomes.extend(learning_cases().await);
    outcomes.extend(secrets_cases().await);
    outcomes.extend(forge_cases().await);
    outcomes.extend(workspaces_cases().await);
    outcomes.extend(sandbox_cases().await);
    std::panic::set_hook(hook);

    let width = outcomes.iter().map(|o| o.case.len()).max().unwrap_or(0);
    eprintln!("{:<10} | {:<width$} | caught it", "suite", "case");
    let mut vacuous = Vec::new();
    for o in &outcomes {
        let exempt = EXEMPT.contains(&(o.suite, o.case));
        let verdict = match (o.failed, exempt) {
            (true, _) => format!("yes: {}", o.message.lines().next().unwrap_or_default()),
            (false, true) => "no (exempt)".to_string(),
            (false, false) => "NO".to_string(),
        };
        eprintln!("{:<10} | {:<width$} | {verdict}", o.suite, o.case);
        if !o.failed && !exempt {
            vacuous.push(format!("{}::{}", o.suite, o.case));
        }
    }
    for suite in ["store", "learning", "secrets", "forge", "workspaces", "sandbox"] {
        let cases: Vec<_> = outcomes.iter().filter(|o| o.suite == suite).collect();
        let caught = cases.iter().filter(|o| o.failed).count();
        eprintln!("{suite}: {caught} of {} cases caught the null backend", cases.len());
        assert!(!cases.is_empty(), "the {suite} suite ran no case");
    }
    for (suite, case) in EXEMPT {
        assert!(outcomes.iter().any(|o| o.suite == *suite && o.case == *case), "exempt case {suite}::{case} is gone");
    }
    assert!(vacuous.is_empty(), "cases that pass against a null backend check nothing: {vacuous:?}");
}
