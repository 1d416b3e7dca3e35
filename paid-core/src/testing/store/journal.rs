//! The step journal ([`Journal`](crate::Journal)).

use pretty_assertions::assert_eq;

use super::*;

/// Steps are journaled in order; `finish_step` marks the latest started
/// record of its step.
pub async fn step_journal(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let key = "paid/1-fix-the-flaky-test-a1b2c3";
    assert_eq!(s.steps(run.id).await.unwrap(), Vec::<StepRecord>::new());

    let begun = |seq, step, key: Option<&str>, when| StepRecord {
        run_id: run.id,
        seq,
        step,
        idempotency_key: key.map(Into::into),
        status: StepStatus::Started,
        output: serde_json::Value::Null,
        error: None,
        started_at: when,
        finished_at: None,
    };

    let s1 = s.begin_step(run.id, OWNER, RunState::Provisioning, None, at(1)).await.unwrap();
    assert_eq!(s1, begun(1, RunState::Provisioning, None, at(1)));
    let f1 = s.finish_step(run.id, OWNER, RunState::Provisioning, Err("docker is down".into()), at(2)).await.unwrap();
    let f1_want =
        StepRecord { status: StepStatus::Failed, error: Some("docker is down".into()), finished_at: Some(at(2)), ..s1 };
    assert_eq!(f1, f1_want);

    let s2 = s.begin_step(run.id, OWNER, RunState::Provisioning, None, at(3)).await.unwrap();
    assert_eq!(s2, begun(2, RunState::Provisioning, None, at(3)));
    let s3 = s.begin_step(run.id, OWNER, RunState::Pushing, Some(key), at_millis(4_004)).await.unwrap();
    assert_eq!(s3, begun(3, RunState::Pushing, Some(key), at_millis(4_004)));

    let output = serde_json::json!({ "container": "c1", "ports": [1, 2], "nested": { "ok": true } });
    let d2 = s.finish_step(run.id, OWNER, RunState::Provisioning, Ok(output.clone()), at(5)).await.unwrap();
    let d2_want = StepRecord { status: StepStatus::Done, output, finished_at: Some(at(5)), ..s2 };
    assert_eq!(d2, d2_want, "the retry is marked, not the failed attempt");

    // A worker died after journaling `pushing`; its successor journals it again.
    let s4 = s.begin_step(run.id, OWNER, RunState::Pushing, Some(key), at(6)).await.unwrap();
    let d4 = s.finish_step(run.id, OWNER, RunState::Pushing, Ok(serde_json::json!("pushed")), at(7)).await.unwrap();
    let d4_want =
        StepRecord { status: StepStatus::Done, output: serde_json::json!("pushed"), finished_at: Some(at(7)), ..s4 };
    assert_eq!(d4, d4_want);
    assert_eq!(d4.seq, 4);

    assert_eq!(s.steps(run.id).await.unwrap(), vec![f1_want, d2_want, s3, d4_want]);

    let none_started = s.finish_step(run.id, OWNER, RunState::Provisioning, Ok(serde_json::Value::Null), at(8)).await;
    expect_err!(none_started, Error::NotFound { entity: "step", .. });
    let never_begun = s.finish_step(run.id, OWNER, RunState::OpeningPr, Ok(serde_json::Value::Null), at(8)).await;
    expect_err!(never_begun, Error::NotFound { entity: "step", .. });

    let other = claimed(s, &fixtures::new_run(project.id, 2), OTHER, at(0)).await;
    let first = s.begin_step(other.id, OTHER, RunState::SelectingModel, None, at(9)).await.unwrap();
    assert_eq!(first.seq, 1, "seq counts per run");
}

/// `finish_step_and_transition` marks the step and moves the run together;
/// when either part is refused, neither is applied.
pub async fn finish_step_and_transition_is_atomic(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let run = walk(s, run, OWNER, &[RunState::SelectingModel, RunState::Provisioning], at(1)).await;
    let begun = s.begin_step(run.id, OWNER, RunState::Provisioning, Some("paid/1-x"), at(2)).await.unwrap();
    let t = |from, to, owner: &str, when| Transition {
        run_id: run.id,
        from,
        to,
        owner: owner.into(),
        at: when,
        patch: Default::default(),
    };
    let output = serde_json::json!({ "sandbox": "s1" });

    // Refused by the transition: the run is not in `from`, or the move is illegal.
    for (from, to) in [(RunState::Provisioning, RunState::Succeeded), (RunState::Provisioning, RunState::Queued)] {
        let refused = s.finish_step_and_transition(&t(from, to, OWNER, at(3)), Ok(output.clone())).await;
        expect_err!(refused, Error::IllegalTransition { .. });
    }
    // Refused by the finish: another owner, or no started record of the step.
    let other = t(RunState::Provisioning, RunState::RunningAgent, OTHER, at(3));
    expect_err!(s.finish_step_and_transition(&other, Ok(output.clone())).await, Error::LeaseLost { .. });
    let wrong_step = t(RunState::SelectingModel, RunState::Provisioning, OWNER, at(3));
    expect_err!(
        s.finish_step_and_transition(&wrong_step, Ok(output.clone())).await,
        Error::NotFound { entity: "step", .. }
    );
    assert_eq!(s.run(run.id).await.unwrap(), run, "refused: the run did not move");
    assert_eq!(s.steps(run.id).await.unwrap(), vec![begun.clone()], "refused: the step is still started");

    let moved = s
        .finish_step_and_transition(
            &t(RunState::Provisioning, RunState::RunningAgent, OWNER, at(4)),
            Ok(output.clone()),
        )
        .await
        .unwrap();
    let want = Run { state: RunState::RunningAgent, updated_at: at(4), ..run.clone() };
    assert_eq!(moved, want);
    assert_eq!(s.run(run.id).await.unwrap(), want);
    let done = StepRecord { status: StepStatus::Done, output, finished_at: Some(at(4)), ..begun };
    assert_eq!(s.steps(run.id).await.unwrap(), vec![done.clone()]);

    // A failed step, straight to an end state.
    s.begin_step(run.id, OWNER, RunState::RunningAgent, None, at(5)).await.unwrap();
    let ended = s
        .finish_step_and_transition(
            &t(RunState::RunningAgent, RunState::Failed, OWNER, at(6)),
            Err("agent crashed".into()),
        )
        .await
        .unwrap();
    assert_eq!(ended, Run { state: RunState::Failed, updated_at: at(6), finished_at: Some(at(6)), ..want });
    let steps = s.steps(run.id).await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!((steps[1].status, steps[1].error.as_deref()), (StepStatus::Failed, Some("agent crashed")));
}

/// `resume_or_begin_step` returns the last record when it is the step and
/// done, and otherwise journals the step like `begin_step`.
pub async fn resume_or_begin_step(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let key = Some("paid/1-x");

    let first = s.resume_or_begin_step(run.id, OWNER, RunState::Pushing, key, at(1)).await.unwrap();
    assert_eq!((first.seq, first.status, first.idempotency_key.as_deref()), (1, StepStatus::Started, key));
    let again = s.resume_or_begin_step(run.id, OWNER, RunState::Pushing, key, at(2)).await.unwrap();
    assert_eq!((again.seq, again.status), (2, StepStatus::Started), "a started record is not resumed");
    let done = s.finish_step(run.id, OWNER, RunState::Pushing, Ok(serde_json::json!("pushed")), at(3)).await.unwrap();

    let resumed = s.resume_or_begin_step(run.id, OWNER, RunState::Pushing, key, at(4)).await.unwrap();
    assert_eq!(resumed, done, "the last record is this step, done: resumed");
    assert_eq!(s.steps(run.id).await.unwrap().len(), 2, "resuming writes nothing");
    expect_err!(s.resume_or_begin_step(run.id, OTHER, RunState::OpeningPr, None, at(4)).await, Error::LeaseLost { .. });
    let next = s.resume_or_begin_step(run.id, OWNER, RunState::OpeningPr, None, at(5)).await.unwrap();
    assert_eq!((next.seq, next.step, next.status), (3, RunState::OpeningPr, StepStatus::Started));
    s.finish_step(run.id, OWNER, RunState::OpeningPr, Err("forge down".into()), at(6)).await.unwrap();
    let retried = s.resume_or_begin_step(run.id, OWNER, RunState::OpeningPr, None, at(7)).await.unwrap();
    assert_eq!((retried.seq, retried.status), (4, StepStatus::Started), "a failed record is not resumed");
    let pushing = s.resume_or_begin_step(run.id, OWNER, RunState::Pushing, key, at(8)).await.unwrap();
    assert_eq!((pushing.seq, pushing.status), (5, StepStatus::Started), "only the last record is resumed");
    expect_err!(
        s.resume_or_begin_step(fixtures::run_id(), OWNER, RunState::Pushing, None, at(8)).await,
        Error::NotFound { entity: "run", .. }
    );
}
