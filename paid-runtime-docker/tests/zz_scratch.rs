#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use std::time::{Duration, Instant};
use futures::StreamExt;
use paid_core::testing::sandbox as suite;
use paid_core::{ExecEvent, ExecRequest, SandboxRuntime};
#[tokio::test(flavor = "multi_thread")]
async fn scratch() {
    let runtime = common::docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    let handle = runtime.create(&suite::spec(&common::image(), worktree.path())).await.unwrap();
    for delay_us in [0u64, 200] {
        let started = Instant::now();
        let mut s = runtime.exec(&handle, ExecRequest::argv(["yes"]).with_timeout(Duration::from_secs(3))).await.unwrap();
        let (mut n, mut bytes, mut exit_at) = (0, 0, None);
        let mut first_after_deadline = None;
        while let Some(e) = s.next().await {
            match e.unwrap() {
                ExecEvent::Stdout(b) => { n += 1; bytes += b.len(); if started.elapsed() > Duration::from_secs(3) && first_after_deadline.is_none() { first_after_deadline = Some((n, started.elapsed())); } }
                ExecEvent::Exit(x) => exit_at = Some((x, started.elapsed())),
                _ => {}
            }
            if delay_us > 0 { std::thread::sleep(Duration::from_micros(delay_us)); }
        }
        eprintln!("delay {delay_us}us: {n} events, {bytes} bytes, exit {exit_at:?}, first after deadline {first_after_deadline:?}");
    }
    runtime.remove(&handle).await.unwrap();
}
