//! Claims, leases, project limits, parking and cancellation ([`Runs`](crate::Runs)).

use pretty_assertions::assert_eq;

use super::*;

/// `claim` takes the highest priority first, then the oldest.
pub async fn claim_order(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed_roomy(s, "widgets").await;
    let now = at(100);
    assert_eq!(s.claim(&claim_req(OWNER, hour(), now)).await.unwrap(), None, "nothing to claim");

    let new = |issue, priority, secs| NewRun { priority, created_at: at(secs), ..fixtures::new_run(project.id, issue) };
    let low_old = new(1, 0, 1);
    let high_new = new(2, 5, 3);
    let high_old = new(3, 5, 2);
    let low_new = new(4, 0, 4);
    let negative = new(5, -1, 0);
    for run in [&low_new, &high_new, &negative, &low_old, &high_old] {
        queue(s, run).await;
    }

    for (i, want) in [&high_old, &high_new, &low_old, &low_new, &negative].into_iter().enumerate() {
        let owner = format!("worker-{i}");
        let got = s.claim(&claim_req(&owner, hour(), now)).await.unwrap();
        let want = leased(&Run::from_new(want), &owner, now + hour());
        assert_eq!(got, Some(want.clone()), "claim #{i}");
        assert_eq!(s.run(want.id).await.unwrap(), want);
    }
    assert_eq!(s.claim(&claim_req(OWNER, hour(), now)).await.unwrap(), None, "all runs are leased");
}

/// `claim` skips projects at their `max_concurrent_runs` (other projects
/// are not blocked, priorities still order the rest); ending or releasing a
/// run frees its slot, and so does an expired lease, whose run is then
/// claimable again, even in a project whose limit is one.
pub async fn claim_honours_project_limits(store: Arc<dyn Store>) {
    let s = &*store;
    let widgets = seed_limited(s, "widgets", 2).await;
    let gadgets = seed_limited(s, "gadgets", 1).await;
    let lease = Duration::seconds(30);
    let new = |p: &Project, issue, priority, secs| NewRun {
        priority,
        created_at: at(secs),
        ..fixtures::new_run(p.id, issue)
    };
    let mut w = Vec::new();
    for i in 1..=4 {
        w.push(queue(s, &new(&widgets, i, 5, i as i64)).await);
    }
    let g1 = queue(s, &new(&gadgets, 1, 0, 0)).await;
    let g2 = queue(s, &new(&gadgets, 2, 0, 1)).await;
    let claim = |owner: &'static str, now| async move { s.claim(&claim_req(owner, lease, now)).await.unwrap() };

    assert_eq!(claim("w-1", at(100)).await, Some(leased(&w[0], "w-1", at(130))), "highest priority first");
    assert_eq!(claim("w-2", at(100)).await, Some(leased(&w[1], "w-2", at(130))));
    assert_eq!(
        claim("g-1", at(100)).await,
        Some(leased(&g1, "g-1", at(130))),
        "widgets is full: a lower-priority run of another project is next"
    );
    assert_eq!(claim("x", at(100)).await, None, "every project is at its limit");
    assert_eq!(s.run(w[2].id).await.unwrap(), w[2], "a refused claim changes nothing");

    let w0 = walk(s, leased(&w[0], "w-1", at(130)), "w-1", &[RunState::Failed], at(101)).await;
    assert_eq!(w0.lease_owner.as_deref(), Some("w-1"));
    assert_eq!(claim("w-3", at(101)).await, Some(leased(&w[2], "w-3", at(131))), "an ended run frees its slot");
    assert_eq!(claim("x", at(101)).await, None);

    s.release(w[1].id, "w-2").await.unwrap();
    assert_eq!(claim("w-2b", at(102)).await, Some(leased(&w[1], "w-2b", at(132))), "a release frees its slot");
    assert_eq!(claim("x", at(102)).await, None);

    // At 131 the leases of w[2] (widgets) and g1 (gadgets) have expired.
    assert_eq!(
        claim("w-3b", at(131)).await,
        Some(leased(&w[2], "w-3b", at(161))),
        "an expired lease frees its slot, and its run is claimable again"
    );
    assert_eq!(
        claim("g-1", at(131)).await,
        Some(leased(&g1, "g-1", at(161))),
        "a run is re-claimable by the owner of its expired lease in a project whose limit is one"
    );
    assert_eq!(claim("x", at(131)).await, None);
    assert_eq!(s.run(g2.id).await.unwrap(), g2);
    assert_eq!(s.run(w[3].id).await.unwrap(), w[3]);
}

/// Parks `new` (claimed by [`OWNER`] at `now`, walked to `awaiting_choice`
/// a second later): the run must be the only claimable one.
async fn parked(store: &dyn Store, new: &NewRun, now: Timestamp) -> Run {
    let run = claimed(store, new, OWNER, now).await;
    let run = walk(store, run, OWNER, &path_to(RunState::AwaitingChoice), now + Duration::seconds(1)).await;
    assert!(run.state.is_parked());
    assert_eq!((run.lease_owner.as_deref(), run.lease_expires_at), (None, None), "parking gives the lease up");
    assert_eq!(store.run(run.id).await.unwrap(), run);
    run
}

/// A run parked in `awaiting_choice` (a comparison waiting for a human
/// pick) uses no worker and holds no lease: it does not count against its
/// project's limit, while the same run working did.
pub async fn parked_runs_free_their_slot(store: Arc<dyn Store>) {
    let s = &*store;
    let solo = seed_limited(s, "solo", 1).await;
    let working = claimed(s, &fixtures::new_run(solo.id, 1), OWNER, at(0)).await;
    let working = walk(s, working, OWNER, &path_to(RunState::RunningAgent), at(1)).await;
    let next = queue(s, &fixtures::new_run(solo.id, 2)).await;
    assert_eq!(s.claim(&claim_req(OTHER, hour(), at(2))).await.unwrap(), None, "the working run holds the only slot");

    let parked = walk(s, working, OWNER, &[RunState::AwaitingChoice], at(3)).await;
    assert_eq!(parked.lease_owner, None, "parking gives the lease up");
    let got = s.claim(&claim_req(OTHER, hour(), at(4))).await.unwrap();
    assert_eq!(got.map(|r| r.id), Some(next.id), "the parked run leaves its project's only slot free");
    assert_eq!(s.claim(&claim_req(OTHER, hour(), at(4))).await.unwrap(), None, "the parked run is not claimed");
    assert_eq!(s.run(parked.id).await.unwrap(), parked);
}

/// No claim takes a parked run, however late, while a run of the same
/// project queued after it is claimed (the control). A parked run has no
/// lease to heartbeat and none to release.
pub async fn parked_runs_are_never_claimed(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed_roomy(s, "widgets").await;
    let run = parked(s, &NewRun { priority: 100, ..fixtures::new_run(project.id, 1) }, at(0)).await;
    let control = queue(s, &fixtures::new_run(project.id, 2)).await;

    let got = s.claim(&claim_req(OTHER, hour(), at(2))).await.unwrap();
    assert_eq!(got, Some(leased(&control, OTHER, at(2) + hour())), "the lower-priority queued run, not the parked one");
    walk(s, leased(&control, OTHER, at(2) + hour()), OTHER, &[RunState::Failed], at(3)).await;
    for later in [at(3), at(2) + hour() * 24, at(2) + Duration::days(365)] {
        assert_eq!(s.claim(&claim_req(OTHER, hour(), later)).await.unwrap(), None, "nothing at {later}");
    }
    expect_err!(s.heartbeat(run.id, OWNER, hour(), at(4)).await, Error::LeaseLost { .. });
    expect_err!(
        s.patch_run(run.id, OWNER, &RunPatch { iterations: Some(9), ..RunPatch::default() }, at(4)).await,
        Error::LeaseLost { .. }
    );
    expect_err!(s.begin_step(run.id, OWNER, RunState::AwaitingChoice, None, at(4)).await, Error::LeaseLost { .. });
    s.release(run.id, OWNER).await.unwrap();
    assert_eq!(s.run(run.id).await.unwrap(), run, "refused writes and a no-op release change nothing");
}

/// A transition out of a parked state needs no lease (a pick comes from
/// anywhere) and leaves the run unleased, so it is claimed as usual. The
/// compare-and-set still holds: a stale `from` is refused.
pub async fn runs_moved_on_from_parked_are_claimed(store: Arc<dyn Store>) {
    let s = &*store;
    let solo = seed_limited(s, "solo", 1).await;
    let run = parked(s, &fixtures::new_run(solo.id, 1), at(0)).await;
    assert_eq!(s.claim(&claim_req(OTHER, hour(), at(2))).await.unwrap(), None, "parked: nothing to claim");

    let stale = Transition {
        run_id: run.id,
        from: RunState::RunningAgent,
        to: RunState::Committing,
        owner: OWNER.into(),
        at: at(3),
        patch: Default::default(),
    };
    expect_err!(s.transition(&stale).await, Error::LeaseLost { .. } | Error::IllegalTransition { .. });
    let pick = Transition { from: RunState::AwaitingChoice, owner: "api".into(), ..stale };
    let moved = s.transition(&pick).await.unwrap();
    let want = Run { state: RunState::Committing, updated_at: at(3), ..run.clone() };
    assert_eq!(moved, want, "moved on, still unleased");
    assert_eq!(s.run(run.id).await.unwrap(), want);
    expect_err!(s.transition(&pick).await, Error::IllegalTransition { .. });

    let got = s.claim(&claim_req(OTHER, hour(), at(4))).await.unwrap();
    assert_eq!(got, Some(leased(&want, OTHER, at(4) + hour())), "a run moved on is claimed as usual");
    let next = queue(s, &fixtures::new_run(solo.id, 2)).await;
    assert_eq!(s.claim(&claim_req(OWNER, hour(), at(5))).await.unwrap(), None, "and holds its project's slot again");
    walk(s, leased(&want, OTHER, at(4) + hour()), OTHER, &[RunState::PolicyCheck], at(6)).await;
    assert_eq!(s.run(next.id).await.unwrap(), next);
}

/// Parking through `finish_step_and_transition` (the engine's usual write)
/// also gives the lease up, in the same write that journals the step.
pub async fn parking_through_finish_step_and_transition(store: Arc<dyn Store>) {
    let s = &*store;
    let solo = seed_limited(s, "solo", 1).await;
    let run = claimed(s, &fixtures::new_run(solo.id, 1), OWNER, at(0)).await;
    let run = walk(s, run, OWNER, &path_to(RunState::RunningAgent), at(1)).await;
    s.begin_step(run.id, OWNER, RunState::RunningAgent, None, at(2)).await.unwrap();
    let t = Transition {
        run_id: run.id,
        from: RunState::RunningAgent,
        to: RunState::AwaitingChoice,
        owner: OWNER.into(),
        at: at(3),
        patch: Default::default(),
    };
    let moved = s.finish_step_and_transition(&t, Ok(serde_json::json!({ "candidates": 2 }))).await.unwrap();
    let want = Run {
        state: RunState::AwaitingChoice,
        updated_at: at(3),
        lease_owner: None,
        lease_expires_at: None,
        ..run.clone()
    };
    assert_eq!(moved, want);
    assert_eq!(s.run(run.id).await.unwrap(), want);
    assert_eq!(s.steps(run.id).await.unwrap().last().map(|r| r.status), Some(StepStatus::Done));
    let next = queue(s, &fixtures::new_run(solo.id, 2)).await;
    let got = s.claim(&claim_req(OTHER, hour(), at(4))).await.unwrap();
    assert_eq!(got.map(|r| r.id), Some(next.id), "the parked run's slot is free, and it is not claimed");
}

/// Cancelling a parked run sends it to cleanup (nobody works on it to see
/// the flag), with the failure the engine records for a cancellation, and
/// unleased: a worker claims it there.
pub async fn cancelling_a_parked_run_sends_it_to_cleanup(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = parked(s, &fixtures::new_run(project.id, 1), at(0)).await;
    assert!(!s.cancel_requested(run.id).await.unwrap());

    let got = s.request_cancel(run.id, at(5)).await.unwrap();
    let want = Run {
        state: RunState::Cleaning,
        failure: Some(Failure::cancelled(RunState::AwaitingChoice)),
        updated_at: at(5),
        ..run.clone()
    };
    assert_eq!(got, want);
    assert_eq!(s.run(run.id).await.unwrap(), want);
    assert!(s.cancel_requested(run.id).await.unwrap());
    assert_eq!(s.request_cancel(run.id, at(6)).await.unwrap(), want, "in cleanup already: only flagged");

    let claimed = s.claim(&claim_req(OTHER, hour(), at(7))).await.unwrap();
    assert_eq!(claimed, Some(leased(&want, OTHER, at(7) + hour())), "a worker cleans it up");
    walk(s, leased(&want, OTHER, at(7) + hour()), OTHER, &[RunState::Cancelled], at(8)).await;
}

/// Eight claimers race on a project whose limit is 2 and one whose limit is
/// 3: exactly 2 and 3 runs are leased. After one run of each ends, a second
/// race leases exactly one more of each.
pub async fn project_limits_hold_under_concurrent_claimers(store: Arc<dyn Store>) {
    const CLAIMERS: usize = 8;
    let s = &*store;
    let two = seed_limited(s, "widgets", 2).await;
    let three = seed_limited(s, "gadgets", 3).await;
    for i in 1..=10 {
        queue(s, &fixtures::new_run(two.id, i)).await;
        queue(s, &NewRun { priority: -1, ..fixtures::new_run(three.id, i) }).await;
    }
    let race = |round: usize, now: Timestamp| {
        let barrier = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
        let tasks: Vec<_> = (0..CLAIMERS)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    let owner = format!("racer-{round}-{i}");
                    barrier.wait().await;
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        if let Some(run) = store.claim(&claim_req(&owner, hour(), now)).await.unwrap() {
                            got.push(run);
                        }
                    }
                    got
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        }
    };
    let of = |runs: &[Run], p: &Project| runs.iter().filter(|r| r.project_id == p.id).cloned().collect::<Vec<_>>();

    let first = race(1, at(0)).await;
    let ids: BTreeSet<_> = first.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), first.len(), "no run was claimed twice");
    assert_eq!(of(&first, &two).len(), 2, "limit 2 holds under {CLAIMERS} claimers: {first:#?}");
    assert_eq!(of(&first, &three).len(), 3, "limit 3 holds, and the full project did not block this one");

    for run in [&of(&first, &two)[0], &of(&first, &three)[0]] {
        let owner = run.lease_owner.clone().unwrap();
        walk(s, run.clone(), &owner, &[RunState::Failed], at(1)).await;
    }
    let second = race(2, at(2)).await;
    assert_eq!(of(&second, &two).len(), 1, "one slot freed, one run claimed: {second:#?}");
    assert_eq!(of(&second, &three).len(), 1, "one slot freed, one run claimed: {second:#?}");
    let leased_now = s.runs(&RunFilter { active_only: true, ..RunFilter::default() }).await.unwrap();
    let holding = |p: &Project| leased_now.iter().filter(|r| r.project_id == p.id && r.lease_owner.is_some()).count();
    assert_eq!((holding(&two), holding(&three)), (2, 3), "the store agrees");
}

/// A claimed run is not claimable until its lease expires; then another
/// worker takes it over, and the first loses it.
pub async fn leases_expire_and_are_reclaimed(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let lease = Duration::seconds(30);

    let got = s.claim(&claim_req(OWNER, lease, at(100))).await.unwrap();
    assert_eq!(got, Some(leased(&run, OWNER, at(130))));
    let run = walk(s, got.unwrap(), OWNER, &[RunState::SelectingModel], at(101)).await;

    assert_eq!(s.claim(&claim_req(OTHER, lease, at(101))).await.unwrap(), None);
    assert_eq!(s.claim(&claim_req(OTHER, lease, at_millis(129_999))).await.unwrap(), None);

    let taken = s.claim(&claim_req(OTHER, lease, at(130))).await.unwrap();
    let want = leased(&run, OTHER, at(160));
    assert_eq!(taken, Some(want.clone()), "an expired lease is re-claimable, state kept");

    expect_err!(s.heartbeat(run.id, OWNER, lease, at(131)).await, Error::LeaseLost { .. });
    expect_err!(s.release(run.id, OWNER).await, Error::LeaseLost { .. });
    let stale = Transition {
        run_id: run.id,
        from: RunState::SelectingModel,
        to: RunState::Provisioning,
        owner: OWNER.into(),
        at: at(131),
        patch: Default::default(),
    };
    expect_err!(s.transition(&stale).await, Error::LeaseLost { .. });
    assert_eq!(s.run(run.id).await.unwrap(), want);

    walk(s, want, OTHER, &[RunState::Provisioning], at(132)).await;
}

/// Heartbeats extend a lease; release makes the run claimable.
pub async fn heartbeat_and_release(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    let run = queue(s, &fixtures::new_run(project.id, 1)).await;
    let lease = Duration::seconds(30);

    s.claim(&claim_req(OWNER, lease, at(0))).await.unwrap();
    s.heartbeat(run.id, OWNER, lease, at(20)).await.unwrap();
    assert_eq!(s.run(run.id).await.unwrap(), leased(&run, OWNER, at(50)), "heartbeat sets now + lease");
    assert_eq!(s.claim(&claim_req(OTHER, lease, at(40))).await.unwrap(), None, "extended past the first expiry");

    expect_err!(s.heartbeat(run.id, OTHER, lease, at(41)).await, Error::LeaseLost { .. });
    expect_err!(s.release(run.id, OTHER).await, Error::LeaseLost { .. });
    assert_eq!(s.run(run.id).await.unwrap(), leased(&run, OWNER, at(50)));

    s.release(run.id, OWNER).await.unwrap();
    assert_eq!(s.run(run.id).await.unwrap(), run, "release clears the lease");
    s.release(run.id, OWNER).await.unwrap();

    let got = s.claim(&claim_req(OTHER, lease, at(42))).await.unwrap();
    assert_eq!(got, Some(leased(&run, OTHER, at(72))), "a released run is claimable at once");

    expect_err!(s.heartbeat(run.id, OTHER, lease, at(72)).await, Error::LeaseLost { .. });
    assert_eq!(s.run(run.id).await.unwrap(), leased(&run, OTHER, at(72)), "an expired lease is not renewed");
    s.release(run.id, OTHER).await.unwrap();
    assert_eq!(s.run(run.id).await.unwrap(), run, "the holder may release an expired lease");
}

/// Runs in an end state are never claimed, leased or not.
pub async fn ended_runs_are_never_claimed(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;
    for (i, end) in RunState::ALL.into_iter().filter(|s| s.is_terminal()).enumerate() {
        let new = NewRun { priority: 100, ..fixtures::new_run(project.id, i as u64 + 1) };
        let run = claimed(s, &new, OWNER, at(0)).await;
        let run = walk(s, run, OWNER, &path_to(end), at(1)).await;
        if i % 2 == 0 {
            s.release(run.id, OWNER).await.unwrap();
        }
    }
    let cancelled = queue(s, &NewRun { priority: 100, ..fixtures::new_run(project.id, 99) }).await;
    s.request_cancel(cancelled.id, at(1)).await.unwrap();

    let waiting = queue(s, &fixtures::new_run(project.id, 100)).await;
    let later = at(10) + hour();
    let got = s.claim(&claim_req(OTHER, hour(), later)).await.unwrap();
    assert_eq!(got, Some(leased(&waiting, OTHER, later + hour())), "only the unfinished run is claimable");
    assert_eq!(s.claim(&claim_req(OTHER, hour(), later)).await.unwrap(), None);
}

/// Cancelling an unleased run ends it; a leased run gets a flag its worker
/// acts on; an ended run is left alone.
pub async fn cancellation(store: Arc<dyn Store>) {
    let s = &*store;
    let project = seed(s, "widgets").await;

    let queued = queue(s, &fixtures::new_run(project.id, 1)).await;
    let cancelled = Run { state: RunState::Cancelled, updated_at: at(5), finished_at: Some(at(5)), ..queued.clone() };
    assert_eq!(s.request_cancel(queued.id, at(5)).await.unwrap(), cancelled, "unleased: cancelled at once");
    assert_eq!(s.run(queued.id).await.unwrap(), cancelled);
    assert!(s.cancel_requested(queued.id).await.unwrap());
    assert_eq!(s.request_cancel(queued.id, at(6)).await.unwrap(), cancelled, "a second request changes nothing");

    let busy = claimed(s, &fixtures::new_run(project.id, 2), OWNER, at(0)).await;
    let busy = walk(s, busy, OWNER, &path_to(RunState::RunningAgent), at(1)).await;
    assert!(!s.cancel_requested(busy.id).await.unwrap());
    assert_eq!(s.request_cancel(busy.id, at(6)).await.unwrap(), busy, "leased: only flagged");
    assert_eq!(s.run(busy.id).await.unwrap(), busy);
    assert!(s.cancel_requested(busy.id).await.unwrap());
    walk(s, busy, OWNER, &[RunState::Cleaning, RunState::Cancelled], at(7)).await;

    let orphan = queue(s, &fixtures::new_run(project.id, 3)).await;
    s.claim(&claim_req(OWNER, Duration::seconds(10), at(0))).await.unwrap();
    let got = s.request_cancel(orphan.id, at(10)).await.unwrap();
    let want = Run { state: RunState::Cancelled, updated_at: at(10), finished_at: Some(at(10)), ..orphan };
    assert_eq!(got, want, "an expired lease does not hold off cancellation");
    assert_eq!(s.run(want.id).await.unwrap(), want);

    let done = claimed(s, &fixtures::new_run(project.id, 4), OWNER, at(20)).await;
    let done = walk(s, done, OWNER, &[RunState::Failed], at(21)).await;
    assert_eq!(s.request_cancel(done.id, at(22)).await.unwrap(), done, "an ended run is left alone");
    assert!(!s.cancel_requested(done.id).await.unwrap());
}
