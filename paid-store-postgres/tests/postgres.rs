#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What is particular to PostgreSQL: races between workers on one run,
//! migrations from several handles at once, exact per-project limits under
//! concurrent claimers, LISTEN/NOTIFY wake-ups, and error mapping.

use paid_core::store::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Duration as Lease;
use paid_core::testing::fixtures::{self, at};
use paid_core::{ClaimRequest, Error, NewRun, Project, ProjectId, Run, RunId, RunState, Store, Transition};
use paid_store_postgres::{PgStore, PgStoreOptions, SCHEMA_VERSION, Wake, testing};
use pretty_assertions::assert_eq;
use tokio::sync::Barrier;

fn claim(owner: &str, lease: Lease, now: chrono::DateTime<chrono::Utc>) -> ClaimRequest {
    ClaimRequest { owner: owner.into(), lease, now }
}

fn step(run: &Run, from: RunState, to: RunState, owner: &str, secs: i64) -> Transition {
    Transition { run_id: run.id, from, to, owner: owner.into(), at: at(secs), patch: Default::default() }
}

/// Two workers race on one run, many times over, on two pools (two
/// "processes"). Every race has exactly one winner; the loser is refused by
/// the store with `LeaseLost` or `IllegalTransition`, and nothing it tried
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_racing_on_one_run_have_exactly_one_winner() {
    const ROUNDS: u64 = 40;
    let options = testing::fresh_options();
    let a = PgStore::connect_with(options.clone()).await.unwrap();
    let b = PgStore::connect_with(options).await.unwrap();
    let project = fixtures::project("race");
    a.put_project(&project).await.unwrap();
    let lease = Lease::seconds(30);
    let workers: [(Arc<dyn Store>, &str); 2] = [(Arc::new(a.clone()), "worker-a"), (Arc::new(b.clone()), "worker-b")];

    for round in 0..ROUNDS {
        let run = a.create_run(&fixtures::new_run(project.id, round + 1)).await.unwrap();

        // 1. Both claim at once: one gets the run.
        let barrier = Arc::new(Barrier::new(2));
        let claims = futures_join(workers.iter().map(|(store, owner)| {
            let (store, owner, barrier) = (store.clone(), owner.to_string(), barrier.clone());
            async move {
                barrier.wait().await;
                store.claim(&claim(&owner, lease, at(0))).await.unwrap().map(|r| (owner, r))
            }
        }))
        .await;
        let winners: Vec<_> = claims.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one claim wins: {winners:?}");
        let (holder, claimed) = winners.into_iter().next().unwrap();
        assert_eq!(claimed.id, run.id);
        let other = if holder == "worker-a" { "worker-b" } else { "worker-a" };

        // 2. Both move it on at once (the loser believes it holds it too).
        let results =
            race(&workers, |owner| step(&claimed, RunState::Queued, RunState::SelectingModel, owner, 1)).await;
        assert_one_winner(round, &holder, &results, |e| matches!(e, Error::LeaseLost { .. }));

        // 3. The holder's lease expires; the other takes the run over while
        //    the stale holder and the new one both try to move it.
        let taken = workers
            .iter()
            .find(|(_, o)| *o == other)
            .unwrap()
            .0
            .claim(&claim(other, lease, at(31)))
            .await
            .unwrap()
            .expect("an expired lease is claimable");
        assert_eq!(taken.id, run.id);
        assert_eq!(taken.state, RunState::SelectingModel, "the state survives the takeover");
        let results =
            race(&workers, |owner| step(&taken, RunState::SelectingModel, RunState::Provisioning, owner, 32)).await;
        assert_one_winner(round, other, &results, |e| matches!(e, Error::LeaseLost { .. }));
        let stale_journal = workers
            .iter()
            .find(|(_, o)| *o == holder)
            .unwrap()
            .0
            .begin_step(run.id, &holder, RunState::Provisioning, None, at(33))
            .await;
        assert!(matches!(stale_journal, Err(Error::LeaseLost { .. })), "{stale_journal:?}");

        // 4. The holder itself races two moves from one state: compare-and-set.
        let store = &workers.iter().find(|(_, o)| *o == other).unwrap().0;
        let (to_agent, to_failed) = (
            step(&taken, RunState::Provisioning, RunState::RunningAgent, other, 34),
            step(&taken, RunState::Provisioning, RunState::Failed, other, 34),
        );
        let (x, y) = tokio::join!(store.transition(&to_agent), store.transition(&to_failed));
        let oks = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "round {round}: one of two moves from one state wins: {x:?} {y:?}");
        let loser = if x.is_ok() { &y } else { &x };
        assert!(matches!(loser, Err(Error::IllegalTransition { .. })), "{loser:?}");
        let end = a.run(run.id).await.unwrap();
        assert_eq!(Some(end.state), [x, y].into_iter().find_map(|r| r.ok()).map(|r| r.state));
        assert_eq!(end.lease_owner.as_deref(), Some(other));

        // Clear the issue's active run for the next round.
        if !end.state.is_terminal() {
            store.transition(&step(&end, end.state, RunState::Failed, other, 35)).await.unwrap();
        }
        let steps = a.steps(run.id).await.unwrap();
        assert!(steps.is_empty(), "the stale holder journaled nothing: {steps:?}");
    }
    b.close().await;
    a.drop_schema().await.unwrap();
}

async fn futures_join<F: std::future::Future + Send + 'static>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Runs `t(owner)` on both workers at once.
async fn race(
    workers: &[(Arc<dyn Store>, &str); 2],
    t: impl Fn(&str) -> Transition,
) -> Vec<(String, paid_core::Result<Run>)> {
    let barrier = Arc::new(Barrier::new(2));
    futures_join(workers.iter().map(|(store, owner)| {
        let (store, owner, barrier, t) = (store.clone(), owner.to_string(), barrier.clone(), t(owner));
        async move {
            barrier.wait().await;
            (owner, store.transition(&t).await)
        }
    }))
    .await
}

fn assert_one_winner(
    round: u64,
    want: &str,
    results: &[(String, paid_core::Result<Run>)],
    loser_error: impl Fn(&Error) -> bool,
) {
    let winners: Vec<&str> = results.iter().filter(|(_, r)| r.is_ok()).map(|(o, _)| o.as_str()).collect();
    assert_eq!(winners, vec![want], "round {round}: {results:?}");
    for (_, r) in results.iter().filter(|(_, r)| r.is_err()) {
        let e = r.as_ref().unwrap_err();
        assert!(loser_error(e), "round {round}: the loser got {e:?}");
    }
}

/// Four handles migrate one new schema at once: one applies the
/// migrations, the others wait on the advisory lock and find nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_from_four_handles_at_once_apply_once() {
    let options = testing::fresh_options();
    let stores = futures_join((0..4).map(|_| {
        let options = options.clone();
        async move { PgStore::connect_with(options).await }
    }))
    .await;
    let stores: Vec<PgStore> = stores.into_iter().map(|s| s.unwrap()).collect();
    let versions: Vec<(i32, String)> = sqlx::query_as("SELECT version, name FROM schema_migrations ORDER BY version")
        .fetch_all(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());

    // All four see one working schema.
    let project = fixtures::project("migrated");
    stores[1].put_project(&project).await.unwrap();
    for s in &stores {
        assert_eq!(s.project(project.id).await.unwrap(), project);
    }
    for s in &stores[1..] {
        s.close().await;
    }
    stores[0].clone().drop_schema().await.unwrap();
}

/// Many stores on many schemas migrating at once do not block each other
/// into failure, and a schema from a newer build is refused with advice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_migrations_can_be_required() {
    let store = testing::fresh_store().await;
    sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')")
        .bind(SCHEMA_VERSION + 1)
        .execute(store.pool())
        .await
        .unwrap();
    let options = PgStoreOptions::new(testing::database_url()).schema(store.schema());
    let err = PgStore::connect_with(options).await.unwrap_err();
    assert!(matches!(err, paid_store_postgres::Error::SchemaTooNew { .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade Paid"), "{err}");
    store.drop_schema().await.unwrap();

    let fresh = testing::fresh_options().migrate(false);
    let err = PgStore::connect_with(fresh).await.unwrap_err();
    assert!(err.to_string().contains("migrations on"), "{err}");
}

/// With limits on, a project never has more leased active runs than its
/// `max_concurrent_runs`, however many workers claim at once; other
/// projects' runs are taken meanwhile, and every run is done exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn project_limits_hold_under_concurrent_claimers() {
    const CLAIMERS: usize = 8;
    const RUNS_PER_PROJECT: u64 = 24;
    let options = testing::fresh_options().project_limits(true).max_connections(12);
    let store = PgStore::connect_with(options).await.unwrap();
    let narrow = Project { max_concurrent_runs: 1, ..fixtures::project("narrow") };
    let medium = Project { max_concurrent_runs: 3, ..fixtures::project("medium") };
    for p in [&narrow, &medium] {
        store.put_project(p).await.unwrap();
        for i in 0..RUNS_PER_PROJECT {
            store.create_run(&NewRun { created_at: at(i as i64), ..fixtures::new_run(p.id, i + 1) }).await.unwrap();
        }
    }
    let limits: BTreeMap<ProjectId, i64> = [(narrow.id, 1), (medium.id, 3)].into_iter().collect();
    let busy: Arc<BTreeMap<ProjectId, AtomicI64>> = Arc::new(limits.keys().map(|p| (*p, AtomicI64::new(0))).collect());
    let peak: Arc<BTreeMap<ProjectId, AtomicI64>> = Arc::new(limits.keys().map(|p| (*p, AtomicI64::new(0))).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let now = chrono::Utc::now();
    let started = Instant::now();

    let workers = futures_join((0..CLAIMERS).map(|w| {
        let (store, busy, peak, done) = (store.clone(), busy.clone(), peak.clone(), done.clone());
        async move {
            let owner = format!("w{w}");
            let mut mine = Vec::new();
            while done.load(Ordering::SeqCst) < 2 * RUNS_PER_PROJECT as usize {
                assert!(started.elapsed() < Duration::from_secs(60), "limits test took too long");
                let Some(run) = store.claim(&claim(&owner, Lease::hours(1), now)).await.unwrap() else {
                    // not an assertion: backs off while nothing is claimable; the loop is bounded by the 60 s check above
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                };
                let n = busy[&run.project_id].fetch_add(1, Ordering::SeqCst) + 1;
                peak[&run.project_id].fetch_max(n, Ordering::SeqCst);
                // not an assertion: holds the claimed run a moment, so that claims overlap (the peaks are asserted)
                tokio::time::sleep(Duration::from_millis(3)).await;
                busy[&run.project_id].fetch_sub(1, Ordering::SeqCst);
                store
                    .transition(&Transition {
                        run_id: run.id,
                        from: RunState::Queued,
                        to: RunState::Failed,
                        owner: owner.clone(),
                        at: now,
                        patch: Default::default(),
                    })
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                mine.push(run.id);
            }
            mine
        }
    }))
    .await;
    let all: Vec<RunId> = workers.into_iter().flatten().collect();
    let unique: BTreeSet<RunId> = all.iter().copied().collect();
    assert_eq!(all.len(), 2 * RUNS_PER_PROJECT as usize, "every run done once");
    assert_eq!(unique.len(), all.len(), "no run claimed twice");
    for (project, limit) in &limits {
        let seen = peak[project].load(Ordering::SeqCst);
        assert!(seen <= *limit, "project with limit {limit} had {seen} leased runs at once");
        assert!(seen >= 1);
    }
    assert_eq!(peak[&medium.id].load(Ordering::SeqCst), 3, "the wider project used its slots");
    store.drop_schema().await.unwrap();
}

/// With limits on, a full project's runs wait while other projects' runs,
/// even of lower priority, are claimed; a released or ended run frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_project_is_skipped_until_a_slot_frees() {
    let store = PgStore::connect_with(testing::fresh_options().project_limits(true)).await.unwrap();
    let full = Project { max_concurrent_runs: 1, ..fixtures::project("full") };
    let other = fixtures::project("other");
    for p in [&full, &other] {
        store.put_project(p).await.unwrap();
    }
    let first = store.create_run(&NewRun { priority: 9, ..fixtures::new_run(full.id, 1) }).await.unwrap();
    let second = store.create_run(&NewRun { priority: 9, ..fixtures::new_run(full.id, 2) }).await.unwrap();
    let low = store.create_run(&NewRun { priority: -5, ..fixtures::new_run(other.id, 1) }).await.unwrap();
    let hour = Lease::hours(1);

    assert_eq!(store.claim(&claim("a", hour, at(0))).await.unwrap().map(|r| r.id), Some(first.id));
    assert_eq!(
        store.claim(&claim("b", hour, at(0))).await.unwrap().map(|r| r.id),
        Some(low.id),
        "full project skipped"
    );
    assert_eq!(store.claim(&claim("c", hour, at(0))).await.unwrap(), None);

    store.release(first.id, "a").await.unwrap();
    assert_eq!(
        store.claim(&claim("c", hour, at(1))).await.unwrap().map(|r| r.id),
        Some(first.id),
        "released: its slot is free"
    );
    store
        .transition(&Transition {
            run_id: first.id,
            from: RunState::Queued,
            to: RunState::Cancelled,
            owner: "c".into(),
            at: at(2),
            patch: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(
        store.claim(&claim("d", hour, at(3))).await.unwrap().map(|r| r.id),
        Some(second.id),
        "ended: its slot is free"
    );
    // An expired lease does not hold a slot.
    assert_eq!(store.claim(&claim("e", hour, at(3) + hour)).await.unwrap().map(|r| r.id), Some(second.id));
    store.drop_schema().await.unwrap();
}

/// An idle worker waiting on the listener wakes as soon as a run is queued
/// or a lease is released, not at its poll interval; a notification between
/// two waits is not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_worker_at_once() {
    let store = testing::fresh_store().await;
    let project = fixtures::project("wake");
    store.put_project(&project).await.unwrap();
    let mut work = store.work_listener().await.unwrap();
    let poll = Duration::from_secs(30);

    assert_eq!(work.wait(Duration::from_millis(200)).await, Wake::TimedOut, "nothing happened yet");

    let queue = {
        let store = store.clone();
        tokio::spawn(async move {
            // not an assertion: queues the run while the wait below is blocked; the assertion is that it wakes at once
            tokio::time::sleep(Duration::from_millis(300)).await;
            store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap()
        })
    };
    let started = Instant::now();
    assert_eq!(work.wait(poll).await, Wake::Notified);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}, not at once");
    let run = queue.await.unwrap();

    // A claim does not notify; a release does.
    store.claim(&claim("w", Lease::hours(1), at(0))).await.unwrap().unwrap();
    assert_eq!(work.wait(Duration::from_millis(300)).await, Wake::TimedOut);
    store.release(run.id, "w").await.unwrap();
    // Arrived before this wait began: still seen.
    // not an assertion: lets the release's notification arrive before the wait begins; were it later, the wait would still be notified at once
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert_eq!(work.wait(poll).await, Wake::Notified);
    assert!(started.elapsed() < Duration::from_secs(5));

    // The convenience wait works too.
    assert_eq!(store.wait_for_work(Duration::from_millis(100)).await.unwrap(), Wake::TimedOut);
    store.drop_schema().await.unwrap();
}

/// Claims `issue` of `project` for `owner` at `secs` and walks it to
/// `awaiting_choice`. It must be the only claimable run.
async fn park(store: &PgStore, project: &Project, issue: u64, owner: &str, secs: i64) -> Run {
    let run = store.create_run(&fixtures::new_run(project.id, issue)).await.unwrap();
    let claimed = store.claim(&claim(owner, Lease::hours(1), at(secs))).await.unwrap();
    assert_eq!(claimed.map(|r| r.id), Some(run.id));
    let mut from = RunState::Queued;
    for to in [RunState::SelectingModel, RunState::Provisioning, RunState::RunningAgent, RunState::AwaitingChoice] {
        store.transition(&step(&run, from, to, owner, secs)).await.unwrap();
        from = to;
    }
    store.run(run.id).await.unwrap()
}

/// Waits out notifications already sent, so the next wait sees only what
/// comes after.
async fn drain(work: &mut paid_store_postgres::WorkListener) {
    while work.wait(Duration::from_millis(300)).await == Wake::Notified {}
}

/// Parking frees a slot of the project, and moving a parked run on (a pick
/// or a cancel) makes it claimable: each wakes an idle worker at once,
/// where a plain step between two working states does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parking_and_moving_a_parked_run_on_wake_idle_workers() {
    let store = PgStore::connect_with(testing::fresh_options().project_limits(true)).await.unwrap();
    let solo = Project { max_concurrent_runs: 1, ..fixtures::project("solo") };
    store.put_project(&solo).await.unwrap();
    let mut work = store.work_listener().await.unwrap();
    let poll = Duration::from_secs(30);
    let woke_at_once = |what: &'static str| {
        let started = Instant::now();
        move |wake: Wake| {
            assert_eq!(wake, Wake::Notified, "{what} wakes idle workers");
            assert!(started.elapsed() < Duration::from_secs(5), "{what}: woke after {:?}", started.elapsed());
        }
    };

    let run = store.create_run(&fixtures::new_run(solo.id, 1)).await.unwrap();
    store.claim(&claim("w", Lease::hours(1), at(0))).await.unwrap().unwrap();
    let next = store.create_run(&fixtures::new_run(solo.id, 2)).await.unwrap();
    drain(&mut work).await;
    store.transition(&step(&run, RunState::Queued, RunState::SelectingModel, "w", 1)).await.unwrap();
    assert_eq!(work.wait(Duration::from_millis(500)).await, Wake::TimedOut, "a plain step frees nothing");
    assert_eq!(store.claim(&claim("x", Lease::hours(1), at(1))).await.unwrap(), None, "the project is full");
    for (from, to) in
        [(RunState::SelectingModel, RunState::Provisioning), (RunState::Provisioning, RunState::RunningAgent)]
    {
        store.transition(&step(&run, from, to, "w", 1)).await.unwrap();
    }
    drain(&mut work).await;

    let check = woke_at_once("parking");
    store.transition(&step(&run, RunState::RunningAgent, RunState::AwaitingChoice, "w", 2)).await.unwrap();
    check(work.wait(poll).await);
    let claimed = store.claim(&claim("x", Lease::hours(1), at(2))).await.unwrap();
    assert_eq!(claimed.map(|r| r.id), Some(next.id), "the parked run's slot went to the next run");
    store.transition(&step(&next, RunState::Queued, RunState::Failed, "x", 3)).await.unwrap();
    drain(&mut work).await;

    let check = woke_at_once("a pick");
    store.transition(&step(&run, RunState::AwaitingChoice, RunState::Committing, "api", 4)).await.unwrap();
    check(work.wait(poll).await);
    assert_eq!(store.claim(&claim("y", Lease::hours(1), at(4))).await.unwrap().map(|r| r.id), Some(run.id));

    let other = fixtures::project("other");
    store.put_project(&other).await.unwrap();
    let parked = park(&store, &other, 1, "z", 5).await;
    drain(&mut work).await;
    let check = woke_at_once("cancelling a parked run");
    assert_eq!(store.request_cancel(parked.id, at(6)).await.unwrap().state, RunState::Cleaning);
    check(work.wait(poll).await);
    store.drop_schema().await.unwrap();
}

/// Migration 4 on a schema that ran 0003 with runs parked the old way (a
/// ten-year lease): waiting runs lose the lease, a picked one moves to
/// `committing`, a cancelled one to `cleaning`, and `paid_project_has_room`
/// counts leased runs without the exception for `awaiting_choice`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_4_brings_runs_parked_by_an_older_build_into_shape() {
    let store = testing::fresh_store().await;
    let project = Project { max_concurrent_runs: 1, ..fixtures::project("legacy") };
    store.put_project(&project).await.unwrap();
    let waiting = park(&store, &project, 1, "old", 0).await;
    let picked = park(&store, &project, 2, "old", 1).await;
    let cancelled = park(&store, &project, 3, "old", 2).await;
    // What the old build left: a ten-year lease on the waiting run, the
    // others released by a pick and a cancel, and 0003's function.
    let pool = store.pool();
    sqlx::query("UPDATE runs SET lease_owner = 'old', lease_expires_at = now() + interval '3650 days' WHERE id = $1")
        .bind(waiting.id.0)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET cancel_requested = TRUE WHERE id = $1")
        .bind(cancelled.id.0)
        .execute(pool)
        .await
        .unwrap();
    store
        .audit(&fixtures::audit_event(Some(project.id), "run.pick", &format!("run:{}", picked.id), at(3)))
        .await
        .unwrap();
    sqlx::raw_sql(include_str!("../src/schema/0003_parked_runs_free_slots.sql")).execute(pool).await.unwrap();
    let old = store.run(waiting.id).await.unwrap();
    assert_eq!(old.lease_owner.as_deref(), Some("old"));
    // Back to the schema of version 3: later migrations apply again.
    sqlx::query("DELETE FROM schema_migrations WHERE version >= 4").execute(pool).await.unwrap();
    sqlx::query("ALTER TABLE runs DROP COLUMN context").execute(pool).await.unwrap();

    let options = PgStoreOptions::new(testing::database_url()).schema(store.schema());
    let migrated = PgStore::connect_with(options).await.unwrap();
    let version: i32 =
        sqlx::query_scalar("SELECT max(version) FROM schema_migrations").fetch_one(migrated.pool()).await.unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let waiting = migrated.run(waiting.id).await.unwrap();
    assert_eq!((waiting.state, waiting.lease_owner, waiting.lease_expires_at), (RunState::AwaitingChoice, None, None));
    let picked = migrated.run(picked.id).await.unwrap();
    assert_eq!((picked.state, picked.lease_owner), (RunState::Committing, None));
    let cancelled = migrated.run(cancelled.id).await.unwrap();
    assert_eq!((cancelled.state, cancelled.lease_owner), (RunState::Cleaning, None));
    assert_eq!(cancelled.failure, Some(paid_core::Failure::cancelled(RunState::AwaitingChoice)));
    let body: String = sqlx::query_scalar(
        "SELECT prosrc FROM pg_proc WHERE proname = 'paid_project_has_room'
           AND pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
    )
    .fetch_one(migrated.pool())
    .await
    .unwrap();
    assert!(!body.contains("awaiting_choice"), "{body}");

    // The project's one slot goes to one of the runs moved on; the waiting
    // run is never claimed.
    let first = migrated.claim(&claim("new", Lease::hours(1), at(10))).await.unwrap().unwrap();
    assert!(first.id == picked.id || first.id == cancelled.id, "{first:?}");
    assert_eq!(migrated.claim(&claim("new", Lease::hours(1), at(10))).await.unwrap(), None);
    migrated.close().await;
    store.drop_schema().await.unwrap();
}

/// Stores in different schemas of one database do not see each other's
/// runs or notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_keep_stores_apart() {
    let one = testing::fresh_store().await;
    let two = testing::fresh_store().await;
    let project = fixtures::project("one");
    one.put_project(&project).await.unwrap();
    let mut two_work = two.work_listener().await.unwrap();
    one.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    assert_eq!(two.projects().await.unwrap(), Vec::<Project>::new());
    assert_eq!(two.claim(&claim("w", Lease::hours(1), at(0))).await.unwrap(), None);
    assert_eq!(two_work.wait(Duration::from_millis(500)).await, Wake::TimedOut);
    one.drop_schema().await.unwrap();
    two.drop_schema().await.unwrap();
}

/// Log text is stored byte for byte, NUL characters included.
#[tokio::test]
async fn logs_keep_nul_characters() {
    let store = testing::fresh_store().await;
    let project = fixtures::project("nul");
    store.put_project(&project).await.unwrap();
    let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    let text = "binary\0output\u{1}é\n";
    let log = paid_core::AppendLog {
        run_id: run.id,
        stream: paid_core::LogStream::Stdout,
        text,
        cap_bytes: 1 << 20,
        at: at(1),
    };
    store.append_log(&log).await.unwrap();
    assert_eq!(store.logs(run.id, 0).await.unwrap()[0].text, text);
    store.drop_schema().await.unwrap();
}

/// Server errors keep their meaning: a lost race or deadlock is retryable,
/// a server shutting down is `Unavailable`, a refused connection names
/// where it tried.
#[tokio::test]
async fn errors_keep_their_meaning() {
    let store = testing::fresh_store().await;
    let raise = |code: &'static str| {
        let pool = store.pool().clone();
        async move {
            let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{code}'; END $$");
            let e = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap_err();
            paid_core::Error::from(paid_store_postgres::Error::from(e))
        }
    };
    for code in ["40001", "40P01"] {
        let e = raise(code).await;
        assert!(matches!(e, Error::Backend { retryable: true, .. }), "{code}: {e:?}");
    }
    for code in ["57P01", "08006"] {
        let e = raise(code).await;
        assert!(matches!(e, Error::Unavailable { backend: "postgres", .. }), "{code}: {e:?}");
        assert!(e.is_retryable());
    }
    let e = raise("23505").await;
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    let e = raise("42601").await;
    assert!(matches!(e, Error::Backend { retryable: false, .. }), "{e:?}");
    store.drop_schema().await.unwrap();

    let nowhere = PgStoreOptions::new("postgres://paid:paid@127.0.0.1:1/paid").acquire_timeout(Duration::from_secs(2));
    let err = PgStore::connect_with(nowhere).await.unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1/paid"), "{err}");
    assert!(!err.to_string().contains("paid:paid"), "no password in messages: {err}");
    let core = paid_core::Error::from(err);
    assert!(matches!(core, Error::Unavailable { .. }), "{core:?}");
}

/// Migration 5 on a schema at version 4 whose runs kept their context in
/// the audit log (an older build): follow-up context, rebase outcome,
/// comparison spec and the first pick move into the runs' `context`; other
/// runs get an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_5_moves_run_context_out_of_the_audit_log() {
    use paid_core::AuditEvent;

    let store = testing::fresh_store().await;
    let project = fixtures::project("legacy");
    store.put_project(&project).await.unwrap();
    let follow = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    let compared = store.create_run(&fixtures::new_run(project.id, 2)).await.unwrap();
    let plain = store.create_run(&fixtures::new_run(project.id, 3)).await.unwrap();
    let event = |action: &str, run: RunId, details: serde_json::Value| AuditEvent {
        at: at(1),
        project_id: Some(project.id),
        actor: "engine".into(),
        action: action.into(),
        subject: format!("run:{run}"),
        details,
    };
    let follow_up = serde_json::json!({
        "run_id": follow.id, "previous_run": plain.id, "branch": "paid/issue-1", "pr_number": 7,
        "pr_url": "https://example.test/pull/7", "head_sha": "abc", "feedback": "checks fail",
    });
    let spec = serde_json::json!({ "candidates": [{ "model": "a" }, { "model": "b" }] });
    for e in [
        event("run.follow_up", follow.id, follow_up),
        event("run.rebase", follow.id, serde_json::json!({ "outcome": "up_to_date" })),
        event("run.compare", compared.id, serde_json::json!({ "run_id": compared.id, "spec": spec })),
        event("run.pick", compared.id, serde_json::json!({ "run_id": compared.id, "candidate": "c2-b" })),
        event("run.pick", compared.id, serde_json::json!({ "run_id": compared.id, "candidate": "c1-a" })),
        AuditEvent {
            subject: format!("project:{}", project.id),
            ..event("project.settings", plain.id, serde_json::json!({ "budget_usd_per_month": 20.0 }))
        },
    ] {
        store.audit(&e).await.unwrap();
    }
    let pool = store.pool();
    sqlx::query("DELETE FROM schema_migrations WHERE version >= 5").execute(pool).await.unwrap();
    sqlx::query("ALTER TABLE runs DROP COLUMN context").execute(pool).await.unwrap();
    sqlx::query("UPDATE projects SET config = (config::jsonb - 'settings')::json").execute(pool).await.unwrap();

    let options = PgStoreOptions::new(testing::database_url()).schema(store.schema());
    let migrated = PgStore::connect_with(options).await.unwrap();
    let version: i32 =
        sqlx::query_scalar("SELECT max(version) FROM schema_migrations").fetch_one(migrated.pool()).await.unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let follow = migrated.run(follow.id).await.unwrap();
    let ctx = follow.context.follow_up.expect("the follow-up context moved into the run");
    assert_eq!((ctx.pr_number, ctx.branch.as_str(), ctx.feedback.as_str()), (7, "paid/issue-1", "checks fail"));
    assert_eq!(ctx.rebase, Some(paid_core::RebaseOutcome::UpToDate));
    let compared = migrated.run(compared.id).await.unwrap();
    let models: Vec<String> =
        compared.context.compare.expect("the spec moved").candidates.into_iter().map(|c| c.model).collect();
    assert_eq!(models, ["a", "b"]);
    assert_eq!(compared.context.pick.as_deref(), Some("c2-b"), "the first pick won");
    assert!(migrated.run(plain.id).await.unwrap().context.is_empty());
    let settings = migrated.project(project.id).await.unwrap().settings;
    assert_eq!(settings, paid_core::ProjectSettings { budget_usd_per_month: Some(20.0), ..Default::default() });
    migrated.close().await;
    store.drop_schema().await.unwrap();
}

/// Migration 7 on a schema at version 6 with projects and tracked issues of
/// an older build: the issues keep everything and read with no author id,
/// the projects read with no allowlisted ids, and logins can be pinned,
/// the first pin staying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_7_adds_author_ids_and_pins_to_a_schema_6_database_with_data() {
    use paid_core::testing::fixtures::OCTOCAT_ID;
    use paid_core::{AuthorPin, TrackedIssue};

    let store = testing::fresh_store().await;
    let project = Project { allowed_author_ids: Vec::new(), ..fixtures::project("legacy") };
    store.put_project(&project).await.unwrap();
    let issue = TrackedIssue { author_id: None, ..fixtures::issue(project.id, 3) };
    store.put_issue(&issue).await.unwrap();
    let run = store.create_run(&fixtures::new_run(project.id, 3)).await.unwrap();
    // Back to schema 6, as an older build left it.
    let pool = store.pool();
    sqlx::query("DELETE FROM schema_migrations WHERE version >= 7").execute(pool).await.unwrap();
    sqlx::query("ALTER TABLE issues DROP COLUMN author_id").execute(pool).await.unwrap();
    sqlx::query("DROP TABLE author_pins").execute(pool).await.unwrap();
    let config: String = sqlx::query_scalar("SELECT config::text FROM projects").fetch_one(pool).await.unwrap();
    assert!(!config.contains("allowed_author_ids"), "an empty list is not written: {config}");

    let options = PgStoreOptions::new(testing::database_url()).schema(store.schema());
    let migrated = PgStore::connect_with(options).await.unwrap();
    let version: i32 =
        sqlx::query_scalar("SELECT max(version) FROM schema_migrations").fetch_one(migrated.pool()).await.unwrap();
    assert_eq!((version, SCHEMA_VERSION), (8, 8));
    assert_eq!(migrated.issue(project.id, 3).await.unwrap(), issue, "the issue is kept, with no author id");
    assert_eq!(migrated.project(project.id).await.unwrap(), project);
    assert_eq!(migrated.run(run.id).await.unwrap(), run);
    assert_eq!(migrated.pin_author(project.id, "OctoCat", OCTOCAT_ID, at(5)).await.unwrap(), OCTOCAT_ID);
    assert_eq!(migrated.pin_author(project.id, "octocat", 1, at(6)).await.unwrap(), OCTOCAT_ID);
    assert_eq!(
        migrated.author_pins(project.id).await.unwrap(),
        vec![AuthorPin { project_id: project.id, login: "octocat".into(), user_id: OCTOCAT_ID, pinned_at: at(5) }]
    );
    let seen = TrackedIssue { author_id: Some(OCTOCAT_ID), ..issue };
    migrated.put_issue(&seen).await.unwrap();
    assert_eq!(migrated.issue(project.id, 3).await.unwrap(), seen);
    let with_ids = Project { allowed_author_ids: vec![OCTOCAT_ID], ..project };
    migrated.put_project(&with_ids).await.unwrap();
    assert_eq!(migrated.project(with_ids.id).await.unwrap(), with_ids);
    migrated.close().await;
    store.drop_schema().await.unwrap();
}
