//! Shared helpers of the tests against the real Docker engine.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;

use paid_core::{ResourceLimits, SandboxRuntime, SandboxSpec, testing::sandbox};
use paid_runtime_docker::{DockerConfig, DockerRuntime};

/// The sandbox image (`scripts/build-images` builds it).
pub fn image() -> String {
    std::env::var("PAID_AGENT_IMAGE").unwrap_or_else(|_| "paid/agent:bookworm".to_string())
}

/// A runtime on the local engine, with the image present. These tests never
/// skip: without Docker they fail, saying what is missing (and louder under
/// `CI`).
pub async fn docker_required() -> DockerRuntime {
    let runtime = match DockerRuntime::connect(DockerConfig::default()).await {
        Ok(runtime) => runtime,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set and the Docker engine is required, but: {e}")
        }
        Err(e) => panic!(
            "these tests need a running Docker engine and never skip: {e}\n\
             start dockerd (or point DOCKER_HOST at one), then run scripts/build-images"
        ),
    };
    let image = image();
    if let Err(e) = runtime.ensure_image(&image).await {
        panic!("the sandbox image is required: {e}");
    }
    runtime
}

/// The conformance suite's spec with other limits.
pub fn spec_with(worktree: &Path, limits: ResourceLimits) -> SandboxSpec {
    SandboxSpec { limits, ..sandbox::spec(&image(), worktree) }
}
