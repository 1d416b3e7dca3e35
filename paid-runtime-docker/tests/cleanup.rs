//! After every exec nothing of it is left: whatever it started (a `setsid`
//! loop, a `nohup` job, a double-forked daemon) is gone by the time the
//! exec reports its end, whether the command exited, timed out or was
//! cancelled, and whatever the sandbox wrote into `/tmp`. Checked with the
//! engine's process list (`docker top`), which the sandbox cannot forge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::TopOptionsBuilder;
use futures::StreamExt;
use paid_core::testing::sandbox::{self as suite, KILL_BUDGET, sh, with_sandbox};
use paid_core::{ExecEvent, ExecExit, ExecRequest, SandboxHandle, SandboxRuntime};
use paid_runtime_docker::DockerRuntime;
use tokio_util::sync::CancellationToken;

use common::{docker_required, image};

/// Starts a `setsid` loop, a `nohup` job and a double-forked daemon (its
/// parent exits, so it is the init's), all detached from the exec's output,
/// and lists them once they run.
const TREE: &str = "setsid sh -c 'while true; do sleep 0.1; done' </dev/null >/dev/null 2>&1 & \
                    nohup sleep 1001 </dev/null >/dev/null 2>&1 & \
                    (setsid sh -c 'sleep 1002 </dev/null >/dev/null 2>&1 &' &); \
                    sleep 0.3; ps -eo args --no-headers";

/// One process as the engine lists it from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Process {
    pid: String,
    uid: String,
    args: String,
}

/// The sandbox's processes as the engine sees them.
async fn listed(runtime: &DockerRuntime, sandbox: &SandboxHandle) -> Vec<Process> {
    let options = TopOptionsBuilder::new().ps_args("-o pid,uid,args").build();
    let top = runtime.client().top_processes(&sandbox.id, Some(options)).await.unwrap();
    let titles = top.titles.unwrap();
    assert_eq!(titles, ["PID", "UID", "COMMAND"]);
    top.processes
        .unwrap_or_default()
        .into_iter()
        .map(|row| Process { pid: row[0].clone(), uid: row[1].clone(), args: row[2].clone() })
        .collect()
}

/// The init and keepalive of a fresh sandbox: two processes, neither of the
/// sandbox user.
async fn baseline(runtime: &DockerRuntime, sandbox: &SandboxHandle) -> Vec<Process> {
    // Right after the start the keepalive may not have become `sleep` yet.
    let mut processes = listed(runtime, sandbox).await;
    for _ in 0..100 {
        if processes.iter().any(|p| p.args == "sleep infinity") {
            break;
        }
        // not an assertion: the poll interval of a bounded wait (the counts are asserted below)
        tokio::time::sleep(Duration::from_millis(20)).await;
        processes = listed(runtime, sandbox).await;
    }
    assert_eq!(processes.len(), 2, "{processes:?}");
    assert!(processes.iter().any(|p| p.args.contains("docker-init")), "{processes:?}");
    assert!(processes.iter().all(|p| p.uid == "65534"), "{processes:?}");
    processes
}

/// Asserts that the tree ran during the exec.
fn ran_the_tree(stdout: &str) {
    for needle in ["while true", "sleep 1001", "sleep 1002"] {
        assert!(stdout.contains(needle), "{needle} did not start: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_normal_exit_only_the_init_is_left() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let before = baseline(&runtime, sandbox).await;
        let out = sh(&runtime, sandbox, TREE).await;
        assert_eq!(out.exit, ExecExit::Code(0), "{}", out.stderr_text());
        ran_the_tree(&out.stdout_text());
        assert_eq!(listed(&runtime, sandbox).await, before, "something outlived the exec");
        assert_eq!(sh(&runtime, sandbox, "echo usable").await.stdout_text(), "usable\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_timeout_only_the_init_is_left() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let before = baseline(&runtime, sandbox).await;
        let timeout = Duration::from_secs(2);
        let req = ExecRequest::shell(format!("{TREE}; sleep 1003")).with_timeout(timeout);
        let out = suite::run(&runtime, sandbox, req).await;
        assert_eq!(out.exit, ExecExit::TimedOut);
        assert!(out.elapsed() < timeout + KILL_BUDGET, "{:?}", out.elapsed());
        ran_the_tree(&out.stdout_text());
        assert_eq!(listed(&runtime, sandbox).await, before, "something outlived the timeout");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_cancellation_only_the_init_is_left() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let before = baseline(&runtime, sandbox).await;
        let cancel = CancellationToken::new();
        let req = ExecRequest::shell(format!("{TREE}; sleep 1003")).with_cancel(cancel.clone());
        let mut events = runtime.exec(sandbox, req).await.unwrap();
        let mut stdout = String::new();
        while !stdout.contains("sleep 1002") {
            match events.next().await.unwrap().unwrap() {
                ExecEvent::Stdout(bytes) => stdout.push_str(&String::from_utf8_lossy(&bytes)),
                other => assert!(matches!(other, ExecEvent::Stderr(_)), "{other:?}"),
            }
        }
        cancel.cancel();
        let mut last = None;
        while let Some(event) = events.next().await {
            last = Some(event.unwrap());
        }
        assert_eq!(last, Some(ExecEvent::Exit(ExecExit::Cancelled)));
        assert_eq!(listed(&runtime, sandbox).await, before, "something outlived the cancellation");
    })
    .await;
}

/// The runtime reads nothing the sandbox can write to decide what it kills:
/// pid files planted or overwritten in `/tmp` (with a bogus pid, with the
/// keepalive's, with 1) change nothing, the tree dies and the init and
/// keepalive live on without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn pid_files_written_by_the_sandbox_change_nothing() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let before = baseline(&runtime, sandbox).await;
        sh(&runtime, sandbox, "echo kept > /tmp/marker").await;
        let forge = "keepalive=$(pgrep -xo sleep); \
                     for f in /tmp/.paid-exec-*.pid /tmp/.paid-exec-forged.pid; do echo 999999 > \"$f\"; done; \
                     echo \"$keepalive\" > /tmp/.paid-exec-keepalive.pid; echo 1 > /tmp/.paid-exec-one.pid; \
                     echo 999999 > /tmp/.paid-activity";
        let req = ExecRequest::shell(format!("{forge}; {TREE}; sleep 1004")).with_timeout(Duration::from_secs(2));
        let out = suite::run(&runtime, sandbox, req).await;
        assert_eq!(out.exit, ExecExit::TimedOut, "{}", out.stderr_text());
        ran_the_tree(&out.stdout_text());
        assert_eq!(listed(&runtime, sandbox).await, before, "the wrong processes were killed");
        let out = sh(&runtime, sandbox, "cat /tmp/marker").await;
        assert_eq!(out.stdout_text(), "kept\n", "the sandbox was restarted instead");

        // And again on a normal exit, with the files still there.
        let out = sh(&runtime, sandbox, &format!("{forge}; {TREE}")).await;
        assert_eq!(out.exit, ExecExit::Code(0));
        assert_eq!(listed(&runtime, sandbox).await, before);
    })
    .await;
}

/// The sandbox user cannot signal the init and keepalive (they run as
/// another user), so `kill -9 -1` is safe and the sandbox cannot end itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_user_cannot_kill_the_init_or_the_keepalive() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let before = baseline(&runtime, sandbox).await;
        let out = sh(&runtime, sandbox, "kill -9 1 $(pgrep -xo sleep) 2>&1; kill -9 -1; echo $?").await;
        assert!(out.stdout_text().contains("Operation not permitted"), "{}", out.stdout_text());
        assert!(runtime.is_running(sandbox).await.unwrap());
        assert_eq!(listed(&runtime, sandbox).await, before);
    })
    .await;
}

/// Execs in a sandbox run one at a time: one still running when another
/// ends is ended with it (its process is killed, exit 137).
#[tokio::test(flavor = "multi_thread")]
async fn an_exec_running_when_another_ends_is_ended_too() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let before = baseline(&runtime, sandbox).await;
        let long = runtime.exec(sandbox, ExecRequest::shell("sleep 1005; echo finished")).await.unwrap();
        let long = tokio::spawn(long.map(Result::unwrap).collect::<Vec<_>>());
        // The long exec runs before the short one starts.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let processes = listed(&runtime, sandbox).await;
            if processes.iter().any(|p| p.args.contains("sleep 1005")) {
                break;
            }
            assert!(Instant::now() < until, "the long exec never started: {processes:?}");
            // not an assertion: the poll interval of the deadline-bounded wait above
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sh(&runtime, sandbox, "echo short").await.stdout_text(), "short\n");
        let long = tokio::time::timeout(KILL_BUDGET, long).await.unwrap().unwrap();
        assert_eq!(long, vec![ExecEvent::Exit(ExecExit::Code(137))]);
        assert_eq!(listed(&runtime, sandbox).await, before);
    })
    .await;
}

/// A dropped stream is cleared before the next exec starts, so the next
/// exec is not caught by that clean-up.
#[tokio::test(flavor = "multi_thread")]
async fn the_exec_after_a_dropped_one_is_not_caught_by_its_cleanup() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let before = baseline(&runtime, sandbox).await;
        for _ in 0..3 {
            let mut events = runtime.exec(sandbox, ExecRequest::shell(format!("{TREE}; sleep 1006"))).await.unwrap();
            while !matches!(events.next().await, Some(Ok(ExecEvent::Stdout(_)))) {}
            drop(events);
            let out = sh(&runtime, sandbox, "sleep 0.2; echo next").await;
            assert_eq!((out.exit, out.stdout_text().as_str()), (ExecExit::Code(0), "next\n"));
            assert_eq!(listed(&runtime, sandbox).await, before);
        }
    })
    .await;
}

/// A sandbox made before the init had a user of its own (its init runs as
/// the sandbox user) is not taken down by the kill (`kill -9 -1` would end
/// its keepalive, and the container with it): a normal exit leaves it
/// alone, a timeout restarts it.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_whose_init_is_the_sandbox_user_is_not_taken_down() {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bollard::query_parameters::RemoveContainerOptionsBuilder;

    let runtime = docker_required().await;
    let docker = runtime.client();
    let body = ContainerCreateBody {
        image: Some(image()),
        user: Some("1000:1000".into()),
        entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
        host_config: Some(HostConfig {
            init: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = docker.create_container(None, body).await.unwrap().id;
    let outcome = async {
        docker.start_container(&id, None).await.unwrap();
        let sandbox = SandboxHandle { id: id.clone(), mount_at: "/tmp".into() };
        let out = sh(&runtime, &sandbox, "sleep 1008 </dev/null >/dev/null 2>&1 & echo started").await;
        assert_eq!((out.exit, out.stdout_text().as_str()), (ExecExit::Code(0), "started\n"));
        assert!(runtime.is_running(&sandbox).await.unwrap(), "the kill took the sandbox down");

        let req = ExecRequest::shell("sleep 1009").with_timeout(Duration::from_millis(500));
        let out = suite::run(&runtime, &sandbox, req).await;
        assert_eq!(out.exit, ExecExit::TimedOut);
        assert!(runtime.is_running(&sandbox).await.unwrap(), "restarted, not stopped");
        let left: Vec<String> = listed(&runtime, &sandbox).await.into_iter().map(|p| p.args).collect();
        assert!(!left.iter().any(|a| a.contains("sleep 100")), "{left:?}");
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    let _ = docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The time of one bare exec of `true` through bollard (create, start, read
/// to the end, read the exit code), without anything after it.
async fn bare_exec(docker: &bollard::Docker, id: &str) -> Duration {
    let started = Instant::now();
    let options = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec!["sh", "-c", "true"]),
        user: Some("1000:1000"),
        ..Default::default()
    };
    let exec = docker.create_exec(id, options).await.unwrap().id;
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec, None).await.unwrap() {
        while output.next().await.is_some() {}
    }
    assert_eq!(docker.inspect_exec(&exec).await.unwrap().exit_code, Some(0));
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Not a benchmark: what clearing the sandbox adds to an exec, printed with
/// `--nocapture`. The clean case costs one look at the process list; the
/// case with something left adds the killer exec.
#[tokio::test(flavor = "multi_thread")]
async fn reports_what_clearing_adds_to_an_exec() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let docker = runtime.client();
        sh(&runtime, sandbox, "true").await;
        let (mut bare, mut clean, mut leftover) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..15 {
            bare.push(bare_exec(docker, &sandbox.id).await);
            let out = sh(&runtime, sandbox, "true").await;
            clean.push(out.elapsed());
            let out = sh(&runtime, sandbox, "sleep 1007 </dev/null >/dev/null 2>&1 &").await;
            assert_eq!(out.exit, ExecExit::Code(0));
            leftover.push(out.elapsed());
        }
        let (bare, clean, leftover) = (median(bare), median(clean), median(leftover));
        eprintln!(
            "median of 15: bare bollard exec {bare:?}; runtime exec, nothing left {clean:?} (+{:?}); \
             runtime exec leaving a background process {leftover:?} (+{:?})",
            clean.saturating_sub(bare),
            leftover.saturating_sub(bare)
        );
        assert!(leftover < bare + Duration::from_secs(1), "clearing takes {leftover:?}");
    })
    .await;
}
