//! A flooding command (`yes`) run through a `SandboxSession` is cut at the
//! run log's byte cap, and the run log says so, in the SQLite store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use paid_core::engine::{RunLogger, SandboxSession};
use paid_core::testing::{fixtures, sandbox as suite};
use paid_core::{ExecExit, ExecRequest, LogStream, SandboxRuntime, Store, SystemClock, TRUNCATION_MARKER};
use paid_store_sqlite::SqliteStore;

use common::{docker_required, image};

const CAP: usize = 64 << 10;

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_command_is_cut_at_the_cap_and_the_log_says_so() {
    let runtime: Arc<dyn SandboxRuntime> = Arc::new(docker_required().await);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let project = fixtures::project("flood");
    store.put_project(&project).await.unwrap();
    store.put_issue(&fixtures::issue(project.id, 7)).await.unwrap();
    let run = store.create_run(&fixtures::new_run(project.id, 7)).await.unwrap();

    let worktree = tempfile::tempdir().unwrap();
    let handle = runtime.create(&suite::spec(&image(), worktree.path())).await.unwrap();
    let logger = RunLogger::new(store.clone(), Arc::new(SystemClock), run.id, CAP);
    let session = SandboxSession::new(runtime.clone(), handle.clone(), logger);

    // `yes` never ends by itself: the timeout ends it after it has written
    // far more than the cap.
    let started = std::time::Instant::now();
    let outcome = session.exec(ExecRequest::argv(["yes"]).with_timeout(Duration::from_secs(3))).await;
    let took = started.elapsed();
    eprintln!("`yes` with a 3 s timeout took {took:?}");
    assert!(took < Duration::from_secs(3) + suite::KILL_BUDGET, "the timeout was not prompt: {took:?}");
    // A finite flood too, after the cap: nothing more is stored.
    let started = std::time::Instant::now();
    let after = session.exec(ExecRequest::shell("yes | head -c 5000000; echo done >&2")).await;
    eprintln!("5 MB after the cap took {:?}", started.elapsed());
    runtime.remove(&handle).await.unwrap();
    let outcome = outcome.unwrap();
    let after = after.unwrap();

    assert_eq!(outcome.exit, ExecExit::TimedOut);
    assert!(outcome.log_truncated, "the session reports the cut");
    assert!(
        outcome.stdout.len() > CAP,
        "the flood went far past the cap ({} bytes kept in the tail)",
        outcome.stdout.len()
    );
    assert_eq!((after.exit, after.log_truncated), (ExecExit::Code(0), true));

    let chunks = store.logs(run.id, 0).await.unwrap();
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert!(text.starts_with("$ yes\ny\ny\n"), "{}", &text[..40.min(text.len())]);
    let stored: usize = chunks.iter().filter(|c| c.stream != LogStream::System).map(|c| c.text.len()).sum();
    let marker = chunks.iter().filter(|c| c.text.contains(TRUNCATION_MARKER.trim())).count();
    assert_eq!(marker, 1, "the log says once that it was cut");
    let total: usize = chunks.iter().map(|c| c.text.len()).sum();
    assert!(total <= CAP + TRUNCATION_MARKER.len(), "{total} bytes stored for a cap of {CAP}");
    assert!(stored >= CAP / 2, "output up to the cap is kept: {stored} bytes");
    assert!(!text.contains("done"), "nothing is stored after the cut");
    eprintln!("stored {total} bytes in {} chunks for a cap of {CAP}", chunks.len());
}
