//! The conformance suite of the [`SandboxRuntime`] port.
//!
//! A runtime is done when every function here passes against it. Each takes
//! the runtime, an image that has `sh`, `sleep`, `cat` and `pwd` (any
//! Debian-based image does), and an empty directory on the host to use as
//! the worktree. Each creates its own sandboxes and removes them again, even
//! when an assertion fails. [`run_all`] runs them all, one subdirectory each.
//!
//! ```no_run
//! use paid_core::{SandboxRuntime, testing::sandbox};
//!
//! # async fn example(runtime: &dyn SandboxRuntime) {
//! let dir = tempfile::tempdir().unwrap();
//! sandbox::run_all(runtime, "paid/agent:bookworm", dir.path()).await;
//! # }
//! ```
//!
//! # The contract the suite pins
//!
//! - **Lifecycle**: `create` returns a running sandbox; `stop` stops it and
//!   may be repeated; `remove` removes it and may be repeated, also on a
//!   sandbox that never existed; `is_running` is false after either.
//! - **Exec** runs in the worktree mount unless told otherwise, with the
//!   spec's environment and the request's on top (the request wins). Output
//!   comes as it is written, stdout and stderr apart, and the stream ends
//!   with exactly one [`ExecEvent::Exit`].
//! - **Timeout and cancellation** end the exec with [`ExecExit::TimedOut`] /
//!   [`ExecExit::Cancelled`] within [`KILL_BUDGET`], after killing the whole
//!   process tree (a background child is gone too); the sandbox stays usable.
//! - **The worktree** is shared: files written on either side are seen on the
//!   other.
//! - **`list_managed`** lists the sandbox with its run and project.
//! - **`reap`** removes the sandboxes of runs outside its keep-set once
//!   they are `min_age` old, and nothing of the runs it keeps
//!   ([`reap_removes_sandboxes_of_runs_not_kept`], not in [`run_all`]: it
//!   reaps other users' sandboxes too).
//! - **A missing image** fails `ensure_image` and `create` with
//!   [`Error::ImageMissing`]; exec in a removed sandbox fails with
//!   [`Error::NotFound`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: panicking with the unexpected value is how it reports"
)]

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Error, ExecEvent, ExecExit, ExecRequest, ProjectId, ReapRequest, ResourceLimits, RunId, SandboxHandle,
    SandboxRuntime, SandboxSpec,
};

/// How long a timed-out or cancelled exec may take to report its end.
pub const KILL_BUDGET: Duration = Duration::from_secs(5);

/// How long any single exec of the suite may take before the suite gives up
/// on it.
const EXEC_LIMIT: Duration = Duration::from_secs(60);

/// An image name no runtime has.
pub const MISSING_IMAGE: &str = "paid-conformance/missing-image:never";

/// A spec for `image` with `worktree` mounted at the default mount point,
/// one suite variable in its environment, and modest limits.
pub fn spec(image: &str, worktree: &Path) -> SandboxSpec {
    SandboxSpec {
        run_id: RunId(Uuid::now_v7()),
        project_id: ProjectId(Uuid::now_v7()),
        image: image.to_string(),
        worktree: absolute(worktree),
        mount_at: SandboxSpec::DEFAULT_MOUNT.to_string(),
        env: BTreeMap::from([
            ("PAID_SUITE_SPEC".to_string(), "from-spec".to_string()),
            ("PAID_SUITE_BOTH".to_string(), "from-spec".to_string()),
        ]),
        limits: ResourceLimits { memory_bytes: 512 << 20, cpus: 1.0, pids: 256, tmp_bytes: 64 << 20 },
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|e| panic!("worktree {} must exist: {e}", path.display()))
}

/// Everything one exec produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecResult {
    /// All stdout bytes, in order.
    pub stdout: Vec<u8>,
    /// All stderr bytes, in order.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub exit: ExecExit,
    /// When the exec was asked for.
    pub started: Instant,
    /// When the first output event arrived, if any did.
    pub first_output: Option<Instant>,
    /// When the exit event arrived.
    pub ended: Instant,
}

impl ExecResult {
    /// Stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// From the request to the exit event.
    pub fn elapsed(&self) -> Duration {
        self.ended - self.started
    }
}

/// Runs `req` and collects its events, checking that the stream ends with
/// exactly one exit event. Panics on an error or after a minute.
pub async fn run(runtime: &dyn SandboxRuntime, sandbox: &SandboxHandle, req: ExecRequest) -> ExecResult {
    let cmd = req.cmd.clone();
    let started = Instant::now();
    let collect = async {
        let mut events = runtime.exec(sandbox, req).await.unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"));
        let (mut stdout, mut stderr, mut first_output, mut exit) = (Vec::new(), Vec::new(), None, None);
        while let Some(event) = events.next().await {
            let event = event.unwrap_or_else(|e| panic!("exec {cmd:?} stream: {e}"));
            assert!(exit.is_none(), "exec {cmd:?}: {event:?} after the exit event");
            match event {
                ExecEvent::Stdout(bytes) => {
                    first_output.get_or_insert_with(Instant::now);
                    stdout.extend_from_slice(&bytes);
                }
                ExecEvent::Stderr(bytes) => {
                    first_output.get_or_insert_with(Instant::now);
                    stderr.extend_from_slice(&bytes);
                }
                ExecEvent::Exit(code) => exit = Some((code, Instant::now())),
            }
        }
        let (exit, ended) = exit.unwrap_or_else(|| panic!("exec {cmd:?}: the stream ended without an exit event"));
        ExecResult { stdout, stderr, exit, started, first_output, ended }
    };
    tokio::time::timeout(EXEC_LIMIT, collect)
        .await
        .unwrap_or_else(|_| panic!("exec {:?} did not end within {EXEC_LIMIT:?}", sandbox.id))
}

/// Runs `script` with `sh -c` and collects it.
pub async fn sh(runtime: &dyn SandboxRuntime, sandbox: &SandboxHandle, script: &str) -> ExecResult {
    run(runtime, sandbox, ExecRequest::shell(script)).await
}

/// Creates a sandbox from `spec`, runs `body` with it, and removes it even
/// when `body` panics (the panic is then resumed).
pub async fn with_sandbox(runtime: &dyn SandboxRuntime, spec: &SandboxSpec, body: impl AsyncFnOnce(&SandboxHandle)) {
    let sandbox = runtime.create(spec).await.unwrap_or_else(|e| panic!("create a sandbox from {}: {e}", spec.image));
    let outcome = AssertUnwindSafe(body(&sandbox)).catch_unwind().await;
    let removed = runtime.remove(&sandbox).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    removed.unwrap_or_else(|e| panic!("remove sandbox {}: {e}", sandbox.id));
}

/// One case of the suite: `(runtime, image, worktree)`.
pub type TestFn = for<'a> fn(&'a dyn SandboxRuntime, &'a str, &'a Path) -> BoxFuture<'a, ()>;

/// [`missing_image_is_reported`], which takes no image, as a [`TestFn`].
async fn missing_image_is_reported_case(runtime: &dyn SandboxRuntime, _image: &str, worktree: &Path) {
    missing_image_is_reported(runtime, worktree).await;
}

macro_rules! suite {
    ($($dir:literal => $name:ident),* $(,)?) => {
        /// Every case [`run_all`] runs, with its name and its worktree's
        /// directory name, in order. [`reap_removes_sandboxes_of_runs_not_kept`]
        /// is not among them.
        pub const TESTS: &[(&str, &str, TestFn)] = &[
            $((stringify!($name), $dir, |r, i, w| -> BoxFuture<'_, ()> { Box::pin($name(r, i, w)) })),*
        ];
    };
}

suite!(
    "lifecycle" => lifecycle,
    "streams" => streams_stdout_and_stderr_apart,
    "streaming" => streams_output_as_it_comes,
    "exit-codes" => reports_exit_codes,
    "worktree" => shares_the_worktree_with_the_host,
    "env" => passes_env_and_workdir,
    "timeout" => timeout_kills_the_process_tree,
    "cancel" => cancel_kills_the_process_tree,
    "remove" => remove_is_idempotent,
    "list" => list_managed_includes_the_sandbox,
    "removed" => exec_in_a_removed_sandbox_is_not_found,
    "missing-image" => missing_image_is_reported_case,
);

/// Runs every function of the suite, each in a fresh subdirectory of
/// `worktrees`.
pub async fn run_all(runtime: &dyn SandboxRuntime, image: &str, worktrees: &Path) {
    for (_, dir, test) in TESTS {
        let dir = worktrees.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        test(runtime, image, &dir).await;
    }
}

/// Create, exec, stop (twice), remove (twice).
pub async fn lifecycle(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    runtime.ensure_image(image).await.unwrap_or_else(|e| panic!("ensure_image({image}): {e}"));
    let spec = spec(image, worktree);
    let sandbox = runtime.create(&spec).await.unwrap();
    let outcome = AssertUnwindSafe(async {
        assert_eq!(sandbox.mount_at, spec.mount_at);
        assert!(runtime.is_running(&sandbox).await.unwrap(), "a created sandbox runs");
        let out = sh(runtime, &sandbox, "echo alive").await;
        assert_eq!((out.exit, out.stdout_text().as_str()), (ExecExit::Code(0), "alive\n"));
        runtime.stop(&sandbox).await.unwrap();
        assert!(!runtime.is_running(&sandbox).await.unwrap(), "a stopped sandbox does not run");
        runtime.stop(&sandbox).await.expect("stop is idempotent");
    })
    .catch_unwind()
    .await;
    runtime.remove(&sandbox).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(!runtime.is_running(&sandbox).await.unwrap(), "a removed sandbox does not run");
    runtime.remove(&sandbox).await.expect("remove is idempotent");
}

/// Stdout and stderr arrive on their own channels.
pub async fn streams_stdout_and_stderr_apart(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    with_sandbox(runtime, &spec(image, worktree), async |sandbox| {
        let out = sh(runtime, sandbox, "echo to-out; echo to-err >&2; echo more-out").await;
        assert_eq!(out.exit, ExecExit::Code(0));
        assert_eq!(out.stdout_text(), "to-out\nmore-out\n");
        assert_eq!(out.stderr_text(), "to-err\n");
    })
    .await;
}

/// The first output arrives while the command still runs.
pub async fn streams_output_as_it_comes(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    with_sandbox(runtime, &spec(image, worktree), async |sandbox| {
        let out = sh(runtime, sandbox, "echo first; sleep 3; echo second").await;
        assert_eq!((out.exit, out.stdout_text().as_str()), (ExecExit::Code(0), "first\nsecond\n"));
        let first = out.first_output.expect("output arrived");
        assert!(
            out.ended - first >= Duration::from_secs(2),
            "the first line came {:?} before the end: output is buffered, not streamed",
            out.ended - first
        );
    })
    .await;
}

/// Exit codes come through unchanged.
pub async fn reports_exit_codes(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    with_sandbox(runtime, &spec(image, worktree), async |sandbox| {
        for (script, code) in [("true", 0), ("false", 1), ("exit 3", 3), ("exit 42", 42), ("no-such-command-x", 127)] {
            assert_eq!(sh(runtime, sandbox, script).await.exit, ExecExit::Code(code), "{script}");
        }
        let out = run(runtime, sandbox, ExecRequest::argv(["sh", "-c", "exit 7"])).await;
        assert_eq!(out.exit, ExecExit::Code(7), "argv form");
        assert!(!out.exit.success());
    })
    .await;
}

/// Files written on either side are seen on the other.
pub async fn shares_the_worktree_with_the_host(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    std::fs::create_dir_all(worktree.join("src")).unwrap();
    std::fs::write(worktree.join("src/from-host.txt"), "host\n").unwrap();
    with_sandbox(runtime, &spec(image, worktree), async |sandbox| {
        let out = sh(
            runtime,
            sandbox,
            "cat src/from-host.txt && echo sandbox > src/from-sandbox.txt && mkdir -p new/dir && echo deep > new/dir/f",
        )
        .await;
        assert_eq!((out.exit, out.stdout_text().as_str()), (ExecExit::Code(0), "host\n"), "{}", out.stderr_text());
        assert_eq!(std::fs::read_to_string(worktree.join("src/from-sandbox.txt")).unwrap(), "sandbox\n");
        assert_eq!(std::fs::read_to_string(worktree.join("new/dir/f")).unwrap(), "deep\n");
        let out = sh(runtime, sandbox, "echo changed > src/from-host.txt").await;
        assert_eq!(out.exit, ExecExit::Code(0), "the sandbox may change host files: {}", out.stderr_text());
        assert_eq!(std::fs::read_to_string(worktree.join("src/from-host.txt")).unwrap(), "changed\n");
    })
    .await;
}

/// The spec's environment, the request's on top; the mount as default
/// working directory, the request's when given.
pub async fn passes_env_and_workdir(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    let spec = spec(image, worktree);
    with_sandbox(runtime, &spec, async |sandbox| {
        let mut req = ExecRequest::shell("echo $PAID_SUITE_SPEC $PAID_SUITE_REQ $PAID_SUITE_BOTH; pwd");
        req.env.insert("PAID_SUITE_REQ".into(), "from-req".into());
        req.env.insert("PAID_SUITE_BOTH".into(), "from-req".into());
        let out = run(runtime, sandbox, req).await;
        assert_eq!(out.exit, ExecExit::Code(0));
        assert_eq!(out.stdout_text(), format!("from-spec from-req from-req\n{}\n", spec.mount_at));

        let mut req = ExecRequest::shell("pwd");
        req.workdir = Some("/tmp".into());
        assert_eq!(run(runtime, sandbox, req).await.stdout_text(), "/tmp\n");
    })
    .await;
}

/// A command that outlives its timeout is killed with its children, the exec
/// reports [`ExecExit::TimedOut`] promptly, and the sandbox still works.
pub async fn timeout_kills_the_process_tree(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    with_sandbox(runtime, &spec(image, worktree), async |sandbox| {
        let timeout = Duration::from_secs(1);
        let req = ExecRequest::shell(LONG_TREE).with_timeout(timeout);
        let out = run(runtime, sandbox, req).await;
        assert_eq!(out.exit, ExecExit::TimedOut);
        assert!(
            out.elapsed() < timeout + KILL_BUDGET,
            "a 1 s timeout took {:?} to report; the budget is {KILL_BUDGET:?} after the timeout",
            out.elapsed()
        );
        assert_eq!(out.stdout_text(), "started\n", "output before the kill is kept");
        assert_tree_gone(runtime, sandbox).await;
    })
    .await;
}

/// Like [`timeout_kills_the_process_tree`], with the cancellation token.
pub async fn cancel_kills_the_process_tree(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    with_sandbox(runtime, &spec(image, worktree), async |sandbox| {
        let cancel = CancellationToken::new();
        let req = ExecRequest::shell(LONG_TREE).with_cancel(cancel.clone());
        let canceller = cancel.clone();
        let cancelled_at = tokio::spawn(async move {
            // not an assertion: gives the tree time to start; that it did is
            // asserted below (its output), so a short delay fails loudly.
            tokio::time::sleep(Duration::from_millis(500)).await;
            canceller.cancel();
            Instant::now()
        });
        let out = run(runtime, sandbox, req).await;
        let cancelled_at = cancelled_at.await.unwrap();
        assert_eq!(out.exit, ExecExit::Cancelled);
        assert_eq!(out.stdout_text(), "started\n", "the tree had started when it was cancelled");
        assert!(
            out.ended - cancelled_at < KILL_BUDGET,
            "cancellation took {:?} to report; the budget is {KILL_BUDGET:?}",
            out.ended - cancelled_at
        );
        assert_tree_gone(runtime, sandbox).await;
    })
    .await;
}

/// Starts a background child that records its pid in the worktree, then
/// waits far longer than any test.
const LONG_TREE: &str = "sleep 300 & echo $! > .paid-suite-child.pid; echo started; wait";

async fn assert_tree_gone(runtime: &dyn SandboxRuntime, sandbox: &SandboxHandle) {
    let out =
        sh(runtime, sandbox, "kill -0 \"$(cat .paid-suite-child.pid)\" 2>/dev/null && echo alive || echo gone").await;
    assert_eq!(out.stdout_text(), "gone\n", "the background child survived the kill");
    let out = sh(runtime, sandbox, "echo still-usable").await;
    assert_eq!((out.exit, out.stdout_text().as_str()), (ExecExit::Code(0), "still-usable\n"));
}

/// Removing twice, or a sandbox that never existed, is fine; a removed
/// sandbox no longer runs (the positive control: it ran before).
pub async fn remove_is_idempotent(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    let sandbox = runtime.create(&spec(image, worktree)).await.unwrap();
    let running = runtime.is_running(&sandbox).await;
    if !matches!(running, Ok(true)) {
        let _ = runtime.remove(&sandbox).await;
        panic!("a created sandbox runs before it is removed: {running:?}");
    }
    runtime.remove(&sandbox).await.unwrap();
    assert!(!runtime.is_running(&sandbox).await.unwrap(), "a removed sandbox does not run");
    runtime.remove(&sandbox).await.expect("removing a removed sandbox");
    let never = SandboxHandle { id: "paid-conformance-never-existed".into(), mount_at: "/workspace".into() };
    runtime.remove(&never).await.expect("removing a sandbox that never existed");
    runtime.stop(&never).await.expect("stopping a sandbox that never existed");
    assert!(!runtime.is_running(&never).await.unwrap());
}

/// The sandbox is listed with its run and project, and unlisted once removed.
pub async fn list_managed_includes_the_sandbox(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    let spec = spec(image, worktree);
    let mut id = None;
    with_sandbox(runtime, &spec, async |sandbox| {
        id = Some(sandbox.id.clone());
        let listed = runtime.list_managed().await.unwrap();
        let info = listed
            .iter()
            .find(|info| info.id == sandbox.id)
            .unwrap_or_else(|| panic!("{} is not in list_managed: {listed:?}", sandbox.id));
        assert_eq!(info.run_id, Some(spec.run_id.to_string()));
        assert_eq!(info.project_id, Some(spec.project_id.to_string()));
        assert!(info.running);
        assert!(info.created_at.is_some());
    })
    .await;
    let id = id.unwrap();
    assert!(
        !runtime.list_managed().await.unwrap().iter().any(|info| info.id == id),
        "removed sandboxes are not listed"
    );
}

/// `reap` leaves a young orphan alone, then removes it once `min_age` is
/// zero, and keeps the sandbox of a run in its keep-set throughout.
///
/// Every run listed before the passes is kept, so other users' sandboxes
/// that were there survive; one that someone else creates between the
/// listing and the second pass may not: run it where no one else creates
/// sandboxes meanwhile. [`run_all`] leaves it out for that reason.
pub async fn reap_removes_sandboxes_of_runs_not_kept(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    let kept_spec = spec(image, worktree);
    let orphan_spec = spec(image, worktree);
    let kept = runtime.create(&kept_spec).await.unwrap();
    let orphan = runtime.create(&orphan_spec).await.unwrap();
    let outcome = AssertUnwindSafe(async {
        let keep: Vec<RunId> = runtime
            .list_managed()
            .await
            .unwrap()
            .iter()
            .filter_map(|s| s.run_id.as_deref()?.parse::<Uuid>().ok().map(RunId))
            .filter(|run| *run != orphan_spec.run_id)
            .chain([kept_spec.run_id])
            .collect();
        let young = ReapRequest { keep: &keep, min_age: Duration::from_secs(3600), now: chrono::Utc::now() };
        let report = runtime.reap(&young).await.unwrap();
        assert!(!report.sandboxes.contains(&orphan.id), "a young orphan is left alone: {report:?}");
        assert!(runtime.is_running(&orphan).await.unwrap(), "a young orphan is left alone");

        let now = ReapRequest { keep: &keep, min_age: Duration::ZERO, now: chrono::Utc::now() };
        let report = runtime.reap(&now).await.unwrap();
        assert!(report.sandboxes.contains(&orphan.id), "the orphan is reaped: {report:?}");
        assert!(!report.sandboxes.contains(&kept.id), "a kept run's sandbox stays: {report:?}");
        assert!(runtime.is_running(&kept).await.unwrap(), "a kept run's sandbox stays");
        let listed = runtime.list_managed().await.unwrap();
        assert!(!listed.iter().any(|s| s.id == orphan.id), "a reaped sandbox is not listed: {listed:?}");
    })
    .catch_unwind()
    .await;
    let _ = runtime.remove(&orphan).await;
    let removed = runtime.remove(&kept).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    removed.unwrap_or_else(|e| panic!("remove sandbox {}: {e}", kept.id));
}

/// Exec in a removed sandbox fails with [`Error::NotFound`], either at once or
/// as the first stream item.
pub async fn exec_in_a_removed_sandbox_is_not_found(runtime: &dyn SandboxRuntime, image: &str, worktree: &Path) {
    let sandbox = runtime.create(&spec(image, worktree)).await.unwrap();
    runtime.remove(&sandbox).await.unwrap();
    let err = match runtime.exec(&sandbox, ExecRequest::shell("true")).await {
        Err(e) => e,
        Ok(mut events) => match events.next().await {
            Some(Err(e)) => e,
            other => panic!("exec in a removed sandbox gave {other:?}"),
        },
    };
    assert!(matches!(err, Error::NotFound { .. }), "expected NotFound, got {err:?}");
}

/// A missing image fails `ensure_image` and `create` with
/// [`Error::ImageMissing`] naming it.
pub async fn missing_image_is_reported(runtime: &dyn SandboxRuntime, worktree: &Path) {
    match runtime.ensure_image(MISSING_IMAGE).await {
        Err(Error::ImageMissing { image, hint }) => {
            assert_eq!(image, MISSING_IMAGE);
            assert!(!hint.is_empty(), "the hint names the command that builds the image");
        }
        other => panic!("ensure_image of a missing image gave {other:?}"),
    }
    match runtime.create(&spec(MISSING_IMAGE, worktree)).await {
        Err(Error::ImageMissing { image, .. }) => assert_eq!(image, MISSING_IMAGE),
        Ok(sandbox) => {
            let _ = runtime.remove(&sandbox).await;
            panic!("create from a missing image succeeded");
        }
        Err(other) => panic!("create from a missing image gave {other:?}"),
    }
}
