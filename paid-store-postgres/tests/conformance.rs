#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The conformance suites on PostgreSQL, each test in a schema of its own:
//! `Store`, the opt-in `LearningStore` and `SecretStore`, and two handles on
//! one schema writing at once.

use std::sync::{Arc, Mutex};

use paid_core::ports::learning::LearningStore;
use paid_core::testing::store as suite;
use paid_core::{SecretStore, Store};
use paid_store_postgres::{PgStore, testing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let made: Arc<Mutex<Vec<PgStore>>> = Arc::default();
    suite::run_all(|| {
        let made = made.clone();
        async move {
            let store = testing::fresh_store().await;
            made.lock().unwrap().push(store.clone());
            Arc::new(store) as Arc<dyn Store>
        }
    })
    .await;
    let stores = std::mem::take(&mut *made.lock().unwrap());
    for store in stores {
        store.drop_schema().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_schema() {
    let options = testing::fresh_options();
    let a = PgStore::connect_with(options.clone()).await.unwrap();
    let b = PgStore::connect_with(options).await.unwrap();
    suite::concurrent_writers(Arc::new(a.clone()), Arc::new(b.clone())).await;
    b.close().await;
    a.drop_schema().await.unwrap();
}

/// The stores a suite made, to drop their schemas when it is done.
#[derive(Clone, Default)]
struct Made(Arc<Mutex<Vec<PgStore>>>);

impl Made {
    /// A store in a fresh schema, remembered for [`Made::drop_all`].
    async fn fresh(&self) -> PgStore {
        let store = testing::fresh_store().await;
        self.0.lock().unwrap().push(store.clone());
        store
    }

    async fn drop_all(&self) {
        let stores = std::mem::take(&mut *self.0.lock().unwrap());
        assert!(!stores.is_empty(), "the suite made no store");
        for store in stores {
            store.drop_schema().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_conformance_suite() {
    let made = Made::default();
    paid_core::testing::learning::run_all(|| {
        let made = made.clone();
        async move { Arc::new(made.fresh().await) as Arc<dyn LearningStore> }
    })
    .await;
    made.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_conformance_suite() {
    let made = Made::default();
    paid_core::testing::secrets::run_all(|| {
        let made = made.clone();
        async move { Arc::new(made.fresh().await) as Arc<dyn SecretStore> }
    })
    .await;
    made.drop_all().await;
}

/// First write wins under concurrency: racing `assign`s of one issue, from
/// two handles on one schema, all get the same stored assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_assigns_agree_on_the_first_write() {
    use paid_core::learning::experiment::Assignment;
    use paid_core::testing::learning::experiment;

    let options = testing::fresh_options();
    let a = PgStore::connect_with(options.clone()).await.unwrap();
    let b = PgStore::connect_with(options).await.unwrap();
    let e = experiment("task", paid_core::learning::PromptVersionId(uuid::Uuid::now_v7()), 0);
    a.put_experiment(&e).await.unwrap();
    for round in 0..10 {
        let key = format!("p#{round}");
        let tries = (0..8).map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let want = Assignment {
                experiment_id: e.id,
                issue_key: key.clone(),
                arm: format!("arm-{i}"),
                run_id: paid_core::RunId(uuid::Uuid::now_v7()),
                assigned_at: chrono::Utc::now(),
            };
            tokio::spawn(async move { store.assign(&want).await.unwrap() })
        });
        let tries: Vec<_> = tries.collect();
        let mut got = Vec::new();
        for t in tries {
            got.push(t.await.unwrap());
        }
        let stored = a.assignment(e.id, &key).await.unwrap().expect("an assignment is stored");
        assert!(got.iter().all(|g| g == &stored), "round {round}: {got:#?} vs stored {stored:#?}");
    }
    b.close().await;
    a.drop_schema().await.unwrap();
}
