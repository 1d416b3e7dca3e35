//! A run's sandbox as agents see it: exec with output streamed into the
//! run's bounded log, in batches.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::ports::sandbox::{ExecEvent, ExecExit, ExecRequest, SandboxHandle, SandboxRuntime};
use crate::ports::store::{AppendLog, Store};
use crate::{Clock, LogAppend, LogStream, Result, RunId};

/// Writes into one run's log, under its byte cap.
///
/// [`RunLogger::push`] buffers: a stretch of one stream's output is stored
/// as one chunk when the stream changes, when it holds
/// [`RunLogger::BATCH_BYTES`], when its oldest text is
/// [`RunLogger::BATCH_DELAY`] old (on the next push, or when
/// [`SandboxSession::exec`] wakes up for it), and on [`RunLogger::flush`].
/// So a chatty command costs a few store writes, not one per output chunk.
/// [`RunLogger::write`] stores at once, after anything buffered. Clones
/// share the buffer, so the log keeps the order of the calls.
///
/// The cap works as if every piece were appended alone: the store keeps the
/// bytes up to the cap and adds [`crate::TRUNCATION_MARKER`] once. Once the
/// store says the cap is reached, the logger stores nothing more (the store
/// would keep none of it).
#[derive(Clone)]
pub struct RunLogger {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    run_id: RunId,
    cap_bytes: usize,
    batch: Arc<Mutex<Batch>>,
}

/// Text waiting to be stored, and whether the cap was reached.
#[derive(Debug, Default)]
struct Batch {
    pending: Option<Pending>,
    full: bool,
}

#[derive(Debug)]
struct Pending {
    stream: LogStream,
    text: String,
    since: Instant,
}

impl std::fmt::Debug for RunLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLogger").field("run_id", &self.run_id).field("cap_bytes", &self.cap_bytes).finish()
    }
}

impl RunLogger {
    /// A batch is stored once it holds this many bytes.
    pub const BATCH_BYTES: usize = 64 << 10;
    /// A batch is stored once its oldest text is this old.
    pub const BATCH_DELAY: Duration = Duration::from_millis(500);

    /// A logger for `run_id` capped at `cap_bytes` in total.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, run_id: RunId, cap_bytes: usize) -> Self {
        Self { store, clock, run_id, cap_bytes, batch: Arc::default() }
    }

    /// Stores `text` now, after anything buffered. Returns what the store
    /// did with `text`.
    pub async fn write(&self, stream: LogStream, text: &str) -> Result<LogAppend> {
        let mut batch = self.batch.lock().await;
        self.store_pending(&mut batch).await?;
        self.append(&mut batch, stream, text).await
    }

    /// Buffers `text`, storing the buffer first when it is of another
    /// stream, and after when it is full or old enough.
    pub async fn push(&self, stream: LogStream, text: &str) -> Result<()> {
        let mut batch = self.batch.lock().await;
        if batch.full || text.is_empty() {
            return Ok(());
        }
        if batch.pending.as_ref().is_some_and(|p| p.stream != stream) {
            self.store_pending(&mut batch).await?;
        }
        let pending =
            batch.pending.get_or_insert_with(|| Pending { stream, text: String::new(), since: Instant::now() });
        pending.text.push_str(text);
        if pending.text.len() >= Self::BATCH_BYTES || pending.since.elapsed() >= Self::BATCH_DELAY {
            self.store_pending(&mut batch).await?;
        }
        Ok(())
    }

    /// Stores whatever is buffered.
    pub async fn flush(&self) -> Result<()> {
        let mut batch = self.batch.lock().await;
        self.store_pending(&mut batch).await
    }

    /// When the buffered text must be stored, if any is buffered.
    pub async fn due(&self) -> Option<Instant> {
        self.batch.lock().await.pending.as_ref().map(|p| p.since + Self::BATCH_DELAY)
    }

    /// Whether the store said the run's log reached its cap (through this
    /// logger or its clones).
    pub async fn is_full(&self) -> bool {
        self.batch.lock().await.full
    }

    async fn store_pending(&self, batch: &mut Batch) -> Result<()> {
        if let Some(p) = batch.pending.take() {
            self.append(batch, p.stream, &p.text).await?;
        }
        Ok(())
    }

    async fn append(&self, batch: &mut Batch, stream: LogStream, text: &str) -> Result<LogAppend> {
        if batch.full {
            return Ok(LogAppend { stored: 0, truncated: true });
        }
        let appended = self
            .store
            .append_log(&AppendLog {
                run_id: self.run_id,
                stream,
                text,
                cap_bytes: self.cap_bytes,
                at: self.clock.now(),
            })
            .await?;
        batch.full |= appended.truncated;
        Ok(appended)
    }
}

/// What a finished exec produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    /// How it ended.
    pub exit: ExecExit,
    /// The last [`SandboxSession::TAIL_BYTES`] of stdout.
    pub stdout: String,
    /// The last [`SandboxSession::TAIL_BYTES`] of stderr.
    pub stderr: String,
    /// Whether the run log cut this command's output.
    pub log_truncated: bool,
}

/// A run's live sandbox: commands run here have their output streamed into
/// the run log as it comes.
#[derive(Debug, Clone)]
pub struct SandboxSession {
    runtime: Arc<dyn SandboxRuntime>,
    handle: SandboxHandle,
    logger: RunLogger,
}

impl std::fmt::Debug for dyn SandboxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SandboxRuntime")
    }
}

impl SandboxSession {
    /// How much of each stream [`ExecOutput`] keeps.
    pub const TAIL_BYTES: usize = 1 << 20;

    /// A session on `handle`.
    pub fn new(runtime: Arc<dyn SandboxRuntime>, handle: SandboxHandle, logger: RunLogger) -> Self {
        Self { runtime, handle, logger }
    }

    /// The sandbox.
    pub fn handle(&self) -> &SandboxHandle {
        &self.handle
    }

    /// The run's logger.
    pub fn logger(&self) -> &RunLogger {
        &self.logger
    }

    /// Runs a command to completion, logging its output in batches as it
    /// streams (see [`RunLogger`]). Everything is stored by the time it
    /// returns, whether the command succeeded, failed or was cancelled.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecOutput> {
        let log = &self.logger;
        let mut out = Tail::default();
        let mut err = Tail::default();
        let streamed = async {
            log.push(LogStream::System, &format!("$ {}\n", req.cmd.join(" "))).await?;
            let exit = self.stream(req, &mut out, &mut err).await?;
            if !exit.success() {
                log.push(LogStream::System, &format!("[exit: {exit:?}]\n")).await?;
            }
            Ok(exit)
        }
        .await;
        let flushed = log.flush().await;
        let exit = streamed?;
        flushed?;
        let printed = !out.0.is_empty() || !err.0.is_empty();
        Ok(ExecOutput { exit, stdout: out.0, stderr: err.0, log_truncated: printed && log.is_full().await })
    }

    /// Feeds the command's output to the log and the tails; its exit.
    async fn stream(&self, req: ExecRequest, out: &mut Tail, err: &mut Tail) -> Result<ExecExit> {
        let log = &self.logger;
        let mut stream = self.runtime.exec(&self.handle, req).await?;
        let mut exit = None;
        loop {
            let event = match log.due().await {
                Some(due) => tokio::select! {
                    event = stream.next() => event,
                    () = tokio::time::sleep_until(due) => {
                        log.flush().await?;
                        continue;
                    }
                },
                None => stream.next().await,
            };
            let Some(event) = event else { break };
            match event? {
                ExecEvent::Stdout(b) => {
                    let text = String::from_utf8_lossy(&b);
                    log.push(LogStream::Stdout, &text).await?;
                    out.push(&text);
                }
                ExecEvent::Stderr(b) => {
                    let text = String::from_utf8_lossy(&b);
                    log.push(LogStream::Stderr, &text).await?;
                    err.push(&text);
                }
                ExecEvent::Exit(e) => exit = Some(e),
            }
        }
        exit.ok_or_else(|| crate::Error::Backend {
            backend: "sandbox",
            message: "exec stream ended without an exit status".into(),
            retryable: false,
            source: None,
        })
    }
}

#[derive(Default)]
struct Tail(String);

impl Tail {
    fn push(&mut self, s: &str) {
        self.0.push_str(s);
        if self.0.len() > SandboxSession::TAIL_BYTES {
            let mut cut = self.0.len() - SandboxSession::TAIL_BYTES;
            while !self.0.is_char_boundary(cut) {
                cut += 1;
            }
            self.0.drain(..cut);
        }
    }
}
