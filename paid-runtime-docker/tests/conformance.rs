//! The `SandboxRuntime` conformance suite of paid-core, against the real
//! Docker engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use paid_core::testing::sandbox as suite;

use paid_runtime_docker::DockerConfig;

use common::{docker_required, image, runtime_with, unique_prefix, with_cleanup};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let runtime = docker_required().await;
            let worktree = tempfile::tempdir().unwrap();
            suite::$name(&runtime, &image(), worktree.path()).await;
        }
    )*};
}

conformance!(
    lifecycle,
    streams_stdout_and_stderr_apart,
    streams_output_as_it_comes,
    reports_exit_codes,
    shares_the_worktree_with_the_host,
    passes_env_and_workdir,
    timeout_kills_the_process_tree,
    cancel_kills_the_process_tree,
    remove_is_idempotent,
    list_managed_includes_the_sandbox,
    exec_in_a_removed_sandbox_is_not_found,
);

#[tokio::test(flavor = "multi_thread")]
async fn missing_image_is_reported() {
    let runtime = docker_required().await;
    let worktree = tempfile::tempdir().unwrap();
    suite::missing_image_is_reported(&runtime, worktree.path()).await;
}

/// Under a label prefix of its own: the suite's reap removes whatever else
/// carries the runtime's label.
#[tokio::test(flavor = "multi_thread")]
async fn reap_removes_sandboxes_of_runs_not_kept() {
    let prefix = unique_prefix("confreap");
    let runtime = runtime_with(DockerConfig { label_prefix: prefix.clone(), ..DockerConfig::default() }).await;
    let worktree = tempfile::tempdir().unwrap();
    with_cleanup(&runtime.client().clone(), &prefix, async {
        suite::reap_removes_sandboxes_of_runs_not_kept(&runtime, &image(), worktree.path()).await;
    })
    .await;
}
