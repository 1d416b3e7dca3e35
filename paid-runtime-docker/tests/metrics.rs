//! `paid_active_containers{project_id}` and `paid_container_startup_seconds`
//! as a Prometheus scrape shows them, for cold and pooled sandboxes: each
//! recorded once per sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use paid_core::SandboxRuntime;
use paid_core::metrics::Metrics;
use paid_core::testing::sandbox as suite;
use paid_runtime_docker::{DockerConfig, ReapPolicy, WarmPoolConfig};
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

/// The gauge's value for `project`, and the histogram's count.
fn counts(metrics: &Metrics, project: &str) -> (String, String) {
    let text = scrape(metrics);
    let gauge = format!("paid_active_containers{{project_id=\"{project}\"}}");
    let value = |start: &str| line(&text, start).map(|l| l[start.len()..].trim().to_string()).unwrap_or_default();
    (value(&gauge), value("paid_container_startup_seconds_count"))
}

/// Each create moves the gauge up once and the histogram's count by one;
/// each sandbox moves the gauge down once, however many remove it, and
/// also when it vanished behind the runtime's back (counted down by the
/// next reap). Pooled sandboxes count only once claimed.
#[tokio::test(flavor = "multi_thread")]
async fn each_sandbox_moves_the_gauge_up_and_down_once_and_the_histogram_once() {
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
        let worktrees: Vec<_> = (0..3).map(|i| base.path().join(format!("w{i}"))).collect();
        worktrees.iter().for_each(|w| std::fs::create_dir_all(w).unwrap());
        let first = suite::spec(&image(), &worktrees[0]);
        let spec =
            |i: usize| paid_core::SandboxSpec { project_id: first.project_id, ..suite::spec(&image(), &worktrees[i]) };
        let project = first.project_id.to_string();
        let at = |gauge: &str, count: &str| (gauge.to_string(), count.to_string());

        let a = runtime.create(&first).await.unwrap(); // cold: the pool starts filling now
        assert_eq!(counts(&metrics, &project), at("1", "1"));
        runtime.warm_up(&spec(1), Duration::from_secs(60)).await.unwrap();
        assert_eq!(counts(&metrics, &project), at("1", "1"), "a ready pooled sandbox is not counted");
        assert!(!scrape(&metrics).contains("project_id=\"\""), "{}", scrape(&metrics));
        let clone = runtime.clone(); // clones share the metrics
        let b = clone.create(&spec(1)).await.unwrap(); // from the pool
        assert_eq!(counts(&metrics, &project), at("2", "2"));

        runtime.remove(&a).await.unwrap();
        assert_eq!(counts(&metrics, &project), at("1", "2"));
        let (r1, r2) = tokio::join!(runtime.remove(&b), clone.remove(&b)); // at once: counted down once
        r1.unwrap();
        r2.unwrap();
        runtime.remove(&b).await.unwrap(); // and again
        assert_eq!(counts(&metrics, &project), at("0", "2"));

        // Removed behind the runtime's back: the next reap counts it down.
        let c = runtime.create(&spec(2)).await.unwrap();
        assert_eq!(counts(&metrics, &project), at("1", "3"));
        let options = bollard::query_parameters::RemoveContainerOptionsBuilder::new().force(true).build();
        docker.remove_container(&c.id, Some(options)).await.unwrap();
        runtime.reap_with(&ReapPolicy::default()).await.unwrap();
        assert_eq!(counts(&metrics, &project), at("0", "3"));
        runtime.drain_pool().await;
    })
    .await;
}
