//! Isolated execution: the [`SandboxRuntime`] port.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{ProjectId, Result, RunId, Timestamp};

/// Resource limits of a sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// Memory in bytes; swap is set equal (no extra swap).
    pub memory_bytes: u64,
    /// CPUs (fractional allowed).
    pub cpus: f64,
    /// Maximum processes.
    pub pids: i64,
    /// Size of the `/tmp` tmpfs in bytes.
    pub tmp_bytes: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self { memory_bytes: 2 << 30, cpus: 2.0, pids: 500, tmp_bytes: 1 << 30 }
    }
}

/// A portable description of the sandbox a run needs. The runtime turns it
/// into a hardened container (or whatever it isolates with).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The run it belongs to.
    pub run_id: RunId,
    /// The project.
    pub project_id: ProjectId,
    /// Image reference.
    pub image: String,
    /// Host path of the worktree: the only writable mount.
    pub worktree: PathBuf,
    /// Where the worktree appears inside the sandbox.
    pub mount_at: String,
    /// Environment for every exec (never secrets: the proxy token is the only
    /// credential a sandbox sees).
    pub env: BTreeMap<String, String>,
    /// Limits.
    pub limits: ResourceLimits,
}

impl SandboxSpec {
    /// The default mount point, `/workspace`.
    pub const DEFAULT_MOUNT: &'static str = "/workspace";
}

/// A live sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxHandle {
    /// Runtime-specific id (a container id).
    pub id: String,
    /// Where the worktree is mounted.
    pub mount_at: String,
}

/// A command to run in a sandbox.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// argv.
    pub cmd: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory (defaults to the mount).
    pub workdir: Option<String>,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
    /// Kill the command when cancelled.
    pub cancel: CancellationToken,
}

impl ExecRequest {
    /// `sh -c script`.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::argv(["sh".to_string(), "-c".to_string(), script.into()])
    }

    /// Runs `argv` as is.
    pub fn argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            cmd: argv.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            workdir: None,
            timeout: None,
            cancel: CancellationToken::new(),
        }
    }

    /// With a timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With a cancellation token.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
}

/// How an exec ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "code")]
pub enum ExecExit {
    /// Exited with a code.
    Code(i64),
    /// Killed after its timeout.
    TimedOut,
    /// Killed on cancellation.
    Cancelled,
    /// Killed by the out-of-memory killer.
    OutOfMemory,
}

impl ExecExit {
    /// Exit code 0.
    pub fn success(self) -> bool {
        self == ExecExit::Code(0)
    }
}

/// One event of a streamed exec.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecEvent {
    /// Bytes on stdout.
    Stdout(Bytes),
    /// Bytes on stderr.
    Stderr(Bytes),
    /// The command ended. Always the last event.
    Exit(ExecExit),
}

/// A sandbox the runtime manages, as listed for the reaper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// Runtime id.
    pub id: String,
    /// The run label, if present.
    pub run_id: Option<String>,
    /// The project label, if present.
    pub project_id: Option<String>,
    /// When created.
    pub created_at: Option<Timestamp>,
    /// Whether it is running.
    pub running: bool,
}

/// Creates sandboxes and runs commands in them.
#[async_trait]
pub trait SandboxRuntime: Send + Sync + 'static {
    /// Checks that `image` is present; [`crate::Error::ImageMissing`] names
    /// the command that builds it otherwise.
    async fn ensure_image(&self, image: &str) -> Result<()>;
    /// Creates and starts a sandbox.
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle>;
    /// Runs a command, streaming its output as it comes. The stream ends
    /// with [`ExecEvent::Exit`]. Timeout and cancellation kill the command's
    /// process tree.
    async fn exec(&self, sandbox: &SandboxHandle, req: ExecRequest) -> Result<BoxStream<'static, Result<ExecEvent>>>;
    /// Whether the sandbox exists and runs.
    async fn is_running(&self, sandbox: &SandboxHandle) -> Result<bool>;
    /// Stops a sandbox (idempotent).
    async fn stop(&self, sandbox: &SandboxHandle) -> Result<()>;
    /// Removes a sandbox (idempotent; a missing sandbox is not an error).
    async fn remove(&self, sandbox: &SandboxHandle) -> Result<()>;
    /// Sandboxes carrying the runtime's management label.
    async fn list_managed(&self) -> Result<Vec<SandboxInfo>>;
}
