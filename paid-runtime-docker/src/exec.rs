//! Streamed exec with timeout, cancellation and out-of-memory detection.
//!
//! # How a command's process tree is killed
//!
//! Every command runs under a small `sh` wrapper that sets the umask,
//! writes its own pid to `/tmp/.paid-exec-<token>.pid`, runs the command and
//! removes the file when it ends. The engine's runtime (runc) starts each
//! exec as a session and process-group leader, so that pid is also the
//! process group and session id of everything the command starts.
//!
//! On timeout, cancellation, or when the caller drops the stream, a second
//! exec, as the same user, reads the pid file and sends `SIGKILL` to the
//! whole process group. That killer script uses shell builtins only, so it
//! still works when a fork bomb has used up the PID limit (it retries until
//! the engine manages to start it). If it cannot run for
//! [`KILL_DEADLINE`], the sandbox is restarted as a last resort: killing its
//! init kills every process in it, and the worktree survives.
//!
//! The command's output keeps being read while the killer runs: the engine
//! does not complete an exec, nor the killer exec queued behind it, while
//! the killed command's output is unread, so a command flooding its output
//! (`yes`) would otherwise stall the kill until the restart fallback.
//!
//! A process that leaves the session on purpose (`setsid`, `setpgid`)
//! escapes the group kill but not the restart fallback or
//! [`stop`](paid_core::SandboxRuntime::stop).
//!
//! # Out of memory
//!
//! The kernel's OOM killer sends `SIGKILL`, so the command ends with code
//! 137. That alone does not say why; on 137 the runtime reads the sandbox's
//! memory cgroup counter (`oom_kill` in `memory.events` on cgroup v2,
//! `memory.oom_control` on v1) and reports [`ExecExit::OutOfMemory`] when it
//! went up since the last look. `State.OOMKilled` of the container is not
//! used: the engine sets it only when the container's init is killed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::RestartContainerOptionsBuilder;
use futures::stream::{BoxStream, Stream, StreamExt};
use paid_core::{ExecEvent, ExecExit, ExecRequest, Ids, RandomIds};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{DockerError, status_of};

/// How long the runtime keeps trying to run the killer before it restarts
/// the sandbox.
pub(crate) const KILL_DEADLINE: Duration = Duration::from_secs(2);
/// How long output is still forwarded after a kill before the stream ends.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);
/// How long the runtime waits for the engine to report an exec's exit code
/// once its output has ended.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(5);
/// Events buffered between the engine and a slow reader.
const CHANNEL_CAPACITY: usize = 64;

/// The exit code of a process killed by `SIGKILL`.
const SIGKILL_EXIT: i64 = 128 + 9;
/// Exit code of the killer script when the pid file is not there (yet).
const NO_PID_FILE: i64 = 3;

/// The last `oom_kill` count seen per sandbox, so an exit code 137 can be
/// attributed to the OOM killer when the count went up.
#[derive(Debug, Default)]
pub(crate) struct OomCounts(Mutex<HashMap<String, u64>>);

impl OomCounts {
    /// Records `count` for `sandbox`; true when it is above the last count
    /// (unknown sandboxes start from 0).
    pub(crate) fn rose_to(&self, sandbox: &str, count: u64) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let before = counts.insert(sandbox.to_string(), count).unwrap_or(0);
        count > before
    }

    /// Sets the count of a new or restarted sandbox.
    pub(crate) fn reset(&self, sandbox: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(sandbox.to_string(), 0);
    }

    /// Forgets a removed sandbox.
    pub(crate) fn forget(&self, sandbox: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(sandbox);
    }
}

/// Everything an exec needs about its sandbox; cheap to clone into the task
/// that pumps the output.
#[derive(Debug, Clone)]
pub(crate) struct ExecTarget {
    pub(crate) docker: Docker,
    pub(crate) endpoint: Arc<str>,
    pub(crate) sandbox: String,
    pub(crate) user: String,
    pub(crate) umask: String,
    pub(crate) oom: Arc<OomCounts>,
}

/// Touched by every exec when it starts and when it ends: the reaper reads
/// its modification time to tell how long a sandbox has been idle, also
/// for sandboxes another process started.
pub(crate) const ACTIVITY_FILE: &str = "/tmp/.paid-activity";

/// The pid file of the exec identified by `token`.
pub(crate) fn pid_file(token: &str) -> String {
    format!("/tmp/.paid-exec-{token}.pid")
}

/// `argv` wrapped so it records its process group in `pid_file`, marks
/// activity in [`ACTIVITY_FILE`] and runs with `umask`. The command's exit
/// status is passed through.
pub(crate) fn wrap(umask: &str, pid_file: &str, argv: &[String]) -> Vec<String> {
    let touch = format!("echo $$ 2>/dev/null >{ACTIVITY_FILE}");
    let script = format!(
        "umask {umask}; echo $$ > {pid_file}; {touch}; \"$@\"; status=$?; rm -f {pid_file}; {touch}; exit $status"
    );
    let mut wrapped = vec!["sh".to_string(), "-c".to_string(), script, "paid-exec".to_string()];
    wrapped.extend(argv.iter().cloned());
    wrapped
}

/// A script that kills the process group recorded in `pid_file`, using shell
/// builtins only (no fork) up to the kill. Exits [`NO_PID_FILE`] when there
/// is nothing to read.
pub(crate) fn kill_script(pid_file: &str) -> String {
    format!(
        "f={pid_file}; [ -s \"$f\" ] || exit {NO_PID_FILE}; read -r p < \"$f\" || exit {NO_PID_FILE}; \
         kill -KILL -\"$p\" 2>/dev/null; kill -KILL \"$p\" 2>/dev/null; \
         pkill -KILL -s \"$p\" 2>/dev/null; rm -f \"$f\"; exit 0"
    )
}

/// A script printing the memory cgroup's OOM counters (v2, then v1).
pub(crate) const OOM_PROBE: &str =
    "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null; exit 0";

/// The `oom_kill` count in the output of [`OOM_PROBE`].
pub(crate) fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|line| match line.split_once(' ') {
        Some(("oom_kill", n)) => n.trim().parse().ok(),
        _ => None,
    })
}

/// Validates a umask: three or four octal digits.
pub(crate) fn validate_umask(umask: &str) -> Result<(), DockerError> {
    if (3..=4).contains(&umask.len()) && umask.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        Ok(())
    } else {
        Err(DockerError::Invalid { what: "umask", message: format!("{umask:?} is not an octal umask like 0022") })
    }
}

/// Starts `req` in the sandbox and returns its events as they come.
pub(crate) async fn start(
    target: ExecTarget,
    workdir: String,
    req: ExecRequest,
) -> Result<BoxStream<'static, paid_core::Result<ExecEvent>>, DockerError> {
    if req.cmd.is_empty() {
        return Err(DockerError::Invalid { what: "exec request", message: "the command is empty".to_string() });
    }
    let deadline = req.timeout.map(|t| Instant::now() + t);
    let token = RandomIds.hex(8);
    let pid_file = pid_file(&token);
    let env: Vec<String> = req.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let options = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(wrap(&target.umask, &pid_file, &req.cmd)),
        env: Some(env),
        user: Some(target.user.clone()),
        working_dir: Some(workdir),
        ..Default::default()
    };
    let (exec_id, output) = launch(&target, options).await?;
    tracing::debug!(sandbox = %target.sandbox, exec = %exec_id, cmd = ?req.cmd, "exec started");

    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let pump = Pump { target, exec_id, pid_file, deadline, cancel: req.cancel, tx };
    tokio::spawn(pump.run(output));
    Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed())
}

type Output = std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>;

/// Creates and starts an attached exec.
async fn launch(target: &ExecTarget, options: CreateExecOptions<String>) -> Result<(String, Output), DockerError> {
    let created = target.docker.create_exec(&target.sandbox, options).await.map_err(|e| match status_of(&e) {
        Some(404) => DockerError::SandboxNotFound { id: target.sandbox.clone() },
        _ => DockerError::from_bollard("create exec", &target.endpoint, e),
    })?;
    let started = target
        .docker
        .start_exec(&created.id, Some(StartExecOptions { detach: false, tty: false, output_capacity: None }))
        .await
        .map_err(|e| DockerError::from_bollard("start exec", &target.endpoint, e))?;
    match started {
        StartExecResults::Attached { output, input } => {
            drop(input);
            Ok((created.id, output))
        }
        StartExecResults::Detached => Err(DockerError::Exec {
            id: target.sandbox.clone(),
            message: "the engine detached an exec that asked to be attached".to_string(),
        }),
    }
}

/// Why the pump stopped reading.
enum Ending {
    /// The command's output ended: it exited.
    Finished,
    /// Timeout or cancellation: kill, then report this.
    Kill(ExecExit),
    /// The reader dropped the stream: kill, report to no one.
    Abandoned,
    /// The connection to the engine broke.
    Failed(BollardError),
}

/// Moves output from the engine to the reader, watching the clock and the
/// cancellation token.
struct Pump {
    target: ExecTarget,
    exec_id: String,
    pid_file: String,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    tx: mpsc::Sender<paid_core::Result<ExecEvent>>,
}

impl Pump {
    async fn run(self, mut output: Output) {
        let ending = loop {
            let item = tokio::select! {
                biased;
                () = self.cancel.cancelled() => break Ending::Kill(ExecExit::Cancelled),
                () = sleep_until(self.deadline) => break Ending::Kill(ExecExit::TimedOut),
                () = self.tx.closed() => break Ending::Abandoned,
                item = output.next() => item,
            };
            let event = match item {
                None => break Ending::Finished,
                Some(Err(e)) => break Ending::Failed(e),
                Some(Ok(log)) => match event_of(log) {
                    Some(event) => event,
                    None => continue,
                },
            };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break Ending::Kill(ExecExit::Cancelled),
                () = sleep_until(self.deadline) => break Ending::Kill(ExecExit::TimedOut),
                sent = self.tx.send(Ok(event)) => if sent.is_err() { break Ending::Abandoned },
            }
        };

        let target = &self.target;
        match ending {
            Ending::Finished => {
                let exit = match self.exit_code().await {
                    Ok(SIGKILL_EXIT) if oom_killed(target).await => Ok(ExecEvent::Exit(ExecExit::OutOfMemory)),
                    Ok(code) => Ok(ExecEvent::Exit(ExecExit::Code(code))),
                    Err(e) => Err(e.into()),
                };
                let _ = self.tx.send(exit).await;
            }
            Ending::Kill(exit) => {
                tracing::info!(sandbox = %target.sandbox, exec = %self.exec_id, ?exit, "killing exec");
                let output = self.kill_reading(output, true).await;
                if let Some(output) = output {
                    self.drain(output).await;
                }
                let _ = self.tx.send(Ok(ExecEvent::Exit(exit))).await;
            }
            Ending::Abandoned => {
                tracing::info!(sandbox = %target.sandbox, exec = %self.exec_id, "exec stream dropped; killing it");
                self.kill_reading(output, false).await;
            }
            Ending::Failed(source) => {
                tracing::warn!(sandbox = %target.sandbox, exec = %self.exec_id, error = %source, "exec stream broke");
                let _ =
                    self.tx.send(Err(DockerError::from_bollard("exec output", &target.endpoint, source).into())).await;
                kill_tree(target, &self.exec_id, &self.pid_file).await;
            }
        }
    }

    /// Kills the process group while still reading the command's output.
    ///
    /// The engine does not finish an exec (nor, behind it, the killer exec)
    /// until the killed command's output has been read: with a command that
    /// floods its output (`yes`), a killer run while nobody reads would
    /// stall until the restart fallback. So the output is consumed
    /// meanwhile; with `forward`, what comes within [`DRAIN_AFTER_KILL`] is
    /// passed on as far as the reader keeps up, the rest is dropped. Returns
    /// the output when it has not ended yet.
    async fn kill_reading(&self, mut output: Output, forward: bool) -> Option<Output> {
        let kill = kill_tree(&self.target, &self.exec_id, &self.pid_file);
        tokio::pin!(kill);
        let forward_until = Instant::now() + DRAIN_AFTER_KILL;
        loop {
            tokio::select! {
                biased;
                () = &mut kill => return Some(output),
                item = output.next() => match item {
                    Some(Ok(log)) => {
                        if forward
                            && Instant::now() < forward_until
                            && let Some(event) = event_of(log)
                        {
                            // Never wait for a slow reader while killing.
                            let _ = self.tx.try_send(Ok(event));
                        }
                    }
                    Some(Err(_)) | None => {
                        kill.await;
                        return None;
                    }
                },
            }
        }
    }

    /// Forwards what is left of the output after a kill, for a short while.
    async fn drain(&self, mut output: Output) {
        let until = Instant::now() + DRAIN_AFTER_KILL;
        while let Ok(Some(Ok(log))) = tokio::time::timeout_at(until, output.next()).await {
            if let Some(event) = event_of(log) {
                let Ok(Ok(())) = tokio::time::timeout_at(until, self.tx.send(Ok(event))).await else { return };
            }
        }
    }

    /// The exit code, once the engine has recorded it.
    async fn exit_code(&self) -> Result<i64, DockerError> {
        exit_code(&self.target, &self.exec_id).await
    }
}

/// Waits for the engine to mark exec `exec_id` finished and returns its code.
async fn exit_code(target: &ExecTarget, exec_id: &str) -> Result<i64, DockerError> {
    let until = Instant::now() + EXIT_CODE_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        let inspect = target
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| DockerError::from_bollard("inspect exec", &target.endpoint, e))?;
        if inspect.running != Some(true)
            && let Some(code) = inspect.exit_code
        {
            return Ok(code);
        }
        if Instant::now() >= until {
            return Err(DockerError::Exec {
                id: target.sandbox.clone(),
                message: format!(
                    "exec {exec_id} closed its output but reported no exit code within {EXIT_CODE_WAIT:?}"
                ),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Whether exec `exec_id` is still running (true when unsure).
async fn still_running(target: &ExecTarget, exec_id: &str) -> bool {
    match target.docker.inspect_exec(exec_id).await {
        Ok(inspect) => inspect.running != Some(false),
        Err(_) => true,
    }
}

/// Kills the process group of exec `exec_id`; see the module docs.
async fn kill_tree(target: &ExecTarget, exec_id: &str, pid_file: &str) {
    let until = Instant::now() + KILL_DEADLINE;
    let script = kill_script(pid_file);
    loop {
        match run_captured(target, vec!["sh".to_string(), "-c".to_string(), script.clone()]).await {
            Ok((0, _)) => return,
            Ok((NO_PID_FILE, _)) if !still_running(target, exec_id).await => return,
            Ok((code, _)) => tracing::debug!(sandbox = %target.sandbox, code, "killer did not finish; retrying"),
            Err(e) => tracing::debug!(sandbox = %target.sandbox, error = %e, "killer could not run; retrying"),
        }
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(
        sandbox = %target.sandbox,
        exec = %exec_id,
        "could not kill the exec's process group within {KILL_DEADLINE:?}; restarting the sandbox"
    );
    let options = RestartContainerOptionsBuilder::new().t(0).build();
    match target.docker.restart_container(&target.sandbox, Some(options)).await {
        Ok(()) => target.oom.reset(&target.sandbox),
        Err(e) => tracing::error!(sandbox = %target.sandbox, error = %e, "could not restart the sandbox"),
    }
}

/// Whether the OOM killer struck since the last look.
async fn oom_killed(target: &ExecTarget) -> bool {
    match run_captured(target, vec!["sh".to_string(), "-c".to_string(), OOM_PROBE.to_string()]).await {
        Ok((_, out)) => match parse_oom_kills(&String::from_utf8_lossy(&out)) {
            Some(count) => target.oom.rose_to(&target.sandbox, count),
            None => false,
        },
        Err(e) => {
            tracing::debug!(sandbox = %target.sandbox, error = %e, "could not read the OOM counter");
            false
        }
    }
}

/// Runs a short helper command as the sandbox user and returns its exit
/// code and stdout.
pub(crate) async fn run_captured(target: &ExecTarget, cmd: Vec<String>) -> Result<(i64, Vec<u8>), DockerError> {
    let options = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd),
        user: Some(target.user.clone()),
        working_dir: Some("/".to_string()),
        ..Default::default()
    };
    let (exec_id, mut output) = launch(target, options).await?;
    let mut stdout = Vec::new();
    let until = Instant::now() + EXIT_CODE_WAIT;
    loop {
        match tokio::time::timeout_at(until, output.next()).await {
            Ok(Some(Ok(LogOutput::StdOut { message }))) => stdout.extend_from_slice(&message),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(DockerError::from_bollard("helper exec output", &target.endpoint, e)),
            Ok(None) => break,
            Err(_) => {
                return Err(DockerError::Exec {
                    id: target.sandbox.clone(),
                    message: format!("helper exec {exec_id} did not finish within {EXIT_CODE_WAIT:?}"),
                });
            }
        }
    }
    Ok((exit_code(target, &exec_id).await?, stdout))
}

/// The event for one frame of output.
fn event_of(log: LogOutput) -> Option<ExecEvent> {
    match log {
        LogOutput::StdOut { message } | LogOutput::Console { message } => Some(ExecEvent::Stdout(message)),
        LogOutput::StdErr { message } => Some(ExecEvent::Stderr(message)),
        LogOutput::StdIn { .. } => None,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_records_its_group_and_passes_argv_through() {
        let argv = vec!["python3".to_string(), "-c".to_string(), "print('a b')".to_string()];
        assert_eq!(
            wrap("0002", "/tmp/.paid-exec-ab.pid", &argv),
            vec![
                "sh",
                "-c",
                "umask 0002; echo $$ > /tmp/.paid-exec-ab.pid; echo $$ 2>/dev/null >/tmp/.paid-activity; \"$@\"; \
                 status=$?; rm -f /tmp/.paid-exec-ab.pid; echo $$ 2>/dev/null >/tmp/.paid-activity; exit $status",
                "paid-exec",
                "python3",
                "-c",
                "print('a b')",
            ]
        );
    }

    #[test]
    fn killer_targets_the_group_then_the_session() {
        let script = kill_script("/tmp/.paid-exec-ab.pid");
        assert!(script.starts_with("f=/tmp/.paid-exec-ab.pid; [ -s \"$f\" ] || exit 3;"));
        let group = script.find("kill -KILL -\"$p\"").unwrap();
        let session = script.find("pkill -KILL -s \"$p\"").unwrap();
        assert!(group < session, "the fork-free group kill must come first: {script}");
    }

    #[test]
    fn oom_counters_parse_on_both_cgroup_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v1), Some(2));
        assert_eq!(parse_oom_kills(v2), Some(1));
        assert_eq!(parse_oom_kills(""), None);
    }

    #[test]
    fn oom_counts_rise_per_sandbox() {
        let counts = OomCounts::default();
        counts.reset("a");
        assert!(!counts.rose_to("a", 0));
        assert!(counts.rose_to("a", 1));
        assert!(!counts.rose_to("a", 1));
        assert!(counts.rose_to("b", 3), "an unknown sandbox starts from 0");
        counts.forget("b");
        assert!(counts.rose_to("b", 3));
    }

    #[test]
    fn umasks_are_octal() {
        for ok in ["022", "0000", "0777"] {
            assert!(validate_umask(ok).is_ok(), "{ok}");
        }
        for bad in ["", "8", "0999", "00000", "0;rm"] {
            assert!(validate_umask(bad).is_err(), "{bad}");
        }
    }
}
