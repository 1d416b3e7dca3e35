//! A real PostgreSQL crash (`pg_ctl -m immediate`: no shutdown checkpoint,
//! no WAL flush, crash recovery at start) right after a burst of writes:
//! every usage record the store acknowledged is still there (budgets never
//! undercount), and the figure of what the relaxed commits lost (log lines)
//! is printed.
//!
//! Alone in its test binary: it crashes the server the other PostgreSQL
//! tests share, and cargo runs test binaries one after another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use paid_core::store::prelude::*;
use paid_core::testing::fixtures;
use paid_core::{AppendLog, LogStream, UsageRecord};
use paid_store_postgres::{PgStore, testing};

const WRITES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_usage_survives_a_server_crash() {
    let options = testing::fresh_options();
    let schema_options = options.clone();
    let store = PgStore::connect_with(options).await.unwrap();
    let project = fixtures::project("crash");
    store.put_project(&project).await.unwrap();
    let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();

    // Usage (money, durable) and log lines (relaxed) side by side, each
    // write acknowledged before the next, then the crash at once.
    let now = chrono::Utc::now();
    for i in 0..WRITES {
        let usage = UsageRecord { cost_micros: Some(1_000), ..fixtures::usage_record(run.id, now) };
        store.record_usage(&usage).await.unwrap();
        let text = format!("line {i}\n");
        let append = AppendLog { run_id: run.id, stream: LogStream::Stdout, text: &text, cap_bytes: 1 << 20, at: now };
        store.append_log(&append).await.unwrap();
    }
    let out = Command::new(testing::provision_script()).arg("crash").output().unwrap();
    assert!(out.status.success(), "crash and restart failed: {}", String::from_utf8_lossy(&out.stderr));

    // A new store (the old pools' connections died with the server).
    drop(store);
    let store = PgStore::connect_with(schema_options).await.unwrap();
    let usage = store.usage(run.id).await.unwrap();
    let logs = store.logs(run.id, 0).await.unwrap();
    let lines = logs.iter().map(|c| c.text.matches('\n').count()).sum::<usize>();
    eprintln!(
        "after an immediate crash: {} of {WRITES} usage records and {lines} of {WRITES} log lines survived",
        usage.len()
    );
    assert_eq!(usage.len(), WRITES, "an acknowledged usage record was lost: budgets would undercount");
    assert_eq!(usage.iter().filter_map(|u| u.cost_micros).sum::<i64>(), 1_000 * WRITES as i64);
    store.drop_schema().await.unwrap();
}
