#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Store conformance suite on PostgreSQL (each test in a schema of its
//! own), and two handles on one schema writing at once.

use std::sync::{Arc, Mutex};

use paid_core::Store;
use paid_core::testing::store as suite;
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
