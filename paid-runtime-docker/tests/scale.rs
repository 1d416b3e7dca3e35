//! Several endpoints: sandboxes go to the least-loaded one, handles work on
//! every endpoint, and another runtime (a restarted or second worker) finds
//! and counts them. The local engine plays two endpoints, once through a
//! `unix://` URI and once through its socket path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bollard::query_parameters::InspectContainerOptions;
use paid_core::testing::sandbox::{self as suite, sh};
use paid_core::{SandboxHandle, SandboxRuntime};
use paid_runtime_docker::{DockerConfig, DockerRuntime};

use common::{image, runtime_with, unique_prefix, with_cleanup};

const SOCKET: &str = "/var/run/docker.sock";

fn two_endpoints(prefix: &str) -> DockerConfig {
    DockerConfig {
        label_prefix: prefix.to_string(),
        endpoints: vec![format!("unix://{SOCKET}"), SOCKET.to_string()],
        ..DockerConfig::default()
    }
}

async fn placed(runtime: &DockerRuntime, sandboxes: &[SandboxHandle]) -> Vec<usize> {
    let names = runtime.endpoints();
    let mut out = Vec::new();
    for sandbox in sandboxes {
        let endpoint = runtime.endpoint_of(sandbox).await.unwrap();
        out.push(names.iter().position(|n| *n == endpoint).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxes_go_to_the_least_loaded_endpoint() {
    let prefix = unique_prefix("scale");
    let runtime = runtime_with(two_endpoints(&prefix)).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut sandboxes = Vec::new();
        for dir in &dirs[..4] {
            sandboxes.push(runtime.create(&suite::spec(&image(), dir.path())).await.unwrap());
        }
        assert_eq!(placed(&runtime, &sandboxes).await, [0, 1, 0, 1], "ties go to the first endpoint");

        // The placement is on the container, for every worker to count.
        let inspect = docker.inspect_container(&sandboxes[1].id, None::<InspectContainerOptions>).await.unwrap();
        assert_eq!(inspect.config.unwrap().labels.unwrap()[&format!("{prefix}.endpoint")], SOCKET);

        // Every handle works, through its endpoint.
        for (i, sandbox) in sandboxes.iter().enumerate() {
            let out = sh(&runtime, sandbox, &format!("echo {i}")).await;
            assert_eq!(out.stdout_text(), format!("{i}\n"));
        }
        let listed = runtime.list_managed().await.unwrap();
        assert_eq!(listed.len(), 4, "each sandbox once, though both endpoints are one engine: {listed:?}");

        // Free a place on endpoint 0: the next sandbox goes there.
        runtime.remove(&sandboxes.remove(0)).await.unwrap();
        let next = runtime.create(&suite::spec(&image(), dirs[4].path())).await.unwrap();
        assert_eq!(placed(&runtime, std::slice::from_ref(&next)).await, [0]);
        sandboxes.push(next);

        // A second worker with the same endpoints sees the load and the
        // sandboxes: it finds each one's endpoint and can remove it.
        let other = DockerRuntime::connect(two_endpoints(&prefix)).await.unwrap();
        let extra_dir = tempfile::tempdir().unwrap();
        let extra = other.create(&suite::spec(&image(), extra_dir.path())).await.unwrap();
        assert_eq!(placed(&other, &sandboxes).await, placed(&runtime, &sandboxes).await);
        assert_eq!(placed(&other, std::slice::from_ref(&extra)).await, [0], "loads were 2 and 2");
        for sandbox in sandboxes.iter().chain([&extra]) {
            other.remove(sandbox).await.unwrap();
            assert!(!runtime.is_running(sandbox).await.unwrap());
        }
        assert!(runtime.list_managed().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_and_endpoints_exclude_each_other() {
    let config =
        DockerConfig { endpoint: Some(SOCKET.into()), endpoints: vec![SOCKET.into()], ..DockerConfig::default() };
    let err = DockerRuntime::connect(config).await.unwrap_err();
    assert!(matches!(err, paid_core::Error::InvalidInput { .. }), "{err:?}");
    let config = DockerConfig {
        endpoints: vec![SOCKET.into(), "unix:///nonexistent/docker.sock".into()],
        ..DockerConfig::default()
    };
    let err = DockerRuntime::connect(config).await.unwrap_err();
    assert!(err.to_string().contains("unix:///nonexistent/docker.sock"), "{err}");
}
