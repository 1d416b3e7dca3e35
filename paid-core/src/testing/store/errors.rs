//! Missing entities, across every sub-trait.

use pretty_assertions::assert_eq;

use super::*;

/// Every call naming a missing entity fails with `NotFound`; lists of a
/// missing parent are empty.
pub async fn missing_entities(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let gone_project = fixtures::project_id();
    let gone = fixtures::run_id();
    let null = || Ok(serde_json::Value::Null);

    expect_err!(s.project(gone_project).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.delete_project(gone_project).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.put_issue(&fixtures::issue(gone_project, 1)).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.issue(project.id, 404).await, Error::NotFound { entity: "issue", .. });
    expect_err!(s.pin_author(gone_project, "octocat", 1, at(1)).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.create_run(&fixtures::new_run(gone_project, 1)).await, Error::NotFound { entity: "project", .. });

    expect_err!(s.run(gone).await, Error::NotFound { entity: "run", .. });
    let t = Transition {
        run_id: gone,
        from: RunState::Queued,
        to: RunState::SelectingModel,
        owner: OWNER.into(),
        at: at(1),
        patch: Default::default(),
    };
    expect_err!(s.transition(&t).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.patch_run(gone, OWNER, &RunPatch::default(), at(1)).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.request_cancel(gone, at(1)).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.cancel_requested(gone).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.heartbeat(gone, OWNER, hour(), at(1)).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.release(gone, OWNER).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.begin_step(gone, OWNER, RunState::Queued, None, at(1)).await, Error::NotFound { entity: "run", .. });
    expect_err!(
        s.finish_step(gone, OWNER, RunState::Queued, null(), at(1)).await,
        Error::NotFound { entity: "run", .. }
    );
    let log = AppendLog { run_id: gone, stream: LogStream::Stdout, text: "x", cap_bytes: 10, at: at(1) };
    expect_err!(s.append_log(&log).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.record_usage(&fixtures::usage_record(gone, at(1))).await, Error::NotFound { entity: "run", .. });
    expect_err!(s.record_decision(&fixtures::decision(gone)).await, Error::NotFound { entity: "run", .. });
    let outcome = fixtures::outcome(project.id, gone, at(1));
    expect_err!(s.record_outcome(&outcome).await, Error::NotFound { entity: "run", .. });

    assert_eq!(s.issues(gone_project).await.unwrap(), Vec::<TrackedIssue>::new());
    assert_eq!(s.author_pins(gone_project).await.unwrap(), Vec::<crate::AuthorPin>::new());
    assert_eq!(s.outcomes(gone_project).await.unwrap(), Vec::<Outcome>::new());
    assert_eq!(s.steps(gone).await.unwrap(), Vec::<StepRecord>::new());
    assert_eq!(s.logs(gone, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.usage(gone).await.unwrap(), Vec::<UsageRecord>::new());
    assert_eq!(s.decision(gone).await.unwrap(), None);
}
