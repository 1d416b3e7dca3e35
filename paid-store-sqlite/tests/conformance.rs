#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Store conformance suite against SQLite files, and what is particular
//! to SQLite: migrations on open, WAL mode.

use paid_core::store::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use paid_core::Store;
use paid_core::testing::{fixtures, store as suite};
use paid_store_sqlite::{Error, SCHEMA_VERSION, SqliteStore};
use pretty_assertions::assert_eq;
use rusqlite::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    suite::run_all(|| {
        let path = dir.path().join(format!("store-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(SqliteStore::open(path).unwrap()) as Arc<dyn Store> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_in_memory() {
    suite::run_all(|| async { Arc::new(SqliteStore::open_in_memory().unwrap()) as Arc<dyn Store> }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    suite::concurrent_writers(Arc::new(a), Arc::new(b)).await;
}

/// The versions recorded in `schema_migrations`.
fn recorded_migrations(path: &std::path::Path) -> Vec<(u32, String)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT version, name FROM schema_migrations ORDER BY version").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

#[tokio::test]
async fn migrations_apply_on_open_and_reopening_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid.db");

    let store = SqliteStore::open(&path).unwrap();
    let project = fixtures::project("widgets");
    store.put_project(&project).await.unwrap();
    drop(store);
    let applied = recorded_migrations(&path);
    assert_eq!(applied.iter().map(|(v, _)| *v).collect::<Vec<_>>(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());

    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(recorded_migrations(&path), applied, "re-opening applies nothing again");
    assert_eq!(reopened.project(project.id).await.unwrap(), project);
}

#[test]
fn two_handles_opening_a_new_file_at_once_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| SqliteStore::open(&path).unwrap())).collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(recorded_migrations(&path).len(), SCHEMA_VERSION as usize);
}

#[test]
fn files_are_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid.db");
    let _store = SqliteStore::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_newer_schema_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'future', 0)",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();

    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade Paid"), "{err}");
}

#[test]
fn a_missing_directory_says_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("paid.db");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[tokio::test]
async fn a_busy_database_gives_a_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid.db");
    let store = SqliteStore::open(&path).unwrap();
    let project = fixtures::project("widgets");

    let mut blocker = Connection::open(&path).unwrap();
    let held = blocker.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive).unwrap();
    let started = std::time::Instant::now();
    let err = store.put_project(&project).await.unwrap_err();
    assert!(started.elapsed() >= SqliteStore::BUSY_TIMEOUT, "waited for the lock first");
    assert!(err.is_retryable(), "{err:?}");
    drop(held);

    store.put_project(&project).await.unwrap();
}

/// Migration 4 on a file that ran 1–3 with runs parked the old way (a
/// ten-year lease): waiting runs lose the lease, a picked one moves to
/// `committing`, a cancelled one to `cleaning`, and claim never takes the
/// waiting one.
#[tokio::test]
async fn migration_4_brings_runs_parked_by_an_older_build_into_shape() {
    use paid_core::testing::fixtures::at;
    use paid_core::{ClaimRequest, Failure, Project, Run, RunState, Transition};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid.db");
    let store = SqliteStore::open(&path).unwrap();
    let project = Project { max_concurrent_runs: 1, ..fixtures::project("legacy") };
    store.put_project(&project).await.unwrap();
    let claim = |now| ClaimRequest { owner: "old".into(), lease: chrono::Duration::hours(1), now };
    let mut parked: Vec<Run> = Vec::new();
    for issue in 1..=3 {
        let run = store.create_run(&fixtures::new_run(project.id, issue)).await.unwrap();
        assert_eq!(store.claim(&claim(at(0))).await.unwrap().map(|r| r.id), Some(run.id));
        let mut from = RunState::Queued;
        for to in [RunState::SelectingModel, RunState::Provisioning, RunState::RunningAgent, RunState::AwaitingChoice] {
            store
                .transition(&Transition {
                    run_id: run.id,
                    from,
                    to,
                    owner: "old".into(),
                    at: at(1),
                    patch: Default::default(),
                })
                .await
                .unwrap();
            from = to;
        }
        parked.push(run);
    }
    let [waiting, picked, cancelled] = [parked[0].id, parked[1].id, parked[2].id];
    store.audit(&fixtures::audit_event(Some(project.id), "run.pick", &format!("run:{picked}"), at(2))).await.unwrap();
    drop(store);
    {
        let conn = Connection::open(&path).unwrap();
        let ten_years = at(0).timestamp_millis() + 3650 * 86_400_000;
        conn.execute(
            "UPDATE runs SET lease_owner = 'old', lease_expires_at = ?2 WHERE id = ?1",
            rusqlite::params![waiting.to_string(), ten_years],
        )
        .unwrap();
        conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", [cancelled.to_string()]).unwrap();
        // Back to the schema of version 3: later migrations apply again.
        conn.execute("DELETE FROM schema_migrations WHERE version >= 4", []).unwrap();
        conn.execute("ALTER TABLE runs DROP COLUMN context", []).unwrap();
        conn.execute("ALTER TABLE issues DROP COLUMN author_id", []).unwrap();
    }

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(recorded_migrations(&path).last().map(|(v, _)| *v), Some(SCHEMA_VERSION));
    let waiting = store.run(waiting).await.unwrap();
    assert_eq!((waiting.state, waiting.lease_owner, waiting.lease_expires_at), (RunState::AwaitingChoice, None, None));
    let picked = store.run(picked).await.unwrap();
    assert_eq!((picked.state, picked.lease_owner), (RunState::Committing, None));
    let cancelled = store.run(cancelled).await.unwrap();
    assert_eq!((cancelled.state, cancelled.lease_owner), (RunState::Cleaning, None));
    assert_eq!(cancelled.failure, Some(Failure::cancelled(RunState::AwaitingChoice)));

    let first = store.claim(&claim(at(10))).await.unwrap().unwrap();
    assert!(first.id == picked.id || first.id == cancelled.id, "{first:?}");
    assert_eq!(store.claim(&claim(at(10))).await.unwrap(), None, "one slot; the waiting run is never claimed");
}

/// Migration 5 on a file at version 4 whose runs kept their context in the
/// audit log (an older build): follow-up context, rebase outcome,
/// comparison spec and the first pick move into the runs' `context`;
/// other runs get an empty one.
#[tokio::test]
async fn migration_5_moves_run_context_out_of_the_audit_log() {
    use paid_core::AuditEvent;
    use paid_core::testing::fixtures::at;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid.db");
    let store = SqliteStore::open(&path).unwrap();
    let project = fixtures::project("legacy");
    store.put_project(&project).await.unwrap();
    let follow = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    let compared = store.create_run(&fixtures::new_run(project.id, 2)).await.unwrap();
    let plain = store.create_run(&fixtures::new_run(project.id, 3)).await.unwrap();
    let event = |action: &str, run: paid_core::RunId, details: serde_json::Value| AuditEvent {
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
        event("run.follow_up", follow.id, follow_up.clone()),
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
    drop(store);
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute("DELETE FROM schema_migrations WHERE version >= 5", []).unwrap();
        conn.execute("UPDATE projects SET config = json_remove(config, '$.settings')", []).unwrap();
        conn.execute("ALTER TABLE runs DROP COLUMN context", []).unwrap();
        conn.execute("ALTER TABLE issues DROP COLUMN author_id", []).unwrap();
    }

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(recorded_migrations(&path).last().map(|(v, _)| *v), Some(SCHEMA_VERSION));
    let follow = store.run(follow.id).await.unwrap();
    let ctx = follow.context.follow_up.expect("the follow-up context moved into the run");
    assert_eq!((ctx.pr_number, ctx.branch.as_str(), ctx.feedback.as_str()), (7, "paid/issue-1", "checks fail"));
    assert_eq!(ctx.rebase, Some(paid_core::RebaseOutcome::UpToDate));
    let compared = store.run(compared.id).await.unwrap();
    let models: Vec<String> =
        compared.context.compare.expect("the spec moved").candidates.into_iter().map(|c| c.model).collect();
    assert_eq!(models, ["a", "b"]);
    assert_eq!(compared.context.pick.as_deref(), Some("c2-b"), "the first pick won");
    assert!(store.run(plain.id).await.unwrap().context.is_empty());
    let settings = store.project(project.id).await.unwrap().settings;
    assert_eq!(settings, paid_core::ProjectSettings { budget_usd_per_month: Some(20.0), ..Default::default() });
}

/// Migration 7 on a file at version 6 with projects and tracked issues of
/// an older build: the issues keep everything and read with no author id,
/// the projects read with no allowlisted ids, and logins can be pinned.
#[tokio::test]
async fn migration_7_adds_author_ids_and_pins_to_a_schema_6_file_with_data() {
    use paid_core::testing::fixtures::{OCTOCAT_ID, at};
    use paid_core::{AuthorPin, Project, TrackedIssue};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid.db");
    let store = SqliteStore::open(&path).unwrap();
    let project = Project { allowed_author_ids: Vec::new(), ..fixtures::project("legacy") };
    store.put_project(&project).await.unwrap();
    let issue = TrackedIssue { author_id: None, ..fixtures::issue(project.id, 3) };
    store.put_issue(&issue).await.unwrap();
    let run = store.create_run(&fixtures::new_run(project.id, 3)).await.unwrap();
    drop(store);
    {
        // Back to schema 6, as an older build left it.
        let conn = Connection::open(&path).unwrap();
        conn.execute("DELETE FROM schema_migrations WHERE version >= 7", []).unwrap();
        conn.execute("ALTER TABLE issues DROP COLUMN author_id", []).unwrap();
        conn.execute("DROP TABLE author_pins", []).unwrap();
        let config: String = conn.query_row("SELECT config FROM projects", [], |r| r.get(0)).unwrap();
        assert!(!config.contains("allowed_author_ids"), "an empty list is not written: {config}");
    }

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(recorded_migrations(&path).last().map(|(v, _)| *v), Some(SCHEMA_VERSION));
    assert_eq!(SCHEMA_VERSION, 8);
    assert_eq!(store.issue(project.id, 3).await.unwrap(), issue, "the issue is kept, with no author id");
    assert_eq!(store.project(project.id).await.unwrap(), project);
    assert_eq!(store.run(run.id).await.unwrap(), run);
    assert_eq!(store.pin_author(project.id, "OctoCat", OCTOCAT_ID, at(5)).await.unwrap(), OCTOCAT_ID);
    assert_eq!(store.pin_author(project.id, "octocat", 1, at(6)).await.unwrap(), OCTOCAT_ID);
    assert_eq!(
        store.author_pins(project.id).await.unwrap(),
        vec![AuthorPin { project_id: project.id, login: "octocat".into(), user_id: OCTOCAT_ID, pinned_at: at(5) }]
    );
    let seen = TrackedIssue { author_id: Some(OCTOCAT_ID), ..issue };
    store.put_issue(&seen).await.unwrap();
    assert_eq!(store.issue(project.id, 3).await.unwrap(), seen);
    let with_ids = Project { allowed_author_ids: vec![OCTOCAT_ID], ..project };
    store.put_project(&with_ids).await.unwrap();
    assert_eq!(store.project(with_ids.id).await.unwrap(), with_ids);
}
