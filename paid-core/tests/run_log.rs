//! A sandbox session's output goes into the run log in batches: output
//! that trickles in is stored as it comes (every `BATCH_DELAY`), output cut
//! short stays buffered until the step flushes it, and the per-run cap and
//! its truncation marker work as with one append per chunk.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use paid_core::engine::{RunLogger, SandboxSession};
use paid_core::store::prelude::*;
use paid_core::testing::counting::CountingStore;
use paid_core::testing::{fixtures, instant};
use paid_core::{
    ExecEvent, ExecExit, ExecRequest, LogStream, Result, RunId, SandboxHandle, SandboxInfo, SandboxRuntime,
    SandboxSpec, Store, SystemClock, TRUNCATION_MARKER,
};
use paid_store_sqlite::SqliteStore;
use pretty_assertions::assert_eq;

/// What a scripted command does, in order.
#[derive(Debug, Clone)]
enum Step {
    Out(&'static str),
    Wait(Duration),
    Exit,
    /// Never ends (until the exec is dropped).
    Hang,
}

/// A runtime whose every command follows `script`.
struct ScriptedRuntime {
    script: Vec<Step>,
}

#[async_trait]
impl SandboxRuntime for ScriptedRuntime {
    async fn ensure_image(&self, _image: &str) -> Result<()> {
        Ok(())
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        instant::InstantRuntime.create(spec).await
    }
    async fn exec(&self, _sandbox: &SandboxHandle, _req: ExecRequest) -> Result<BoxStream<'static, Result<ExecEvent>>> {
        let steps = self.script.clone().into_iter();
        let events = futures::stream::unfold(steps, |mut steps| async move {
            loop {
                match steps.next()? {
                    Step::Out(text) => return Some((Ok(ExecEvent::Stdout(Bytes::from(text))), steps)),
                    // not an assertion: a scripted pause in the fake agent's output
                    Step::Wait(d) => tokio::time::sleep(d).await,
                    Step::Exit => return Some((Ok(ExecEvent::Exit(ExecExit::Code(0))), steps)),
                    Step::Hang => std::future::pending::<()>().await,
                }
            }
        });
        Ok(events.boxed())
    }
    async fn is_running(&self, _sandbox: &SandboxHandle) -> Result<bool> {
        Ok(true)
    }
    async fn stop(&self, _sandbox: &SandboxHandle) -> Result<()> {
        Ok(())
    }
    async fn remove(&self, _sandbox: &SandboxHandle) -> Result<()> {
        Ok(())
    }
    async fn list_managed(&self) -> Result<Vec<SandboxInfo>> {
        Ok(Vec::new())
    }
}

/// A session of a queued run on `script`, logging under `cap` through a
/// counting store.
async fn session(script: Vec<Step>, cap: usize) -> (SandboxSession, Arc<CountingStore>, RunId) {
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let project = fixtures::project("chatty");
    sqlite.put_project(&project).await.unwrap();
    let run = sqlite.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    let store = Arc::new(CountingStore::new(sqlite));
    let logger = RunLogger::new(store.clone(), Arc::new(SystemClock), run.id, cap);
    let handle = SandboxHandle { id: "scripted".into(), mount_at: SandboxSpec::DEFAULT_MOUNT.into() };
    (SandboxSession::new(Arc::new(ScriptedRuntime { script }), handle, logger), store, run.id)
}

/// The run's log as (stream, text) pairs.
async fn log(store: &CountingStore, run: RunId) -> Vec<(LogStream, String)> {
    store.logs(run, 0).await.unwrap().into_iter().map(|c| (c.stream, c.text)).collect()
}

fn system(text: &str) -> (LogStream, String) {
    (LogStream::System, text.into())
}

fn stdout(text: &str) -> (LogStream, String) {
    (LogStream::Stdout, text.into())
}

#[tokio::test(start_paused = true)]
async fn output_that_trickles_in_is_stored_as_it_comes_not_held_to_the_end() {
    let wait = Duration::from_secs(2);
    assert!(wait > RunLogger::BATCH_DELAY);
    let script = vec![Step::Out("one\n"), Step::Out("two\n"), Step::Wait(wait), Step::Out("three\n"), Step::Exit];
    let (session, store, run) = session(script, 1 << 20).await;

    let out = session.exec(ExecRequest::argv(["count"])).await.unwrap();
    assert_eq!((out.exit, out.stdout.as_str(), out.log_truncated), (ExecExit::Code(0), "one\ntwo\nthree\n", false));
    // The first two lines were stored while the command waited.
    assert_eq!(log(&store, run).await, vec![system("$ count\n"), stdout("one\ntwo\n"), stdout("three\n")]);
    assert_eq!(store.calls("append_log"), 3);
}

#[tokio::test(start_paused = true)]
async fn output_of_a_command_cut_short_waits_for_the_flush() {
    let (session, store, run) = session(vec![Step::Out("half a line"), Step::Hang], 1 << 20).await;

    // Dropped (a step's time limit, an agent giving up) before the batch was due.
    let cut = tokio::time::timeout(RunLogger::BATCH_DELAY / 5, session.exec(ExecRequest::argv(["hang"]))).await;
    assert!(cut.is_err(), "the command never ends");
    assert_eq!(log(&store, run).await, vec![system("$ hang\n")]);

    session.logger().flush().await.unwrap();
    assert_eq!(log(&store, run).await, vec![system("$ hang\n"), stdout("half a line")]);
}

#[tokio::test]
async fn the_cap_cuts_a_batch_like_single_chunks_and_nothing_is_sent_after_it() {
    let cap = 64;
    let script: Vec<Step> = std::iter::repeat_n(Step::Out("0123456789"), 30).chain([Step::Exit]).collect();
    let (session, store, run) = session(script, cap).await;

    let first = session.exec(ExecRequest::argv(["flood"])).await.unwrap();
    assert!(first.log_truncated, "the session reports the cut");
    assert_eq!(first.stdout.len(), 300, "the output itself is whole");
    let kept = "0123456789".repeat(6);
    let cut = &kept[..cap - "$ flood\n".len()];
    let want = vec![system("$ flood\n"), stdout(cut), system(TRUNCATION_MARKER)];
    assert_eq!(log(&store, run).await, want);
    assert_eq!(store.calls("append_log"), 2, "the command line, then the output in one batch");

    // The log is full: the next command sends nothing.
    let second = session.exec(ExecRequest::argv(["flood"])).await.unwrap();
    assert!(second.log_truncated);
    assert_eq!(store.calls("append_log"), 2);
    assert_eq!(log(&store, run).await, want);
}
