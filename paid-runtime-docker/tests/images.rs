//! Images through the runtime, against the real engine: listing finds the
//! sandbox image; a tiny build from the local base succeeds and reports
//! its steps; broken builds fail saying which tag, where and why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bollard::query_parameters::RemoveImageOptionsBuilder;
use paid_core::{Ids, RandomIds};
use paid_runtime_docker::{BuildProgress, ImageBuild};
use pretty_assertions::assert_eq;

use common::{docker_required, image};

/// Present after `scripts/build-images`; nothing is pulled.
const BASE: &str = "debian:bookworm-slim";

#[tokio::test(flavor = "multi_thread")]
async fn images_are_listed_and_built_with_progress_and_failed_builds_say_why() {
    let runtime = docker_required().await;
    let listed = runtime.images().await.unwrap();
    let agent = listed.iter().find(|i| i.tags.contains(&image())).expect("the sandbox image is listed");
    assert!(agent.size_bytes > 0 && agent.id.starts_with("sha256:"), "{agent:?}");
    assert_eq!(agent.endpoint, runtime.endpoints()[0]);
    assert!(!agent.is_dangling());

    let tag = format!("paidtest/tiny:{}", RandomIds.hex(4));
    let build = ImageBuild::new(&tag, format!("FROM {BASE}\nCOPY hello /hello\nRUN test -s /hello\n"))
        .with_file("hello", b"hi\n".to_vec());
    let mut events = Vec::new();
    let built = runtime.build_image(&build, |e| events.push(e)).await;
    let cleanup = async {
        let options = RemoveImageOptionsBuilder::new().force(true).build();
        let _ = runtime.client().remove_image(&tag, Some(options), None).await;
    };
    let built = match built {
        Ok(built) => built,
        Err(e) => {
            cleanup.await;
            panic!("the tiny build failed: {e}\n{events:#?}");
        }
    };
    let listed = runtime.images().await.unwrap();
    cleanup.await;
    assert_eq!((built.tag.as_str(), built.steps, built.endpoints.clone()), (tag.as_str(), 3, runtime.endpoints()));
    assert!(built.id.starts_with("sha256:"), "{built:?}");
    assert_eq!(events.first(), Some(&BuildProgress::Started { endpoint: runtime.endpoints()[0].clone() }));
    let steps: Vec<(u64, u64, String)> = events
        .iter()
        .filter_map(|e| match e {
            BuildProgress::Step { number, total, instruction } => Some((*number, *total, instruction.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            (1, 3, format!("FROM {BASE}")),
            (2, 3, "COPY hello /hello".to_string()),
            (3, 3, "RUN test -s /hello".to_string()),
        ]
    );
    assert!(events.iter().any(|e| matches!(e, BuildProgress::Output(_))), "{events:#?}");
    assert!(listed.iter().any(|i| i.tags.contains(&tag) && i.id == built.id), "the built image is listed");

    // A bad instruction and a failing step: errors name the tag, the
    // endpoint, the step and the engine's reason.
    for (dockerfile, step, reason) in [
        (format!("FROM {BASE}\nNOPE nothing\n"), None, "unknown instruction"),
        (format!("FROM {BASE}\nRUN exit 3\n"), Some("at step 2: RUN exit 3"), "returned a non-zero code: 3"),
    ] {
        let tag = format!("paidtest/broken:{}", RandomIds.hex(4));
        let err = runtime.build_image(&ImageBuild::new(&tag, dockerfile), |_| {}).await.unwrap_err();
        let message = err.to_string();
        eprintln!("{message}");
        assert!(matches!(err, paid_core::Error::Backend { retryable: false, .. }), "{err:?}");
        assert!(message.contains(&format!("building {tag} on {}", runtime.endpoints()[0])), "{message}");
        assert!(message.to_lowercase().contains(reason), "{message}");
        if let Some(step) = step {
            assert!(message.contains(step), "{message}");
        }
        assert!(runtime.client().inspect_image(&tag).await.is_err(), "no image is left under {tag}");
    }
    runtime.ping().await.unwrap();
}
