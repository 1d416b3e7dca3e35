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
    // The runtime's logs, with `RUST_LOG=paid_runtime_docker=debug` and `--nocapture`.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
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

/// A label prefix no other test uses, so a test can clean up by its own
/// labels (never by image).
pub fn unique_prefix(test: &str) -> String {
    use paid_core::Ids;
    format!(
        "paidt{}{}",
        test.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>(),
        paid_core::RandomIds.hex(3)
    )
}

/// A runtime on the local engine with `config`, the image present.
pub async fn runtime_with(config: DockerConfig) -> DockerRuntime {
    docker_required().await;
    DockerRuntime::connect(config).await.unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Removes every container, network and volume labeled
/// `<prefix>.managed=true` (forwarders and their socket volumes included),
/// by id or name. Returns how many containers it found.
pub async fn cleanup(docker: &bollard::Docker, prefix: &str) -> usize {
    use bollard::query_parameters::{
        ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptions,
    };
    let filters = std::collections::HashMap::from([("label", vec![format!("{prefix}.managed=true")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let containers = docker.list_containers(Some(options)).await.unwrap_or_default();
    for c in &containers {
        let id = c.id.clone().unwrap_or_default();
        let _ =
            docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).v(true).build())).await;
    }
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    for n in docker.list_networks(Some(options)).await.unwrap_or_default() {
        let _ = docker.remove_network(&n.id.unwrap_or_default()).await;
    }
    for name in managed_volumes(docker, prefix).await {
        let _ = docker.remove_volume(&name, None::<RemoveVolumeOptions>).await;
    }
    containers.len()
}

/// Volumes labeled `<prefix>.managed=true`, by name.
pub async fn managed_volumes(docker: &bollard::Docker, prefix: &str) -> Vec<String> {
    use bollard::query_parameters::ListVolumesOptionsBuilder;
    let filters = std::collections::HashMap::from([("label", vec![format!("{prefix}.managed=true")])]);
    let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let listed = docker.list_volumes(Some(options)).await.unwrap();
    listed.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect()
}

/// Containers labeled `<prefix>.managed=true`, all states.
pub async fn managed_ids(docker: &bollard::Docker, prefix: &str) -> Vec<String> {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let filters = std::collections::HashMap::from([("label", vec![format!("{prefix}.managed=true")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    docker.list_containers(Some(options)).await.unwrap().into_iter().filter_map(|c| c.id).collect()
}

/// Networks labeled `<prefix>.managed=true`, by name.
pub async fn managed_networks(docker: &bollard::Docker, prefix: &str) -> Vec<String> {
    use bollard::query_parameters::ListNetworksOptionsBuilder;
    let filters = std::collections::HashMap::from([("label", vec![format!("{prefix}.managed=true")])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    docker.list_networks(Some(options)).await.unwrap().into_iter().filter_map(|n| n.name).collect()
}

/// Runs `body`, then [`cleanup`] for `prefix` even when `body` panics.
pub async fn with_cleanup(docker: &bollard::Docker, prefix: &str, body: impl std::future::Future<Output = ()>) {
    use futures::FutureExt;
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    cleanup(docker, prefix).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
