//! The hardening of a live sandbox, as the engine reports it and as a
//! process inside sees it. The engine silently ignores misplaced keys, so
//! every setting is read back with `docker inspect` (bollard's
//! `inspect_container`) and tried from inside.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::MountType;
use bollard::query_parameters::InspectContainerOptions;
use paid_core::testing::sandbox::{self as suite, KILL_BUDGET, sh, with_sandbox};
use paid_core::{ExecExit, ExecRequest, ResourceLimits};

use common::{docker_required, spec_with};

#[tokio::test(flavor = "multi_thread")]
async fn inspect_shows_every_hardening_setting() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    let limits = ResourceLimits { memory_bytes: 300 << 20, cpus: 1.5, pids: 123, tmp_bytes: 32 << 20 };
    let spec = spec_with(worktree.path(), limits);
    with_sandbox(&runtime, &spec, async |sandbox| {
        let inspect = runtime.client().inspect_container(&sandbox.id, None::<InspectContainerOptions>).await.unwrap();
        let host = inspect.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.memory, Some(300 << 20));
        assert_eq!(host.memory_swap, host.memory, "swap equal to memory: no extra swap");
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.pids_limit, Some(123));
        assert_eq!(host.init, Some(true));
        let tmpfs = host.tmpfs.unwrap();
        let keys: Vec<&str> = {
            let mut keys: Vec<&str> = tmpfs.keys().map(String::as_str).collect();
            keys.sort();
            keys
        };
        assert_eq!(keys, ["/home/agent", "/tmp"]);
        assert!(tmpfs["/tmp"].contains(&format!("size={}", 32 << 20)), "{}", tmpfs["/tmp"]);
        assert!(tmpfs["/home/agent"].contains("uid=1000"), "{}", tmpfs["/home/agent"]);
        assert_eq!(host.binds.unwrap_or_default(), Vec::<String>::new(), "no bind besides the worktree mount");
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some(spec.worktree.to_str().unwrap()));
        assert_eq!(mounts[0].target.as_deref(), Some("/workspace"));
        assert_ne!(mounts[0].read_only, Some(true));

        // The mounts in effect: the worktree is the one bind, and writable.
        let effective = inspect.mounts.unwrap();
        let binds: Vec<_> = effective.iter().filter(|m| m.typ.as_deref() == Some("bind")).collect();
        assert_eq!(binds.len(), 1, "{effective:?}");
        assert_eq!(binds[0].destination.as_deref(), Some("/workspace"));
        assert_eq!(binds[0].rw, Some(true));
        assert!(effective.iter().all(|m| m.typ.as_deref() != Some("volume")), "no volumes: {effective:?}");

        let config = inspect.config.unwrap();
        // The init and keepalive's user; every exec runs as 1000 (below).
        assert_eq!(config.user.as_deref(), Some("65534:65534"));
        let labels: HashMap<String, String> = config.labels.unwrap();
        assert_eq!(labels["paid.managed"], "true");
        assert_eq!(labels["paid.run_id"], spec.run_id.to_string());
        assert_eq!(labels["paid.project_id"], spec.project_id.to_string());
        let name = inspect.name.unwrap();
        assert!(name.starts_with(&format!("/paid-{}-", spec.run_id)), "{name}");
        assert_eq!(inspect.state.unwrap().running, Some(true));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inside_the_sandbox_nothing_is_privileged() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    with_sandbox(&runtime, &suite::spec(&common::image(), worktree.path()), async |sandbox| {
        let out = sh(&runtime, sandbox, "id -u; id -g").await;
        assert_eq!(out.stdout_text(), "1000\n1000\n");

        let out = sh(&runtime, sandbox, "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status").await;
        assert_eq!(
            out.stdout_text(),
            "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\n"
        );

        for path in ["/etc/paid-probe", "/paid-probe", "/usr/paid-probe", "/var/paid-probe"] {
            let out = sh(&runtime, sandbox, &format!("echo x > {path}")).await;
            assert_ne!(out.exit, ExecExit::Code(0), "writing {path} must fail");
        }
        for path in ["/tmp/paid-probe", "/home/agent/paid-probe", "/workspace/paid-probe"] {
            let out = sh(&runtime, sandbox, &format!("echo x > {path} && cat {path}")).await;
            assert_eq!((out.exit, out.stdout_text().as_str()), (ExecExit::Code(0), "x\n"), "writing {path}");
        }
        assert_eq!(std::fs::read_to_string(worktree.path().join("paid-probe")).unwrap(), "x\n");

        // Read-only even for the mount table: no remounting, no privilege back.
        let out = sh(&runtime, sandbox, "mount -o remount,rw / 2>&1; su -c true root </dev/null 2>&1").await;
        assert_ne!(out.exit, ExecExit::Code(0), "{}", out.stdout_text());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_stops_at_the_pid_limit() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    let limits = ResourceLimits { pids: 64, ..suite::spec("", worktree.path()).limits };
    with_sandbox(&runtime, &spec_with(worktree.path(), limits), async |sandbox| {
        let timeout = Duration::from_secs(3);
        let req = ExecRequest::argv(["bash", "-c", ":(){ :|:& };: ; sleep 60"]).with_timeout(timeout);
        let out = suite::run(&runtime, sandbox, req).await;
        assert_eq!(out.exit, ExecExit::TimedOut);
        assert!(out.elapsed() < timeout + KILL_BUDGET, "the bomb took {:?} to stop", out.elapsed());

        // The kernel refused forks at the limit (v1 and v2 spell the file differently).
        let out = sh(&runtime, sandbox, "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; cat /sys/fs/cgroup/pids/pids.events /sys/fs/cgroup/pids.events 2>/dev/null").await;
        let text = out.stdout_text();
        assert!(text.starts_with("64\n"), "{text}");
        let refused: u64 =
            text.lines().find_map(|l| l.strip_prefix("max ")).and_then(|n| n.trim().parse().ok()).unwrap();
        assert!(refused > 0, "no fork was refused at the limit: {text}");

        // The bomb is gone and the sandbox works.
        let out = sh(&runtime, sandbox, "ps -e --no-headers | wc -l").await;
        let count: u32 = out.stdout_text().trim().parse().unwrap();
        assert!(count < 10, "{count} processes left after the bomb");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_reported() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    let limits = ResourceLimits { memory_bytes: 64 << 20, ..suite::spec("", worktree.path()).limits };
    with_sandbox(&runtime, &spec_with(worktree.path(), limits), async |sandbox| {
        let hog = "b = []\nwhile True: b.append(bytearray(8 << 20))";
        let out = suite::run(&runtime, sandbox, ExecRequest::argv(["python3", "-c", hog])).await;
        assert_eq!(out.exit, ExecExit::OutOfMemory, "stderr: {}", out.stderr_text());

        // Not every SIGKILL is the OOM killer.
        let out = sh(&runtime, sandbox, "kill -KILL $$").await;
        assert_eq!(out.exit, ExecExit::Code(137));

        // A second hog in the same sandbox is recognised too.
        let out = suite::run(&runtime, sandbox, ExecRequest::shell(format!("python3 -c '{hog}'"))).await;
        assert_eq!(out.exit, ExecExit::OutOfMemory);
        assert_eq!(sh(&runtime, sandbox, "echo fine").await.stdout_text(), "fine\n");
    })
    .await;
}
