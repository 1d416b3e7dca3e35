//! The text Paid posts as its own is safe: whatever the agent says, the
//! pull request's body and the comment on the issue notify nobody, close no
//! other issue and link nowhere, while the PR still closes the run's own
//! issue.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use paid_core::RunState;
use support::{Behavior, World};

/// What a hostile (or prompt-injected) agent puts in its summary.
const HOSTILE: &str = "Done. Thanks @octocat! Fixes #99, and see https://evil.example/x for details.";

/// The payloads of [`HOSTILE`] found live in `text`.
fn live(text: &str) -> Vec<&'static str> {
    ["@octocat", "Fixes #99", "https://evil.example/x"].into_iter().filter(|p| text.contains(p)).collect()
}

#[tokio::test]
async fn an_agents_summary_cannot_mention_close_another_issue_or_link_from_the_pr_or_comment() {
    let hostile = Behavior { summary: Some(HOSTILE.into()), ..Behavior::new(&["fix.txt"], true, 10) };
    let w = World::new(&[("none", hostile)]).await;
    let engine = w.builder("w1").build().unwrap();
    engine.enqueue(w.project.id, 7).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Succeeded, "{:?}", done[0].failure);

    let prs = w.forge.prs.lock().unwrap().clone();
    assert_eq!(prs.len(), 1);
    let body = &prs[0].body;
    assert_eq!(live(body), Vec::<&str>::new(), "{body}");
    // The summary is there, readable (only zero-width spaces were added),
    // and the PR still closes its own issue.
    assert!(body.replace('\u{200b}', "").starts_with(HOSTILE), "{body}");
    assert!(body.contains("\n\nCloses #7\n"), "{body}");

    let comments = w.forge.comments.lock().unwrap().clone();
    assert!(!comments.is_empty());
    for c in &comments {
        assert_eq!(live(&c.body), Vec::<&str>::new(), "{}", c.body);
    }
}

#[tokio::test]
async fn an_agents_failure_message_cannot_mention_close_or_link_from_the_comment() {
    let failing = Behavior { fails: true, failure: Some(HOSTILE.into()), ..Behavior::new(&[], false, 10) };
    let w = World::new(&[("none", failing)]).await;
    let engine = w.builder("w1").build().unwrap();
    engine.enqueue(w.project.id, 8).await.unwrap();
    let done = engine.run_until_idle().await.unwrap();
    assert_eq!(done[0].state, RunState::Failed);
    assert!(done[0].failure.as_ref().unwrap().message.contains(HOSTILE), "the payload reached the failure");

    assert!(w.forge.prs.lock().unwrap().is_empty());
    let comments = w.forge.comments.lock().unwrap().clone();
    assert!(!comments.is_empty());
    for c in &comments {
        assert!(c.body.starts_with("Paid could not finish this issue"), "{}", c.body);
        assert!(c.body.replace('\u{200b}', "").contains(HOSTILE), "{}", c.body);
        assert_eq!(live(&c.body), Vec::<&str>::new(), "{}", c.body);
    }
}
