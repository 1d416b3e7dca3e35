//! Exec behaviour beyond the conformance suite: streaming timing, prompt
//! kills, dropped streams, large output, and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use paid_core::testing::sandbox::{self as suite, KILL_BUDGET, sh, with_sandbox};
use paid_core::{Error, ExecEvent, ExecExit, ExecRequest, SandboxRuntime};
use paid_runtime_docker::{DockerConfig, DockerRuntime};
use tokio_util::sync::CancellationToken;

use common::{docker_required, image};

/// Whether a process whose command line contains `needle` runs in the
/// sandbox, as the engine lists them.
async fn running(runtime: &DockerRuntime, sandbox: &paid_core::SandboxHandle, needle: &str) -> bool {
    top_args(runtime, sandbox).await.iter().any(|line| line.contains(needle))
}

/// The command lines in the sandbox as the engine lists them (an exec
/// listing them itself would now end the command it looks at).
async fn top_args(runtime: &DockerRuntime, sandbox: &paid_core::SandboxHandle) -> Vec<String> {
    let options = bollard::query_parameters::TopOptionsBuilder::new().ps_args("-o pid,args").build();
    let top = runtime.client().top_processes(&sandbox.id, Some(options)).await.unwrap();
    top.processes.unwrap_or_default().into_iter().filter_map(|row| row.into_iter().nth(1)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_arrive_while_the_command_runs() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let started = Instant::now();
        let mut events =
            runtime.exec(sandbox, ExecRequest::shell("for i in 1 2 3; do echo line $i; sleep 1; done")).await.unwrap();
        let first = events.next().await.unwrap().unwrap();
        let first_at = started.elapsed();
        assert_eq!(first, ExecEvent::Stdout("line 1\n".into()));
        let rest: Vec<ExecEvent> = events.map(Result::unwrap).collect().await;
        let total = started.elapsed();
        assert_eq!(rest.last(), Some(&ExecEvent::Exit(ExecExit::Code(0))));
        assert!(first_at + Duration::from_millis(1500) < total, "first line at {first_at:?}, end at {total:?}");
        eprintln!("first event after {first_at:?}; command ended after {total:?}");
    })
    .await;
}

/// Cancelling kills a tree that ignores `SIGTERM` and `SIGINT` promptly.
/// (Execs in one sandbox run one at a time: one still running when another
/// ends is ended too, see `tests/cleanup.rs`.)
#[tokio::test(flavor = "multi_thread")]
async fn cancel_returns_quickly_and_kills_the_tree() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        // A tree that ignores SIGTERM and SIGINT: only SIGKILL ends it.
        let cancel = CancellationToken::new();
        let script = "trap '' TERM INT; sh -c 'trap \"\" TERM INT; sleep 1001' & sleep 1002; wait";
        let mut events = runtime.exec(sandbox, ExecRequest::shell(script).with_cancel(cancel.clone())).await.unwrap();
        let mut started = false;
        for _ in 0..20 {
            // not an assertion: the poll interval of a bounded wait (20 tries; `started` is asserted below)
            tokio::time::sleep(Duration::from_millis(100)).await;
            started = running(&runtime, sandbox, "sleep 1001").await && running(&runtime, sandbox, "sleep 1002").await;
            if started {
                break;
            }
        }
        assert!(started, "{:?}", top_args(&runtime, sandbox).await);

        let cancelled = Instant::now();
        cancel.cancel();
        let mut last = None;
        while let Some(event) = events.next().await {
            last = Some(event.unwrap());
        }
        let took = cancelled.elapsed();
        assert_eq!(last, Some(ExecEvent::Exit(ExecExit::Cancelled)));
        assert!(took < KILL_BUDGET, "cancel took {took:?}");
        eprintln!("cancel reported after {took:?}");
        assert!(!running(&runtime, sandbox, "sleep 1001").await, "grandchild survived");
        assert!(!running(&runtime, sandbox, "sleep 1002").await, "child survived");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_stream_kills_the_command() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let mut events = runtime.exec(sandbox, ExecRequest::shell("echo up; sleep 1003")).await.unwrap();
        assert_eq!(events.next().await.unwrap().unwrap(), ExecEvent::Stdout("up\n".into()));
        drop(events);
        let until = Instant::now() + KILL_BUDGET;
        while running(&runtime, sandbox, "sleep 1003").await {
            assert!(Instant::now() < until, "the command outlived its dropped stream");
            // not an assertion: the poll interval of a deadline-bounded wait
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_before_the_command_starts_writing_still_kills_it() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let req = ExecRequest::shell("sleep 1004").with_timeout(Duration::from_millis(1));
        let out = suite::run(&runtime, sandbox, req).await;
        assert_eq!(out.exit, ExecExit::TimedOut);
        assert!(out.elapsed() < KILL_BUDGET, "{:?}", out.elapsed());
        assert!(!running(&runtime, sandbox, "sleep 1004").await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_output_arrives_whole() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let started = Instant::now();
        let out = sh(&runtime, sandbox, "head -c 50000000 /dev/zero; head -c 1000 /dev/zero >&2").await;
        assert_eq!(out.exit, ExecExit::Code(0));
        assert_eq!((out.stdout.len(), out.stderr.len()), (50_000_000, 1000));
        eprintln!("50 MB of stdout in {:?}", started.elapsed());
    })
    .await;
}

/// Not a benchmark (those live in benches/): a number worth seeing in the
/// test log, printed with `--nocapture`.
#[tokio::test(flavor = "multi_thread")]
async fn reports_create_and_first_exec_latency() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    let spec = suite::spec(&image(), worktree.path());
    let mut samples = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let sandbox = runtime.create(&spec).await.unwrap();
        let created = started.elapsed();
        let out = sh(&runtime, &sandbox, "true").await;
        let ready = started.elapsed();
        runtime.remove(&sandbox).await.unwrap();
        assert_eq!(out.exit, ExecExit::Code(0));
        samples.push((created, ready));
    }
    for (created, ready) in &samples {
        eprintln!("create {created:?}; create + first exec answered {ready:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_engine_says_where_and_what_to_do() {
    for endpoint in ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"] {
        let config = DockerConfig { endpoint: Some(endpoint.into()), insecure: true, ..DockerConfig::default() };
        let err = DockerRuntime::connect(config).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { backend: "docker", .. }), "{err:?}");
        assert!(err.is_retryable());
        let message = err.to_string();
        assert!(
            message.contains(&format!("cannot reach the Docker engine at {endpoint}: "))
                && message.ends_with("; is dockerd running?"),
            "{message}"
        );
        assert!(std::error::Error::source(&err).is_some(), "the bollard error is kept as the source");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_configurations_are_refused() {
    for config in [
        DockerConfig { user: "0:0".into(), ..DockerConfig::default() },
        DockerConfig { user: "root".into(), ..DockerConfig::default() },
        DockerConfig { umask: "0;id".into(), ..DockerConfig::default() },
        DockerConfig { init_user: "0:0".into(), ..DockerConfig::default() },
        DockerConfig { init_user: "1000:1000".into(), ..DockerConfig::default() },
        DockerConfig { user: "2000:2000".into(), init_user: "2000:65534".into(), ..DockerConfig::default() },
        DockerConfig { endpoint: Some("tcp://127.0.0.1:9".into()), ..DockerConfig::default() },
    ] {
        let err = DockerRuntime::connect(config.clone()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{config:?}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_command_is_invalid() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let err = runtime.exec(sandbox, ExecRequest::argv(Vec::<String>::new())).await.err().unwrap();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_workdir_or_a_stopped_sandbox_fail_clearly() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        let mut req = ExecRequest::shell("pwd");
        req.workdir = Some("/no/such/dir".into());
        let out = suite::run(&runtime, sandbox, req).await;
        assert_eq!(out.exit, ExecExit::Code(126), "the engine cannot start it");
        assert!(out.stdout_text().contains("/no/such/dir"), "{}", out.stdout_text());

        runtime.stop(sandbox).await.unwrap();
        let err = runtime.exec(sandbox, ExecRequest::shell("true")).await.err().unwrap();
        assert!(!err.is_retryable());
        assert!(err.to_string().starts_with("docker: create exec failed: "), "{err}");
        assert!(err.to_string().ends_with("is not running"), "{err}");
    })
    .await;
}

/// Nothing in `/tmp` matters to the kill: with `/tmp` full (where the
/// runtime once kept a pid file per exec), a timeout still kills the
/// command without restarting the sandbox (the tmpfs keeps its content).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_tmp_does_not_get_in_the_way_of_the_kill() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    let limits = paid_core::ResourceLimits { tmp_bytes: 1 << 20, ..suite::spec("", worktree.path()).limits };
    with_sandbox(&runtime, &common::spec_with(worktree.path(), limits), async |sandbox| {
        let out = sh(&runtime, sandbox, "echo kept > kept.txt; head -c 2000000 /dev/zero > /tmp/fill").await;
        assert_ne!(out.exit, ExecExit::Code(0), "/tmp is full");
        let req = ExecRequest::shell("sleep 1005").with_timeout(Duration::from_millis(500));
        let out = suite::run(&runtime, sandbox, req).await;
        assert_eq!(out.exit, ExecExit::TimedOut);
        assert!(out.elapsed() < Duration::from_millis(500) + KILL_BUDGET, "{:?}", out.elapsed());
        eprintln!("timeout with a full /tmp reported after {:?}", out.elapsed());
        assert!(!running(&runtime, sandbox, "sleep 1005").await);
        let out = sh(&runtime, sandbox, "cat kept.txt; ls /tmp").await;
        assert!(out.stdout_text().contains("fill"), "the sandbox was restarted: {}", out.stdout_text());
    })
    .await;
}

/// The engine does not finish the killer exec while the killed command's
/// output goes unread, so a flooding command must be killed while its
/// output is still consumed: the timeout is then prompt, and the sandbox
/// is not restarted (its tmpfs keeps a marker).
#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_command_ends_promptly_on_timeout_and_on_drop() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&image(), worktree.path()), async |sandbox| {
        sh(&runtime, sandbox, "echo kept > /tmp/marker").await;

        let timeout = Duration::from_secs(2);
        let started = Instant::now();
        let mut events = runtime.exec(sandbox, ExecRequest::argv(["yes"]).with_timeout(timeout)).await.unwrap();
        let mut last = None;
        while let Some(event) = events.next().await {
            last = Some(event.unwrap());
        }
        let took = started.elapsed();
        eprintln!("flood with a {timeout:?} timeout ended after {took:?}");
        assert_eq!(last, Some(ExecEvent::Exit(ExecExit::TimedOut)));
        assert!(took < timeout + KILL_BUDGET, "took {took:?}");
        assert!(!running(&runtime, sandbox, "yes").await);

        let mut events = runtime.exec(sandbox, ExecRequest::argv(["yes"])).await.unwrap();
        assert!(matches!(events.next().await, Some(Ok(ExecEvent::Stdout(_)))));
        drop(events);
        let until = Instant::now() + KILL_BUDGET;
        while running(&runtime, sandbox, "yes").await {
            assert!(Instant::now() < until, "the flood outlived its dropped stream");
            // not an assertion: the poll interval of a deadline-bounded wait
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(sh(&runtime, sandbox, "cat /tmp/marker").await.stdout_text(), "kept\n", "no restart happened");
    })
    .await;
}
