//! The API-mode agent through the whole engine: the verify/fix loop around
//! it, in a real sandbox, with real git and the fake GitHub. A scripted model
//! that fixes the test gets a pull request; one that never does stops at the
//! iteration limit with the reason recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::engine::{Harness, REPO};
use common::{Scripted, call, image, say};
use paid_agents::{ApiAgent, ApiConfig};
use paid_core::{Role, RunState};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_agent_fixes_the_failing_test_and_gets_a_pull_request() {
    let h = Harness::new(&image(), "api").await;
    // Turn by turn: run the tests, fix, check, summarize.
    let model = Scripted::sequence(vec![
        call("run", json!({"command": "sh test.sh"})),
        call("edit", json!({"path": "calc.sh", "old_string": "$1 - $2", "new_string": "$1 + $2"})),
        call("run", json!({"command": "sh test.sh"})),
        say("Fixed add() in calc.sh: it subtracted instead of adding."),
    ]);
    let agent = ApiAgent::new(model.clone(), ApiConfig::default());
    let run = h.run(&h.engine(Arc::new(agent), "scripted-1", 5)).await;

    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.failure);
    assert_eq!(run.iterations, 1);
    let branch = run.branch.clone().unwrap();
    assert!(h.remote_file(&branch, "calc.sh").contains("$(( $1 + $2 ))"));
    assert_eq!(h.remote_log(&branch)[0], "Fix #1: add() returns the wrong result");
    let prs = h.github.pull_requests(REPO.0, REPO.1);
    assert_eq!(prs.len(), 1);
    assert!(prs[0].body.contains("Fixed add() in calc.sh"), "{}", prs[0].body);
    // The model saw the engine's task prompt, with the issue in it.
    let first = model.requests.lock().unwrap()[0].clone();
    assert_eq!(first.model, "scripted-1");
    assert!(first.messages[0].content.contains("Resolve issue #1: add() returns the wrong result"));
    // The agent's usage was recorded with the run.
    let usage = h.store.usage(run.id).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].provider, "agent:api");
    assert_eq!(usage[0].usage.total(), 4 * 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_never_fixes_it_stops_at_the_iteration_limit() {
    let h = Harness::new(&image(), "api").await;
    // Each iteration it "fixes" the wrong function and declares victory.
    let model = Scripted::new(|_, req| match req.messages.last().map(|m| m.role) {
        Some(Role::User) => {
            call("edit", json!({"path": "calc.sh", "old_string": "mul() {", "new_string": "mul() {\n    :"}))
        }
        _ => say("Done, I believe."),
    });
    let agent = ApiAgent::new(model.clone(), ApiConfig::default());
    let run = h.run(&h.engine(Arc::new(agent), "scripted-1", 3)).await;

    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.iterations, 3);
    let failure = run.failure.clone().unwrap();
    assert_eq!(failure.step, RunState::Verifying);
    assert_eq!(failure.code, "verify_failed");
    assert!(failure.message.contains("verification still failing after 3 iterations"), "{}", failure.message);
    assert!(failure.message.contains("FAIL: add 2 3: expected 5, got -1"), "{}", failure.message);

    // Iterations 2 and 3 started from the verify failure digest.
    let requests = model.requests.lock().unwrap().clone();
    let firsts: Vec<_> = requests.iter().filter(|r| r.messages.len() == 1).collect();
    assert_eq!(firsts.len(), 3);
    assert!(!firsts[0].messages[0].content.contains("did not pass verification"));
    for r in &firsts[1..] {
        assert!(r.messages[0].content.contains("did not pass verification"), "{}", r.messages[0].content);
        assert!(r.messages[0].content.contains("FAIL: add 2 3"), "{}", r.messages[0].content);
    }
    assert!(h.github.pull_requests(REPO.0, REPO.1).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_model_ends_the_run_as_stuck() {
    let h = Harness::new(&image(), "api").await;
    let model = Scripted::new(|_, _| call("run", json!({"command": "sh test.sh"})));
    let agent = ApiAgent::new(model, ApiConfig::default());
    let run = h.run(&h.engine(Arc::new(agent), "scripted-1", 5)).await;

    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.iterations, 1, "a stuck agent is not sent round again");
    let failure = run.failure.unwrap();
    assert_eq!(failure.code, "stuck");
    assert_eq!(failure.step, RunState::RunningAgent);
    assert!(failure.message.contains("the same tool call was made 3 times"), "{}", failure.message);
}
