//! The `SandboxRuntime` conformance suite of paid-core, against the real
//! Docker engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use paid_core::testing::sandbox as suite;

use common::{docker_required, image};

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
