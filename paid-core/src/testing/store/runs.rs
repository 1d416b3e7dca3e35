//! Runs: creating, listing, transitions, patches and contexts ([`Runs`](crate::Runs)).

use pretty_assertions::assert_eq;

use super::*;

/// A run's context is created in the same write as the run, read back with
/// it everywhere (`run`, `runs`, `claim`, transitions), replaced whole by a
/// patch or a transition that carries one, and kept by those that do not.
pub async fn run_context_is_written_with_the_run(store: Arc<dyn Store>) {
    use crate::RunContext;
    use crate::engine::CompareSpec;
    let s = &*store;
    let p = seed(s, "widgets").await;
    let plain = queue(s, &fixtures::new_run(p.id, 1)).await;
    assert_eq!(plain.context, RunContext::new(), "no context is an empty one");
    let spec = CompareSpec::models(["a", "b"]);
    let snapshot = crate::IssueSnapshot {
        title: "Fix it".into(),
        body: "The body as it was when the run was queued.".into(),
        author: "octocat".into(),
        author_id: Some(fixtures::OCTOCAT_ID),
        taken_at: at(0),
    };
    let new = NewRun {
        context: RunContext::compare(spec.clone()).with_issue(snapshot.clone()),
        ..fixtures::new_run(p.id, 2)
    };
    let compared = queue(s, &new).await;
    assert_eq!(compared.context.compare.as_ref(), Some(&spec));
    assert_eq!(compared.context.issue.as_ref(), Some(&snapshot), "the issue snapshot is part of the context");
    assert_eq!(s.run(compared.id).await.unwrap().context, new.context, "read back by id");
    let listed = s.runs(&RunFilter { issue_number: Some(2), ..RunFilter::default() }).await.unwrap();
    assert_eq!(listed[0].context, new.context, "read back by list");

    // Claimed and walked: transitions without a context keep it.
    let got = s.claim(&claim_req(OWNER, hour(), at(1))).await.unwrap().unwrap();
    assert_eq!(got.id, plain.id, "the older run first");
    let got = s.claim(&claim_req(OWNER, hour(), at(1))).await.unwrap().unwrap();
    assert_eq!(got.context, new.context, "claim reads the context");
    let walked = walk(s, got, OWNER, &path_to(RunState::RunningAgent), at(2)).await;
    assert_eq!(walked.context, new.context, "transitions without a context keep it");

    // A patch replaces it whole; a patch without one keeps it.
    let picked = new.context.clone().with_pick("c1-a");
    let patch = RunPatch { context: Some(picked.clone()), ..RunPatch::default() };
    assert_eq!(s.patch_run(walked.id, OWNER, &patch, at(3)).await.unwrap().context, picked);
    let other = RunPatch { model: Some("m".into()), ..RunPatch::default() };
    assert_eq!(s.patch_run(walked.id, OWNER, &other, at(3)).await.unwrap().context, picked);
    assert_eq!(s.run(walked.id).await.unwrap().context, picked);

    // A transition that carries one sets it in the same write; a refused
    // transition sets nothing.
    let cleared = RunContext::new();
    let refused = Transition {
        run_id: walked.id,
        from: RunState::Queued,
        to: RunState::SelectingModel,
        owner: OWNER.into(),
        at: at(4),
        patch: RunPatch {
            context: Some(cleared.clone()),
            model: Some("moved-model".into()),
            pr_url: Some("https://forge.invalid/pr/7".into()),
            iterations: Some(3),
            ..RunPatch::default()
        },
    };
    assert!(matches!(s.transition(&refused).await, Err(Error::IllegalTransition { .. })), "a stale `from` is refused");
    assert_eq!(s.run(walked.id).await.unwrap().context, picked, "a refused transition changes nothing");
    let moved = Transition { from: RunState::RunningAgent, to: RunState::Verifying, ..refused };
    let before = s.run(walked.id).await.unwrap();
    assert_eq!((before.model.as_deref(), before.pr_url.as_deref(), before.iterations), (Some("m"), None, 0));
    let after = s.transition(&moved).await.unwrap();
    assert_eq!(after.context, cleared);
    assert_eq!(
        (after.model.as_deref(), after.pr_url.as_deref(), after.iterations, &after.branch),
        (Some("moved-model"), Some("https://forge.invalid/pr/7"), 3, &before.branch),
        "a transition sets the fields its patch sets, and keeps the others"
    );
    assert_eq!(s.run(walked.id).await.unwrap(), after);
    assert_eq!(s.run(plain.id).await.unwrap().context, RunContext::new(), "other runs are untouched");

    // A finished step and its transition carry one the same way.
    s.begin_step(walked.id, OWNER, RunState::Verifying, None, at(5)).await.unwrap();
    let finished = Transition {
        from: RunState::Verifying,
        to: RunState::Committing,
        at: at(5),
        patch: RunPatch { context: Some(picked.clone()), iterations: Some(4), ..RunPatch::default() },
        ..moved
    };
    let run = s.finish_step_and_transition(&finished, Ok(serde_json::json!({}))).await.unwrap();
    assert_eq!((run.state, &run.context, run.iterations), (RunState::Committing, &picked, 4));
    assert_eq!(run.model.as_deref(), Some("moved-model"), "fields the patch leaves out are kept");
    assert_eq!(s.run(walked.id).await.unwrap().context, picked);
}

/// A queued run reads back as queued; ids are unique.
pub async fn runs_create_and_read(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;

    let new = NewRun { priority: 7, created_at: at_millis(1_001), ..fixtures::new_run(project.id, 1) };
    let run = queue(s, &new).await;
    assert_eq!(s.run(new.id).await.unwrap(), run);
    assert!(!s.cancel_requested(new.id).await.unwrap());

    let plan = NewRun {
        kind: RunKind::Plan,
        priority: -3,
        issue_number: 1 << 40,
        created_at: at_millis(2_002),
        ..fixtures::new_run(project.id, 0)
    };
    let plan_run = queue(s, &plan).await;
    assert_eq!(s.run(plan.id).await.unwrap(), plan_run);

    let same_id = NewRun { issue_number: 2, ..new.clone() };
    expect_err!(s.create_run(&same_id).await, Error::AlreadyExists { .. });
    assert_eq!(s.run(new.id).await.unwrap(), run, "a refused create changes nothing");
}

/// One active run per issue and kind; a new one once the first has ended.
pub async fn runs_one_active_per_issue_and_kind(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let other = seed(s, "gadgets").await;

    let first = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    expect_err!(s.create_run(&fixtures::new_run(project.id, 1)).await, Error::AlreadyExists { .. });

    queue(s, &NewRun { kind: RunKind::Plan, ..fixtures::new_run(project.id, 1) }).await;
    queue(s, &fixtures::new_run(project.id, 2)).await;
    queue(s, &fixtures::new_run(other.id, 1)).await;

    let ended = walk(s, first, OWNER, &[RunState::Failed], at(1)).await;
    let second = queue(s, &fixtures::new_run(ended.project_id, ended.issue_number)).await;
    expect_err!(s.create_run(&fixtures::new_run(project.id, 1)).await, Error::AlreadyExists { .. });

    s.request_cancel(second.id, at(2)).await.unwrap();
    queue(s, &fixtures::new_run(project.id, 1)).await;
}

/// `runs` is newest first and honours every filter.
pub async fn runs_list_newest_first(store: Arc<dyn Store>) {
    let s = &*store;
    let p1 = seed(s, "widgets").await;
    let p2 = seed(s, "gadgets").await;
    let new = |p: &Project, issue, kind, secs| NewRun { kind, created_at: at(secs), ..fixtures::new_run(p.id, issue) };

    let a = queue(s, &new(&p1, 1, RunKind::Build, 1)).await;
    let d = queue(s, &new(&p1, 1, RunKind::Plan, 4)).await;
    let b = queue(s, &new(&p1, 2, RunKind::Build, 2)).await;
    let c = queue(s, &new(&p2, 1, RunKind::Build, 3)).await;
    let b = s.request_cancel(b.id, at(5)).await.unwrap();
    assert_eq!(b.state, RunState::Cancelled);

    let list = |filter: RunFilter| async move { s.runs(&filter).await.unwrap() };
    assert_eq!(list(RunFilter::default()).await, vec![d.clone(), c.clone(), b.clone(), a.clone()]);
    let in_p1 = RunFilter { project_id: Some(p1.id), ..RunFilter::default() };
    assert_eq!(list(in_p1.clone()).await, vec![d.clone(), b.clone(), a.clone()]);
    assert_eq!(list(RunFilter { issue_number: Some(1), ..in_p1.clone() }).await, vec![d.clone(), a.clone()]);
    assert_eq!(list(RunFilter { active_only: true, ..in_p1.clone() }).await, vec![d.clone(), a.clone()]);
    assert_eq!(list(RunFilter { limit: Some(2), ..RunFilter::default() }).await, vec![d.clone(), c.clone()]);
    // Pages: each starts after the previous page's last run.
    let page2 = RunFilter { limit: Some(2), before: Some(c.id), ..RunFilter::default() };
    assert_eq!(list(page2).await, vec![b.clone(), a.clone()]);
    assert_eq!(list(RunFilter { before: Some(a.id), ..RunFilter::default() }).await, Vec::<Run>::new());
    assert_eq!(list(RunFilter { before: Some(d.id), ..in_p1.clone() }).await, vec![b.clone(), a.clone()]);
    assert_eq!(list(RunFilter { active_only: true, limit: Some(1), ..RunFilter::default() }).await, vec![d]);
    assert_eq!(list(RunFilter { issue_number: Some(3), ..in_p1 }).await, Vec::<Run>::new());
}

/// A run walks the whole pipeline, looping between agent and verify.
pub async fn transitions_follow_the_pipeline(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let mut run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let path = [
        RunState::SelectingModel,
        RunState::Provisioning,
        RunState::RunningAgent,
        RunState::Verifying,
        RunState::RunningAgent,
        RunState::Verifying,
        RunState::Committing,
        RunState::PolicyCheck,
        RunState::Pushing,
        RunState::OpeningPr,
        RunState::Reporting,
        RunState::Cleaning,
        RunState::Succeeded,
    ];
    for (i, to) in path.into_iter().enumerate() {
        let when = at_millis(1_000 * (i as i64 + 1) + 7);
        run = walk(s, run, OWNER, &[to], when).await;
        assert_eq!(s.run(run.id).await.unwrap(), run, "read back after {to}");
    }
    assert_eq!(run.finished_at, Some(at_millis(13_007)));
    assert_eq!(run.lease_owner.as_deref(), Some(OWNER), "a transition keeps the lease");

    // Failures clean up, then end.
    let run = claimed(s, &fixtures::new_run(project.id, 2), OWNER, at(20)).await;
    let run = walk(s, run, OWNER, &path_to(RunState::RunningAgent), at(21)).await;
    let run = walk(s, run, OWNER, &[RunState::Cleaning, RunState::TimedOut], at(22)).await;
    assert_eq!(s.run(run.id).await.unwrap(), run);
}

/// Every transition the state machine forbids is refused and changes nothing.
pub async fn transitions_reject_illegal(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed_roomy(s, "widgets").await;
    for (i, from) in RunState::ALL.into_iter().enumerate() {
        let new = fixtures::new_run(project.id, i as u64 + 1);
        let run = claimed(s, &new, OWNER, at(0)).await;
        let run = walk(s, run, OWNER, &path_to(from), at(1)).await;
        assert_eq!(run.state, from);
        for to in RunState::ALL {
            if from.can_transition_to(to) {
                continue;
            }
            let t = Transition { run_id: run.id, from, to, owner: OWNER.into(), at: at(2), patch: Default::default() };
            expect_err!(s.transition(&t).await, Error::IllegalTransition { .. });
        }
        assert_eq!(s.run(run.id).await.unwrap(), run, "refused transitions from {from} change nothing");
    }
}

/// A transition applies only if the run is in `from`.
pub async fn transitions_compare_and_set(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    let run = walk(s, run, OWNER, &[RunState::SelectingModel], at(1)).await;

    for (from, to) in [
        (RunState::Queued, RunState::SelectingModel),
        (RunState::Queued, RunState::Failed),
        (RunState::Provisioning, RunState::RunningAgent),
        (RunState::Provisioning, RunState::Cleaning),
    ] {
        let stale = Transition { run_id: run.id, from, to, owner: OWNER.into(), at: at(2), patch: Default::default() };
        expect_err!(s.transition(&stale).await, Error::IllegalTransition { .. });
    }
    assert_eq!(s.run(run.id).await.unwrap(), run);
    walk(s, run, OWNER, &[RunState::Provisioning], at(3)).await;
}

/// Transitions, patches and journal writes need an unexpired lease.
pub async fn transitions_need_the_lease(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let t = |owner: &str, when| Transition {
        run_id: run.id,
        from: RunState::Queued,
        to: RunState::SelectingModel,
        owner: owner.into(),
        at: when,
        patch: Default::default(),
    };
    let patch = RunPatch { branch: Some("paid/1-x-abcdef".into()), ..RunPatch::default() };

    expect_err!(s.transition(&t(OWNER, at(1))).await, Error::LeaseLost { .. });
    expect_err!(s.patch_run(run.id, OWNER, &patch, at(1)).await, Error::LeaseLost { .. });
    expect_err!(s.begin_step(run.id, OWNER, RunState::Queued, None, at(1)).await, Error::LeaseLost { .. });

    let lease = Duration::seconds(60);
    let got = s.claim(&claim_req(OWNER, lease, at(10))).await.unwrap();
    assert_eq!(got, Some(leased(&run, OWNER, at(70))));

    expect_err!(s.transition(&t(OTHER, at(11))).await, Error::LeaseLost { .. });
    expect_err!(s.patch_run(run.id, OTHER, &patch, at(11)).await, Error::LeaseLost { .. });
    expect_err!(s.begin_step(run.id, OTHER, RunState::Queued, None, at(11)).await, Error::LeaseLost { .. });
    expect_err!(
        s.finish_step(run.id, OTHER, RunState::Queued, Ok(serde_json::Value::Null), at(11)).await,
        Error::LeaseLost { .. }
    );

    // The lease ends at its expiry instant, not a millisecond later.
    expect_err!(s.transition(&t(OWNER, at(70))).await, Error::LeaseLost { .. });
    expect_err!(s.patch_run(run.id, OWNER, &patch, at(70)).await, Error::LeaseLost { .. });
    assert_eq!(s.run(run.id).await.unwrap(), leased(&run, OWNER, at(70)), "refused writes change nothing");

    let moved = s.transition(&t(OWNER, at_millis(69_999))).await.unwrap();
    assert_eq!(moved.state, RunState::SelectingModel);
}

/// `patch_run` sets the fields given and leaves the rest.
pub async fn patch_run_sets_given_fields(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;

    let first = RunPatch {
        branch: Some("paid/1-fix-the-flaky-test-a1b2c3".into()),
        model: Some("claude-sonnet".into()),
        ..RunPatch::default()
    };
    let want =
        Run { branch: first.branch.clone(), model: first.model.clone(), updated_at: at_millis(5_005), ..run.clone() };
    assert_eq!(s.patch_run(run.id, OWNER, &first, at_millis(5_005)).await.unwrap(), want);

    let failure =
        Failure { step: RunState::Verifying, code: "agent_failed".into(), message: "tests still fail".into() };
    let second = RunPatch {
        pr_url: Some("https://forge.example/acme/widgets/pull/9".into()),
        iterations: Some(3),
        failure: Some(failure.clone()),
        ..RunPatch::default()
    };
    let want = Run { pr_url: second.pr_url.clone(), iterations: 3, failure: Some(failure), updated_at: at(6), ..want };
    assert_eq!(s.patch_run(run.id, OWNER, &second, at(6)).await.unwrap(), want);
    assert_eq!(s.run(run.id).await.unwrap(), want);
}
