//! `paid_active_containers{project_id}` and `paid_container_startup_seconds`
//! as a Prometheus scrape shows them, for cold and pooled sandboxes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use paid_core::SandboxRuntime;
use paid_core::metrics::Metrics;
use paid_core::testing::sandbox as suite;
use paid_runtime_docker::{DockerConfig, WarmPoolConfig};
use prometheus_client::registry::Registry;

use common::{image, runtime_with, unique_prefix, with_cleanup};

fn scrape(metrics: &Metrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(start))
}

#[tokio::test(flavor = "multi_thread")]
async fn active_containers_and_startup_time_are_recorded() {
    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("metrics");
    let metrics = Arc::new(Metrics::default());
    let config = DockerConfig {
        label_prefix: prefix.clone(),
        warm_pool: WarmPoolConfig { per_image: 1, root: Some(base.path().join("pool")), ..Default::default() },
        ..DockerConfig::default()
    };
    let runtime = runtime_with(config).await.with_metrics(metrics.clone());
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let (w1, w2) = (base.path().join("w1"), base.path().join("w2"));
        std::fs::create_dir_all(&w1).unwrap();
        std::fs::create_dir_all(&w2).unwrap();
        let first = suite::spec(&image(), &w1);
        let second = paid_core::SandboxSpec { project_id: first.project_id, ..suite::spec(&image(), &w2) };
        let project = first.project_id.to_string();
        let gauge = format!("paid_active_containers{{project_id=\"{project}\"}}");

        let a = runtime.create(&first).await.unwrap(); // cold: the pool starts filling now
        runtime.warm_up(&second, Duration::from_secs(60)).await.unwrap();
        let clone = runtime.clone(); // clones share the metrics
        let b = clone.create(&second).await.unwrap(); // from the pool
        let text = scrape(&metrics);
        assert_eq!(line(&text, &gauge), Some(format!("{gauge} 2").as_str()), "{text}");
        assert_eq!(line(&text, "paid_container_startup_seconds_count"), Some("paid_container_startup_seconds_count 2"));
        assert!(!text.contains("project_id=\"\""), "pooled sandboxes count only once claimed");

        runtime.remove(&a).await.unwrap();
        clone.remove(&b).await.unwrap();
        runtime.remove(&b).await.unwrap(); // again: counted down once
        let text = scrape(&metrics);
        assert_eq!(line(&text, &gauge), Some(format!("{gauge} 0").as_str()), "{text}");
        runtime.drain_pool().await;
    })
    .await;
}
