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

/// What [`SandboxRuntime::reap`] may remove: everything the runtime manages
/// that belongs to no run in `keep` and is at least `min_age` old.
#[derive(Debug, Clone, PartialEq)]
pub struct ReapRequest<'a> {
    /// The runs whose sandboxes (and whatever the runtime keeps for them)
    /// stay: the store's active runs, plus runs the caller cannot vouch for
    /// yet. A sandbox is matched by its run label ([`SandboxInfo::run_id`]).
    pub keep: &'a [RunId],
    /// Anything younger than this stays, whatever its run: a sandbox being
    /// created right now is never taken for an orphan. Zero removes at once.
    pub min_age: Duration,
    /// Now, by the caller's clock; ages are `now - created_at`.
    pub now: Timestamp,
}

/// What one [`SandboxRuntime::reap`] pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapReport {
    /// Sandboxes removed (runtime ids).
    pub sandboxes: Vec<String>,
    /// Other resources the runtime removed along with them (per-sandbox
    /// networks, warm-pool entries), each described for a log line.
    pub other: Vec<String>,
    /// What could not be removed, and why. The pass went on without it.
    pub errors: Vec<String>,
}

impl ReapReport {
    /// Whether nothing was removed and nothing failed.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.other.is_empty() && self.errors.is_empty()
    }
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
    /// Removes everything this runtime manages that belongs to no run in
    /// `req.keep` and is at least `req.min_age` old; reports what it
    /// removed. The engine's maintenance (`Engine::sweep`) calls it with the
    /// store's active runs; nothing else should.
    ///
    /// The default lists [`SandboxRuntime::list_managed`] and removes each
    /// sandbox whose run label is set and not in `keep`, once old enough (a
    /// sandbox of unknown age only when `min_age` is zero). Sandboxes without
    /// a run label are left alone: the default cannot tell what they are. A
    /// runtime that keeps more than sandboxes (warm-pool entries, networks
    /// per sandbox) or unlabelled sandboxes of its own overrides this to
    /// reap those too, with the same keep-set and age rule.
    ///
    /// A sandbox that cannot be removed is noted in
    /// [`ReapReport::errors`] and the pass goes on; an error means nothing
    /// could be listed.
    async fn reap(&self, req: &ReapRequest<'_>) -> Result<ReapReport> {
        let keep: std::collections::HashSet<String> = req.keep.iter().map(RunId::to_string).collect();
        let mut report = ReapReport::default();
        for sandbox in self.list_managed().await? {
            let Some(run) = &sandbox.run_id else { continue };
            let old_enough = req.min_age.is_zero()
                || sandbox
                    .created_at
                    .is_some_and(|created| (req.now - created).to_std().is_ok_and(|age| age >= req.min_age));
            if keep.contains(run) || !old_enough {
                continue;
            }
            let handle = SandboxHandle { id: sandbox.id.clone(), mount_at: SandboxSpec::DEFAULT_MOUNT.into() };
            match self.remove(&handle).await {
                Ok(()) => report.sandboxes.push(sandbox.id),
                Err(e) => report.errors.push(format!("could not remove sandbox {}: {e}", sandbox.id)),
            }
        }
        Ok(report)
    }
}
