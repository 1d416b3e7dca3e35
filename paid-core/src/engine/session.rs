//! A run's sandbox as agents see it: exec with output streamed into the
//! run's bounded log.

use std::sync::Arc;

use futures::StreamExt;

use crate::ports::sandbox::{ExecEvent, ExecExit, ExecRequest, SandboxHandle, SandboxRuntime};
use crate::ports::store::{AppendLog, Store};
use crate::{Clock, LogAppend, LogStream, Result, RunId};

/// Writes into one run's log, under its byte cap.
#[derive(Clone)]
pub struct RunLogger {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    run_id: RunId,
    cap_bytes: usize,
}

impl std::fmt::Debug for RunLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLogger").field("run_id", &self.run_id).field("cap_bytes", &self.cap_bytes).finish()
    }
}

impl RunLogger {
    /// A logger for `run_id` capped at `cap_bytes` in total.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, run_id: RunId, cap_bytes: usize) -> Self {
        Self { store, clock, run_id, cap_bytes }
    }

    /// Appends text.
    pub async fn write(&self, stream: LogStream, text: &str) -> Result<LogAppend> {
        self.store
            .append_log(&AppendLog {
                run_id: self.run_id,
                stream,
                text,
                cap_bytes: self.cap_bytes,
                at: self.clock.now(),
            })
            .await
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

    /// Runs a command to completion, logging its output as it streams.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecOutput> {
        self.logger.write(LogStream::System, &format!("$ {}\n", req.cmd.join(" "))).await?;
        let mut stream = self.runtime.exec(&self.handle, req).await?;
        let mut out = Tail::default();
        let mut err = Tail::default();
        let mut truncated = false;
        let mut exit = None;
        while let Some(event) = stream.next().await {
            match event? {
                ExecEvent::Stdout(b) => {
                    let text = String::from_utf8_lossy(&b);
                    truncated |= self.logger.write(LogStream::Stdout, &text).await?.truncated;
                    out.push(&text);
                }
                ExecEvent::Stderr(b) => {
                    let text = String::from_utf8_lossy(&b);
                    truncated |= self.logger.write(LogStream::Stderr, &text).await?.truncated;
                    err.push(&text);
                }
                ExecEvent::Exit(e) => exit = Some(e),
            }
        }
        let exit = exit.ok_or_else(|| crate::Error::Backend {
            backend: "sandbox",
            message: "exec stream ended without an exit status".into(),
            retryable: false,
            source: None,
        })?;
        if !exit.success() {
            self.logger.write(LogStream::System, &format!("[exit: {exit:?}]\n")).await?;
        }
        Ok(ExecOutput { exit, stdout: out.0, stderr: err.0, log_truncated: truncated })
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
