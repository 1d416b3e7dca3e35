//! Projects and tracked issues: the [`Catalog`](crate::Catalog) half of the suite.

use pretty_assertions::assert_eq;

use super::*;

/// Create, read, update, list and delete projects.
pub async fn projects_crud(store: Arc<dyn Store>) {
    let s = &*store;
    assert_eq!(s.projects().await.unwrap(), Vec::<Project>::new());

    let newer = Project { created_at: at(60), ..fixtures::project("newer") };
    let older = fixtures::project("older");
    s.put_project(&newer).await.unwrap();
    s.put_project(&older).await.unwrap();
    assert_eq!(s.project(older.id).await.unwrap(), older);
    assert_eq!(s.project(newer.id).await.unwrap(), newer);
    assert_eq!(s.projects().await.unwrap(), vec![older.clone(), newer.clone()], "oldest first");

    let updated = Project {
        clone_url: "/srv/git/older.git".into(),
        default_branch: "main".into(),
        trigger_labels: vec!["only-this".into()],
        allowed_authors: Vec::new(),
        allowed_author_ids: vec![42],
        verify: Vec::new(),
        allowed_paths: Vec::new(),
        labels: LabelConfig::default(),
        max_concurrent_runs: 1,
        ..older.clone()
    };
    s.put_project(&updated).await.unwrap();
    assert_eq!(s.project(older.id).await.unwrap(), updated, "put_project replaces the whole value");
    assert_eq!(s.projects().await.unwrap(), vec![updated.clone(), newer.clone()]);

    s.delete_project(newer.id).await.unwrap();
    expect_err!(s.project(newer.id).await, Error::NotFound { entity: "project", .. });
    assert_eq!(s.projects().await.unwrap(), vec![updated]);
}

/// A project with an active run cannot be deleted; without one, deleting it
/// deletes its issues and runs with everything recorded about them, but not
/// its audit trail.
pub async fn project_delete_needs_no_active_run(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "doomed").await;
    let keep = seed(s, "kept").await;
    s.put_issue(&fixtures::issue(project.id, 1)).await.unwrap();
    s.put_issue(&fixtures::issue(keep.id, 1)).await.unwrap();
    let event = fixtures::audit_event(Some(project.id), "run.cancelled", "issue#1", at(9));
    s.audit(&event).await.unwrap();

    let run = claimed(s, &fixtures::new_run(project.id, 1), OWNER, at(0)).await;
    s.begin_step(run.id, OWNER, RunState::SelectingModel, None, at(1)).await.unwrap();
    append(s, &run, LogStream::Stdout, "output\n", 1024, at(1)).await;
    s.record_usage(&fixtures::usage_record(run.id, at(1))).await.unwrap();
    s.record_decision(&fixtures::decision(run.id)).await.unwrap();
    s.record_outcome(&fixtures::outcome(project.id, run.id, at(2))).await.unwrap();
    let kept_run = queue(s, &fixtures::new_run(keep.id, 1)).await;

    expect_err!(s.delete_project(project.id).await, Error::InvalidInput { .. });
    assert_eq!(s.project(project.id).await.unwrap(), project, "a refused delete changes nothing");
    assert_eq!(s.run(run.id).await.unwrap(), run);

    walk(s, run.clone(), OWNER, &[RunState::Failed], at(3)).await;
    s.delete_project(project.id).await.unwrap();

    expect_err!(s.project(project.id).await, Error::NotFound { entity: "project", .. });
    expect_err!(s.run(run.id).await, Error::NotFound { entity: "run", .. });
    assert_eq!(s.issues(project.id).await.unwrap(), Vec::<TrackedIssue>::new());
    let filter = RunFilter { project_id: Some(project.id), ..RunFilter::default() };
    assert_eq!(s.runs(&filter).await.unwrap(), Vec::<Run>::new());
    assert_eq!(s.steps(run.id).await.unwrap(), Vec::<StepRecord>::new());
    assert_eq!(s.logs(run.id, 0).await.unwrap(), Vec::<LogChunk>::new());
    assert_eq!(s.usage(run.id).await.unwrap(), Vec::<UsageRecord>::new());
    assert_eq!(s.decision(run.id).await.unwrap(), None);
    assert_eq!(s.outcomes(project.id).await.unwrap(), Vec::<Outcome>::new());
    assert_eq!(s.audit_events(Some(project.id)).await.unwrap(), vec![event], "the audit trail outlives the project");

    assert_eq!(s.projects().await.unwrap(), vec![keep.clone()], "other projects are untouched");
    assert_eq!(s.issues(keep.id).await.unwrap(), vec![fixtures::issue(keep.id, 1)]);
    assert_eq!(s.run(kept_run.id).await.unwrap(), kept_run);
}

/// Create, read, update and list tracked issues.
pub async fn issues_crud(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let other = seed(s, "gadgets").await;
    assert_eq!(s.issues(project.id).await.unwrap(), Vec::<TrackedIssue>::new());

    let i1 = TrackedIssue {
        state: IssueState::Closed,
        trusted: false,
        labels: Vec::new(),
        body: String::new(),
        author_id: None,
        ..fixtures::issue(project.id, 1)
    };
    let i2 = fixtures::issue(project.id, 2);
    let i10 = fixtures::issue(project.id, 10);
    for issue in [&i10, &i1, &i2] {
        s.put_issue(issue).await.unwrap();
    }
    assert_eq!(s.issue(project.id, 2).await.unwrap(), i2);
    assert_eq!(s.issues(project.id).await.unwrap(), vec![i1.clone(), i2.clone(), i10.clone()], "by number");

    let i2_changed = TrackedIssue {
        title: "Retitled".into(),
        author: "octocat-renamed".into(),
        author_id: Some(u64::from(u32::MAX) + 7),
        labels: vec!["paid-plan".into()],
        state: IssueState::Closed,
        updated_at: at_millis(5_005),
        ..i2.clone()
    };
    s.put_issue(&i2_changed).await.unwrap();
    assert_eq!(s.issue(project.id, 2).await.unwrap(), i2_changed, "put_issue updates");

    let same_number = fixtures::issue(other.id, 2);
    s.put_issue(&same_number).await.unwrap();
    assert_eq!(s.issues(other.id).await.unwrap(), vec![same_number], "issue numbers are per project");
    assert_eq!(s.issues(project.id).await.unwrap(), vec![i1, i2_changed, i10]);
}

/// Author pins ([`Catalog::pin_author`](crate::Catalog::pin_author)): the
/// first id pinned for a login (case-insensitively, stored lowercase) is the
/// one every later call returns; pins are per project, listed by login, go
/// with their project, and of concurrent first pins exactly one wins.
pub async fn authors_are_pinned_once(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let other = seed(s, "gadgets").await;
    assert_eq!(s.author_pins(project.id).await.unwrap(), Vec::<crate::AuthorPin>::new());

    assert_eq!(s.pin_author(project.id, "OctoCat", fixtures::OCTOCAT_ID, at(1)).await.unwrap(), fixtures::OCTOCAT_ID);
    assert_eq!(s.pin_author(project.id, "octocat", 999, at(2)).await.unwrap(), fixtures::OCTOCAT_ID, "first pin wins");
    assert_eq!(s.pin_author(project.id, "OCTOCAT", fixtures::OCTOCAT_ID, at(3)).await.unwrap(), fixtures::OCTOCAT_ID);
    let big = i64::MAX as u64;
    assert_eq!(s.pin_author(project.id, "hubot", big, at(4)).await.unwrap(), big, "ids up to i64::MAX");
    assert_eq!(s.pin_author(other.id, "octocat", 999, at(5)).await.unwrap(), 999, "pins are per project");

    let pin = |login: &str, user_id, t| crate::AuthorPin {
        project_id: project.id,
        login: login.into(),
        user_id,
        pinned_at: at(t),
    };
    assert_eq!(
        s.author_pins(project.id).await.unwrap(),
        vec![pin("hubot", big, 4), pin("octocat", fixtures::OCTOCAT_ID, 1)],
        "by login, lowercase, first pin's time"
    );

    let calls = (0..8u64).map(|i| {
        let store = store.clone();
        let id = project.id;
        tokio::spawn(async move { store.pin_author(id, "raced", 100 + i, at(10)).await.unwrap() })
    });
    let got: BTreeSet<u64> = futures::future::join_all(calls).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 1, "every concurrent first pin returns the winner's id: {got:?}");
    let winner = got.into_iter().next().unwrap();
    assert!((100..108).contains(&winner));
    assert_eq!(s.pin_author(project.id, "raced", 1, at(11)).await.unwrap(), winner);

    s.delete_project(project.id).await.unwrap();
    assert_eq!(s.author_pins(project.id).await.unwrap(), Vec::<crate::AuthorPin>::new(), "pins go with the project");
    assert_eq!(s.author_pins(other.id).await.unwrap().len(), 1);
}

/// Poll leases ([`Catalog::claim_poll`](crate::Catalog::claim_poll)): one
/// owner per project while its lease runs, renewed by the holder, taken
/// over once it runs out; projects are independent.
pub async fn poll_leases_have_one_holder(store: Arc<dyn Store>) {
    let s = &*store;
    let (p, q) = (fixtures::project("polled"), fixtures::project("other"));
    assert!(s.claim_poll(p.id, "node-a", at(60), at(0)).await.unwrap(), "nobody holds it");
    assert!(!s.claim_poll(p.id, "node-b", at(70), at(10)).await.unwrap(), "a's lease runs");
    assert!(s.claim_poll(q.id, "node-b", at(70), at(10)).await.unwrap(), "another project is free");
    assert!(s.claim_poll(p.id, "node-a", at(120), at(50)).await.unwrap(), "the holder renews");
    assert!(!s.claim_poll(p.id, "node-b", at(130), at(119)).await.unwrap(), "renewed until 120");
    assert!(s.claim_poll(p.id, "node-b", at(180), at(120)).await.unwrap(), "ran out at 120: taken over");
    assert!(!s.claim_poll(p.id, "node-a", at(190), at(130)).await.unwrap(), "b holds it now");
    assert!(s.claim_poll(p.id, "node-b", at(131), at(131)).await.unwrap(), "b releases it (renewed to expire now)");
    assert!(s.claim_poll(p.id, "node-a", at(200), at(131)).await.unwrap(), "released: taken at once");

    // Of concurrent claims by many owners, one wins.
    let wins = futures::future::join_all(
        (0..8).map(|i| async move { s.claim_poll(p.id, &format!("racer-{i}"), at(400), at(300)).await.unwrap() }),
    )
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
}

/// Delivery keys ([`Catalog::record_delivery`](crate::Catalog::record_delivery)):
/// the first record of a key is `true`, a replay inside the window `false`;
/// a key older than `forget_before` counts as new again, and every other
/// key that old is dropped by the same call; of concurrent calls with one
/// key, exactly one is `true`.
pub async fn deliveries_are_recorded_once(store: Arc<dyn Store>) {
    let s = &*store;
    assert!(s.record_delivery("github:aaa", at(10), at(0)).await.unwrap(), "a new key");
    assert!(!s.record_delivery("github:aaa", at(20), at(0)).await.unwrap(), "a replay");
    assert!(!s.record_delivery("github:aaa", at(30), at(10)).await.unwrap(), "recorded at forget_before: a replay");
    assert!(s.record_delivery("github:bbb", at(30), at(0)).await.unwrap(), "another key");
    assert!(s.record_delivery("github:aaa", at(40), at(11)).await.unwrap(), "the window passed: new again");
    assert!(!s.record_delivery("github:aaa", at(41), at(39)).await.unwrap(), "re-recorded at 40");

    // Recording "ccc" at 100, forgetting before 35, drops "bbb" (30), not "aaa" (40).
    assert!(s.record_delivery("github:ccc", at(100), at(35)).await.unwrap());
    assert!(s.record_delivery("github:bbb", at(101), at(0)).await.unwrap(), "bbb was dropped");
    assert!(!s.record_delivery("github:aaa", at(101), at(0)).await.unwrap(), "aaa was kept");

    let key = "github:raced";
    let calls = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.record_delivery(key, at(200 + i), at(0)).await.unwrap() })
    });
    let firsts = futures::future::join_all(calls).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(firsts, 1, "exactly one concurrent call records the key");
}
