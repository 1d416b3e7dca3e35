//! Streamed exec with timeout, cancellation and out-of-memory detection.
//!
//! # After an exec, nothing of it is left
//!
//! Whenever an exec ends (its command exits, times out, is cancelled, its
//! stream is dropped or breaks), every process in the sandbox other than its
//! init and keepalive is killed before the exec reports its end, and the
//! engine's own process list confirms it. A command's background children,
//! `nohup` jobs, `setsid` sessions and double-forked daemons do not outlive
//! it. Execs in one sandbox are meant to run one at a time: one that runs
//! while another ends is killed with it.
//!
//! How, using nothing the sandbox can forge:
//! - The sandbox's init (the engine's `docker-init`) and its keepalive
//!   (`sleep infinity`, or with egress to a proxy the relay to it, which
//!   must survive every exec) run as [`init_user`](crate::DockerConfig::init_user),
//!   a different uid from the sandbox user every exec runs as. Without
//!   capabilities the sandbox user cannot signal them.
//! - A fresh exec, as the sandbox user, runs `kill -9 -1`: the kernel sends
//!   `SIGKILL` to every process that user may signal except the caller, in
//!   one step that a fork cannot race. It is a shell builtin, so it runs even
//!   when a fork bomb holds every PID (the runtime retries until the engine
//!   manages to start it). No file in the sandbox is read; nothing the
//!   sandbox wrote decides what is killed.
//! - The engine's process list of the container (`docker top`, read by the
//!   engine from the host's `/proc`) must then show no process whose user
//!   differs from the init's; zombies are waited for, anything else is
//!   killed again. On a normal exit the list is read first, and the killer
//!   only runs when something is left.
//!
//! If that does not succeed within [`KILL_DEADLINE`], the sandbox is
//! restarted as a last resort: killing its init kills every process in it,
//! and the worktree survives. (An engine whose host cannot list processes,
//! without a usable `ps`, gets the killer without the confirmation, and a
//! warning.)
//!
//! The command's output keeps being read while the killer runs: the engine
//! does not complete an exec, nor the killer exec queued behind it, while
//! the killed command's output is unread, so a command flooding its output
//! (`yes`) would otherwise stall the kill until the restart fallback.
//!
//! A new exec in the sandbox waits until the clean-up of a dropped one is
//! over, so it is not caught by it.
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
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerTopResponse;
use bollard::query_parameters::{InspectContainerOptions, RestartContainerOptionsBuilder, TopOptionsBuilder};
use futures::stream::{BoxStream, Stream, StreamExt};
use paid_core::{ExecEvent, ExecExit, ExecRequest};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::container::SandboxUser;
use crate::error::{DockerError, status_of};

/// How long the runtime keeps trying to clear the sandbox after an exec
/// before it restarts the sandbox.
pub(crate) const KILL_DEADLINE: Duration = Duration::from_secs(2);
/// How long output is still forwarded after a kill before the stream ends.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);
/// How long the runtime waits for the engine to report an exec's exit code
/// once its output has ended.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(5);
/// Events buffered between the engine and a slow reader.
const CHANNEL_CAPACITY: usize = 64;
/// How long a new exec waits for the clean-up after a dropped one: the
/// clean-up's own deadline, its restart fallback and some slack.
const CLEANUP_WAIT: Duration = Duration::from_secs(15);

/// The exit code of a process killed by `SIGKILL`.
const SIGKILL_EXIT: i64 = 128 + 9;

/// The killer, run with `sh -c` as the sandbox user in a fresh exec:
/// `SIGKILL` to every process that user may signal, except itself and the
/// namespace's init (`kill -9 -1`). Builtins only, so it needs no free PID
/// beyond its own. When it may signal the init, the init runs as the
/// sandbox user too (a sandbox made before the init had a user of its own)
/// and `kill -1` would take the keepalive and the sandbox with it: it then
/// kills nothing and exits 3.
pub(crate) const KILLER: &str = "kill -0 1 2>/dev/null && exit 3; kill -9 -1 2>/dev/null; exit 0";

/// `ps` arguments for the engine's process list: numeric users where the
/// host's `ps` has them (procps), user names otherwise (busybox).
const TOP_ARGS: [&str; 2] = ["-o pid,uid,stat", "-o pid,user,stat"];

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

/// Clean-ups of dropped exec streams under way, per sandbox: a new exec
/// waits for them, or their kill would take it too.
#[derive(Debug, Default)]
pub(crate) struct Cleanups {
    pending: Mutex<HashMap<String, usize>>,
    done: Notify,
}

impl Cleanups {
    /// Counts a clean-up of `sandbox` until the guard drops.
    fn begin(self: &Arc<Self>, sandbox: &str) -> CleanupGuard {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()).entry(sandbox.to_string()).or_default() += 1;
        CleanupGuard { cleanups: self.clone(), sandbox: sandbox.to_string() }
    }

    fn busy(&self, sandbox: &str) -> bool {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).contains_key(sandbox)
    }

    /// Waits until no clean-up of `sandbox` is under way, at most `max`.
    async fn wait(&self, sandbox: &str, max: Duration) {
        let until = Instant::now() + max;
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.busy(sandbox) {
                return;
            }
            if tokio::time::timeout_at(until, done).await.is_err() {
                tracing::warn!(sandbox, "a clean-up is still under way; starting the exec anyway");
                return;
            }
        }
    }
}

/// A clean-up under way (see [`Cleanups`]).
#[derive(Debug)]
struct CleanupGuard {
    cleanups: Arc<Cleanups>,
    sandbox: String,
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let mut pending = self.cleanups.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = pending.get_mut(&self.sandbox) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&self.sandbox);
            }
        }
        drop(pending);
        self.cleanups.done.notify_waiters();
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
    pub(crate) cleanups: Arc<Cleanups>,
}

/// Touched by every exec when it starts and when it ends: the reaper reads
/// its modification time to tell how long a sandbox has been idle, also
/// for sandboxes another process started.
pub(crate) const ACTIVITY_FILE: &str = "/tmp/.paid-activity";

/// `argv` wrapped so it marks activity in [`ACTIVITY_FILE`] and runs with
/// `umask`. The command's exit status is passed through.
pub(crate) fn wrap(umask: &str, argv: &[String]) -> Vec<String> {
    let touch = format!("echo $$ 2>/dev/null >{ACTIVITY_FILE}");
    let script = format!("umask {umask}; {touch}; \"$@\"; status=$?; {touch}; exit $status");
    let mut wrapped = vec!["sh".to_string(), "-c".to_string(), script, "paid-exec".to_string()];
    wrapped.extend(argv.iter().cloned());
    wrapped
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
    target.cleanups.wait(&target.sandbox, CLEANUP_WAIT).await;
    let deadline = req.timeout.map(|t| Instant::now() + t);
    let env: Vec<String> = req.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let options = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(wrap(&target.umask, &req.cmd)),
        env: Some(env),
        user: Some(target.user.clone()),
        working_dir: Some(workdir),
        ..Default::default()
    };
    let (exec_id, output) = launch(&target, options).await?;
    tracing::debug!(sandbox = %target.sandbox, exec = %exec_id, cmd = ?req.cmd, "exec started");

    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let state = Arc::new(Mutex::new(PumpState::default()));
    let events = Events {
        rx,
        ended: false,
        state: state.clone(),
        cleanups: target.cleanups.clone(),
        sandbox: target.sandbox.clone(),
    };
    let pump = Pump { target, exec_id, deadline, cancel: req.cancel, tx, state };
    tokio::spawn(pump.run(output));
    Ok(events.boxed())
}

/// What the reader's stream and the pump share.
#[derive(Debug, Default)]
struct PumpState {
    /// The pump is done: nothing will take a guard left here.
    done: bool,
    /// Put here when the reader drops the stream before its end; the pump
    /// drops it once the sandbox is clear.
    guard: Option<CleanupGuard>,
}

/// The stream an exec's reader gets.
struct Events {
    rx: mpsc::Receiver<paid_core::Result<ExecEvent>>,
    /// The exit event was read, or the pump is gone.
    ended: bool,
    state: Arc<Mutex<PumpState>>,
    cleanups: Arc<Cleanups>,
    sandbox: String,
}

impl Stream for Events {
    type Item = paid_core::Result<ExecEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(None | Some(Ok(ExecEvent::Exit(_)))) = &polled {
            self.ended = true;
        }
        polled
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Runs before `rx` drops, so before the pump sees the stream closed.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.done {
            state.guard = Some(self.cleanups.begin(&self.sandbox));
        }
    }
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
/// cancellation token; clears the sandbox when the exec ends.
struct Pump {
    target: ExecTarget,
    exec_id: String,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    tx: mpsc::Sender<paid_core::Result<ExecEvent>>,
    state: Arc<Mutex<PumpState>>,
}

impl Pump {
    async fn run(self, output: Output) {
        self.run_to_end(output).await;
        let guard = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.done = true;
            state.guard.take()
        };
        drop(guard);
    }

    async fn run_to_end(&self, mut output: Output) {
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
                let code = exit_code(target, &self.exec_id).await;
                clear(target, false).await;
                let exit = match code {
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
                clear(target, true).await;
                let _ =
                    self.tx.send(Err(DockerError::from_bollard("exec output", &target.endpoint, source).into())).await;
            }
        }
    }

    /// Clears the sandbox while still reading the command's output.
    ///
    /// The engine does not finish an exec (nor, behind it, the killer exec)
    /// until the killed command's output has been read: with a command that
    /// floods its output (`yes`), a killer run while nobody reads would
    /// stall until the restart fallback. So the output is consumed
    /// meanwhile; with `forward`, what comes within [`DRAIN_AFTER_KILL`] is
    /// passed on as far as the reader keeps up, the rest is dropped. Returns
    /// the output when it has not ended yet.
    async fn kill_reading(&self, mut output: Output, forward: bool) -> Option<Output> {
        let kill = clear(&self.target, true);
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

/// What the engine lists in a sandbox besides its init and keepalive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leftovers {
    /// Nothing: every process runs as the init's user.
    Clear,
    /// Processes of another user, by host pid, and whether each is a
    /// zombie (dead, waiting for the init to reap it).
    Found(Vec<(String, bool)>),
}

/// Reads the engine's process list (`ps` columns `PID`, `UID` or `USER`,
/// `STAT`): every process whose user differs from that of the init (host
/// pid `init_pid`) is left over.
pub(crate) fn leftovers(top: &ContainerTopResponse, init_pid: &str) -> Result<Leftovers, String> {
    let titles = top.titles.as_deref().unwrap_or_default();
    let column = |name: &str| titles.iter().position(|t| t == name);
    let (Some(pid), Some(user), Some(stat)) = (column("PID"), column("UID").or_else(|| column("USER")), column("STAT"))
    else {
        return Err(format!("the process list has columns {titles:?}, not PID, UID and STAT"));
    };
    let rows = top.processes.as_deref().unwrap_or_default();
    let init_user = rows
        .iter()
        .find(|row| row.get(pid).map(String::as_str) == Some(init_pid))
        .and_then(|row| row.get(user))
        .ok_or_else(|| format!("the init (pid {init_pid}) is not in the process list"))?;
    let left: Vec<(String, bool)> = rows
        .iter()
        .filter(|row| row.get(user) != Some(init_user))
        .map(|row| {
            let zombie = row.get(stat).is_some_and(|s| s.starts_with('Z'));
            (row.get(pid).cloned().unwrap_or_default(), zombie)
        })
        .collect();
    Ok(if left.is_empty() { Leftovers::Clear } else { Leftovers::Found(left) })
}

/// What a look at the sandbox from the engine's side found.
enum Look {
    /// The sandbox does not run: nothing can be left in it.
    Stopped,
    /// Its init does not run as a user of its own (a sandbox made by an
    /// older version): the sandbox's processes cannot be told from the
    /// init's, and `kill -9 -1` would take the keepalive too.
    SharedInit,
    /// The engine answers, but cannot list processes (no usable `ps` on
    /// its host): what the engine said.
    Unlisted(String),
    /// What is left besides the init and keepalive.
    Left(Leftovers),
}

/// Asks the engine what runs in the sandbox; nothing in the sandbox can
/// change the answer.
async fn look(target: &ExecTarget) -> Result<Look, DockerError> {
    let docker = &target.docker;
    let top = |args: &'static str| {
        let options = TopOptionsBuilder::new().ps_args(args).build();
        async move { docker.top_processes(&target.sandbox, Some(options)).await }
    };
    let (inspect, listed) =
        tokio::join!(docker.inspect_container(&target.sandbox, None::<InspectContainerOptions>), top(TOP_ARGS[0]));
    let inspect = match inspect {
        Ok(inspect) => inspect,
        Err(e) if status_of(&e) == Some(404) => return Ok(Look::Stopped),
        Err(e) => return Err(DockerError::from_bollard("inspect container", &target.endpoint, e)),
    };
    let state = inspect.state.unwrap_or_default();
    let Some(init_pid) = state.pid.filter(|&pid| state.running == Some(true) && pid > 0) else {
        return Ok(Look::Stopped);
    };
    let init_user = inspect.config.and_then(|c| c.user).unwrap_or_default();
    let uid = |user: &str| SandboxUser::parse(user).map(|u| u.uid).ok();
    if uid(&init_user).is_none_or(|init| Some(init) == uid(&target.user)) {
        return Ok(Look::SharedInit);
    }
    let listed = match listed {
        Ok(listed) => listed,
        Err(_) => match top(TOP_ARGS[1]).await {
            Ok(listed) => listed,
            Err(e) if status_of(&e).is_some() => return Ok(Look::Unlisted(e.to_string())),
            Err(e) => return Err(DockerError::from_bollard("top", &target.endpoint, e)),
        },
    };
    let left = leftovers(&listed, &init_pid.to_string())
        .map_err(|message| DockerError::Exec { id: target.sandbox.clone(), message })?;
    Ok(Look::Left(left))
}

/// Clears the sandbox: kills every process but its init and keepalive and
/// confirms with the engine's process list that none is left (see the
/// module docs). With `kill_first` the killer runs before the first look
/// (timeout, cancellation: something surely runs); otherwise only when the
/// look finds something. Restarts the sandbox when that does not succeed
/// within [`KILL_DEADLINE`].
async fn clear(target: &ExecTarget, kill_first: bool) {
    let started = Instant::now();
    let until = started + KILL_DEADLINE;
    let mut kill = kill_first;
    let mut kills = 0u32;
    let mut pause = Duration::from_millis(1);
    loop {
        if kill {
            kills += 1;
            match run_quiet(target, vec!["sh".to_string(), "-c".to_string(), KILLER.to_string()]).await {
                Ok(()) => {}
                Err(e) => tracing::debug!(sandbox = %target.sandbox, error = %e, "killer could not run; retrying"),
            }
        }
        match look(target).await {
            Ok(Look::Stopped) => return,
            Ok(Look::Left(Leftovers::Clear)) => {
                tracing::debug!(
                    sandbox = %target.sandbox, kills, elapsed_us = started.elapsed().as_micros() as u64,
                    "sandbox clear"
                );
                return;
            }
            Ok(Look::Left(Leftovers::Found(left))) => {
                tracing::debug!(sandbox = %target.sandbox, ?left, "processes left; killing");
                // Zombies are dead already: wait for the init to reap them.
                kill = left.iter().any(|(_, zombie)| !zombie);
            }
            Ok(Look::SharedInit) if !kill_first => {
                tracing::warn!(
                    sandbox = %target.sandbox,
                    "the sandbox's init does not run as a user of its own (the sandbox was made by an older \
                     version), so what its execs leave behind cannot be killed; recreate it"
                );
                return;
            }
            // The killer refused (it would have ended the sandbox): restart.
            Ok(Look::SharedInit) => break,
            Ok(Look::Unlisted(message)) => {
                // Restarting after every exec would wipe `/tmp` and home
                // each time; without a list, the killer is all there is.
                if kills == 0 {
                    let _ = run_quiet(target, vec!["sh".to_string(), "-c".to_string(), KILLER.to_string()]).await;
                }
                tracing::warn!(
                    sandbox = %target.sandbox, error = %message,
                    "the engine cannot list the sandbox's processes; killed them without confirming"
                );
                return;
            }
            Err(e) => {
                tracing::debug!(sandbox = %target.sandbox, error = %e, "could not list the sandbox's processes");
                kill = true;
            }
        }
        if Instant::now() >= until {
            break;
        }
        if !kill {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
    tracing::warn!(
        sandbox = %target.sandbox,
        "could not clear the sandbox's processes within {KILL_DEADLINE:?}; restarting the sandbox"
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
    let (exec_id, stdout) = run_helper(target, cmd).await?;
    Ok((exit_code(target, &exec_id).await?, stdout))
}

/// Runs a short helper command as the sandbox user until its output ends
/// (it exited), ignoring its exit code.
async fn run_quiet(target: &ExecTarget, cmd: Vec<String>) -> Result<(), DockerError> {
    run_helper(target, cmd).await.map(|_| ())
}

/// Runs a helper until its output ends; its exec id and stdout.
async fn run_helper(target: &ExecTarget, cmd: Vec<String>) -> Result<(String, Vec<u8>), DockerError> {
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
            Ok(None) => return Ok((exec_id, stdout)),
            Err(_) => {
                return Err(DockerError::Exec {
                    id: target.sandbox.clone(),
                    message: format!("helper exec {exec_id} did not finish within {EXIT_CODE_WAIT:?}"),
                });
            }
        }
    }
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
    use futures::FutureExt as _;

    use super::*;

    #[test]
    fn wrapper_marks_activity_and_passes_argv_through() {
        let argv = vec!["python3".to_string(), "-c".to_string(), "print('a b')".to_string()];
        assert_eq!(
            wrap("0002", &argv),
            vec![
                "sh",
                "-c",
                "umask 0002; echo $$ 2>/dev/null >/tmp/.paid-activity; \"$@\"; status=$?; \
                 echo $$ 2>/dev/null >/tmp/.paid-activity; exit $status",
                "paid-exec",
                "python3",
                "-c",
                "print('a b')",
            ]
        );
    }

    #[test]
    fn the_killer_reads_nothing_from_the_sandbox_and_spares_a_shared_init() {
        assert!(!KILLER.contains("/tmp") && !KILLER.contains('<'), "no file decides what is killed: {KILLER}");
        let guard = KILLER.find("kill -0 1 2>/dev/null && exit 3").unwrap();
        let kill = KILLER.find("kill -9 -1").unwrap();
        assert!(guard < kill, "{KILLER}");
    }

    fn top(titles: &[&str], rows: &[&[&str]]) -> ContainerTopResponse {
        ContainerTopResponse {
            titles: Some(titles.iter().map(|t| t.to_string()).collect()),
            processes: Some(rows.iter().map(|r| r.iter().map(|c| c.to_string()).collect()).collect()),
        }
    }

    #[test]
    fn leftovers_are_the_processes_of_other_users_than_the_init() {
        let clear = top(&["PID", "UID", "STAT"], &[&["100", "65534", "Ss"], &["120", "65534", "S"]]);
        assert_eq!(leftovers(&clear, "100"), Ok(Leftovers::Clear));

        let left = top(
            &["PID", "UID", "STAT"],
            &[&["100", "65534", "Ss"], &["120", "65534", "S"], &["130", "1000", "S"], &["131", "1000", "Z"]],
        );
        assert_eq!(
            leftovers(&left, "100"),
            Ok(Leftovers::Found(vec![("130".to_string(), false), ("131".to_string(), true)]))
        );

        // With user-namespace remapping the host sees shifted uids; only
        // "not the init's user" matters. Busybox `ps` names users.
        let named = top(&["PID", "USER", "STAT"], &[&["7", "nobody", "S"], &["9", "1000", "R"]]);
        assert_eq!(leftovers(&named, "7"), Ok(Leftovers::Found(vec![("9".to_string(), false)])));
    }

    #[test]
    fn a_process_list_without_the_init_or_the_columns_is_an_error() {
        let list = top(&["PID", "UID", "STAT"], &[&["120", "65534", "S"]]);
        assert!(leftovers(&list, "100").unwrap_err().contains("pid 100"));
        let list = top(&["PID", "CMD"], &[&["100", "sleep"]]);
        assert!(leftovers(&list, "100").is_err());
    }

    #[tokio::test]
    async fn a_new_exec_waits_for_the_cleanup_of_a_dropped_one() {
        let cleanups = Arc::new(Cleanups::default());
        let guard = cleanups.begin("s1");
        let other = cleanups.begin("s2");
        drop(other);
        // Another sandbox does not wait.
        tokio::time::timeout(Duration::from_millis(100), cleanups.wait("s2", CLEANUP_WAIT)).await.unwrap();
        let waiter = cleanups.wait("s1", CLEANUP_WAIT);
        tokio::pin!(waiter);
        // Polled once: it found the clean-up under way and is parked on it.
        assert!(waiter.as_mut().now_or_never().is_none(), "returned while the clean-up was under way");
        drop(guard);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap();
        assert!(!cleanups.busy("s1"));
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
