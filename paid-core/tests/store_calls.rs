//! How many store calls one run costs: a one-iteration build run on the
//! instant backends, through a layer that counts every call. Run with
//! `cargo test -p paid-core --all-features --test store_calls -- --nocapture`
//! to see the figure and the calls behind it.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use paid_core::engine::{EngineConfig, RunLogger};
use paid_core::testing::counting::CountingStore;
use paid_core::testing::{fixtures, instant};
use paid_core::{
    ExecEvent, ExecExit, ExecRequest, LogStream, Result, RunState, SandboxHandle, SandboxInfo, SandboxRuntime,
    SandboxSpec, Store, SystemClock,
};
use paid_store_sqlite::SqliteStore;

/// The most store calls a one-iteration run may make, log appends and
/// heartbeats aside.
const BUDGET: usize = 30;

/// Calls that scale with time or output, not with the run's steps.
const BESIDE: [&str; 2] = ["append_log", "heartbeat"];

/// What [`counted_run`] leaves.
struct Counted {
    /// The calls from the claim on.
    counting: Arc<CountingStore>,
    /// The store underneath.
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

/// A one-iteration build run of issue 1 on the instant backends (with
/// `runtime` for sandboxes), driven through a [`CountingStore`] counting
/// from the claim on.
async fn counted_run(runtime: Option<Arc<dyn SandboxRuntime>>) -> Counted {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("paid.db")).unwrap());
    let project = instant::project(fixtures::project_id(), "counted", 4, paid_core::Clock::now(&SystemClock));
    sqlite.put_project(&project).await.unwrap();
    sqlite.put_issue(&fixtures::issue(project.id, 1)).await.unwrap();
    let queued = sqlite.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();

    let counting = Arc::new(CountingStore::new(sqlite.clone()));
    // Unrecorded: the instant backends' own audit trail would be store calls too.
    let backends = instant::InstantBackends::unrecorded(dir.path().join("worktrees"));
    let mut builder = backends.engine_builder();
    if let Some(runtime) = runtime {
        builder = builder.runtime(runtime);
    }
    let engine = builder
        .store(counting.clone())
        .config(EngineConfig {
            worker_id: "counted".into(),
            // No heartbeat falls inside the run: the count does not depend on timing.
            heartbeat_interval: Duration::from_secs(600),
            ..EngineConfig::default()
        })
        .build()
        .unwrap();

    let run = engine.run_once().await.unwrap().expect("the queued run");
    assert_eq!((run.id, run.state, run.iterations), (queued.id, RunState::Succeeded, 1), "{run:?}");
    Counted { counting, store: sqlite, _dir: dir }
}

#[tokio::test]
async fn a_one_iteration_run_makes_at_most_thirty_store_calls_and_reads_no_audit_events() {
    let Counted { counting, .. } = counted_run(None).await;

    let n = counting.total_except(&BESIDE);
    println!(
        "store calls per one-iteration run: {n} (besides: {} log appends, {} heartbeats)",
        counting.calls("append_log"),
        counting.calls("heartbeat"),
    );
    for (method, calls) in counting.counts() {
        println!("  {method:<28} {calls:>3}");
    }
    let audit_reads = counting.calls("audit_events");
    assert!(
        n <= BUDGET && audit_reads == 0,
        "{n} store calls (at most {BUDGET}) and {audit_reads} audit_events reads (none) per run: {:#?}",
        counting.counts()
    );
}

/// The instant runtime, but its commands print `LINES` short lines, each
/// its own output chunk, then a few on stderr.
struct ChattyRuntime;

const LINES: usize = 20_000;

fn line(i: usize) -> String {
    format!("progress {i:05}\n")
}

#[async_trait]
impl SandboxRuntime for ChattyRuntime {
    async fn ensure_image(&self, image: &str) -> Result<()> {
        instant::InstantRuntime.ensure_image(image).await
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        instant::InstantRuntime.create(spec).await
    }
    async fn exec(&self, _sandbox: &SandboxHandle, _req: ExecRequest) -> Result<BoxStream<'static, Result<ExecEvent>>> {
        let out = (0..LINES).map(|i| Ok(ExecEvent::Stdout(Bytes::from(line(i)))));
        let err = (0..3).map(|i| Ok(ExecEvent::Stderr(Bytes::from(format!("warning {i}\n")))));
        let exit = std::iter::once(Ok(ExecEvent::Exit(ExecExit::Code(0))));
        Ok(Box::pin(stream::iter(out.chain(err).chain(exit).collect::<Vec<_>>())))
    }
    async fn is_running(&self, sandbox: &SandboxHandle) -> Result<bool> {
        instant::InstantRuntime.is_running(sandbox).await
    }
    async fn stop(&self, sandbox: &SandboxHandle) -> Result<()> {
        instant::InstantRuntime.stop(sandbox).await
    }
    async fn remove(&self, sandbox: &SandboxHandle) -> Result<()> {
        instant::InstantRuntime.remove(sandbox).await
    }
    async fn list_managed(&self) -> Result<Vec<SandboxInfo>> {
        instant::InstantRuntime.list_managed().await
    }
}

#[tokio::test]
async fn a_chatty_agent_makes_a_few_log_appends_not_one_per_output_chunk() {
    let Counted { counting, store, _dir } = counted_run(Some(Arc::new(ChattyRuntime))).await;
    let appends = counting.calls("append_log");
    let stdout: usize = (0..LINES).map(|i| line(i).len()).sum();
    // The command line, the output in batches, the stderr lines.
    let most = 1 + stdout.div_ceil(RunLogger::BATCH_BYTES) + 1;
    println!("{LINES} stdout chunks and 3 stderr chunks stored in {appends} log appends (at most {most})");
    assert!(appends <= most, "{appends} log appends for {} output chunks", LINES + 3);

    // Nothing was lost, and the order was kept.
    let run = store.runs(&Default::default()).await.unwrap().remove(0);
    let chunks = store.logs(run.id, 0).await.unwrap();
    assert_eq!(chunks.len(), appends, "one chunk per append: {chunks:#?}");
    let of = |stream| chunks.iter().filter(|c| c.stream == stream).map(|c| c.text.as_str()).collect::<String>();
    assert_eq!(of(LogStream::Stdout), (0..LINES).map(line).collect::<String>());
    assert_eq!(of(LogStream::Stderr), "warning 0\nwarning 1\nwarning 2\n");
    assert_eq!(of(LogStream::System), "$ sh -c instant-agent --fix\n");
    assert_eq!(chunks.last().map(|c| c.stream), Some(LogStream::Stderr), "stderr came last");
}
