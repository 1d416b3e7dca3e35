#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The LearningStore conformance suite against SQLite, and learning data
//! surviving a reopen.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use paid_core::ports::learning::LearningStore;
use paid_core::testing::learning as suite;
use paid_store_sqlite::SqliteStore;
use pretty_assertions::assert_eq;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_suite_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    suite::run_all(|| {
        let path = dir.path().join(format!("learning-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(SqliteStore::open(path).unwrap()) as Arc<dyn LearningStore> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_suite_in_memory() {
    suite::run_all(|| async { Arc::new(SqliteStore::open_in_memory().unwrap()) as Arc<dyn LearningStore> }).await;
}

#[tokio::test]
async fn learning_data_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paid.db");
    let prompt = suite::prompt("task", 0);
    let v1 = suite::version("task", 1, None);
    let experiment = suite::experiment("task", v1.id, 5);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.put_prompt(&prompt).await.unwrap();
        store.create_version(&v1).await.unwrap();
        store.put_experiment(&experiment).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.prompt("task").await.unwrap(), prompt);
    assert_eq!(store.versions("task").await.unwrap(), vec![v1]);
    assert_eq!(store.experiment(experiment.id).await.unwrap(), experiment);
}
