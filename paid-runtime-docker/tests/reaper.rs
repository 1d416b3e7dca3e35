//! The reaper against the real engine: it removes a planted orphan, idle
//! and too old sandboxes, and an older version's sandbox network, reports
//! them, and leaves live sandboxes, busy sandboxes, unlabeled containers
//! and the egress forwarder in use alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
};
use futures::StreamExt;
use paid_core::testing::sandbox::{self as suite, sh};
use paid_core::{ExecRequest, Ids, RandomIds, SandboxRuntime};
use paid_runtime_docker::{DockerConfig, ReapPolicy, ReapReason, ReaperConfig};
use tokio_util::sync::CancellationToken;

use common::{image, runtime_with, unique_prefix, with_cleanup};

/// Everything is old enough to be looked at.
fn policy() -> ReapPolicy {
    ReapPolicy { grace: Duration::ZERO, ..ReapPolicy::from_config(&ReaperConfig::default()) }
}

async fn plant(docker: &bollard::Docker, name: &str, labels: HashMap<String, String>) -> String {
    let body = ContainerCreateBody {
        image: Some(image()),
        entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::new().name(name).build();
    let id = docker.create_container(Some(options), body).await.unwrap().id;
    docker.start_container(&id, None).await.unwrap();
    id
}

async fn exists(docker: &bollard::Docker, id: &str) -> bool {
    docker.inspect_container(id, None::<InspectContainerOptions>).await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reaper_removes_orphans_and_leaves_unlabeled_containers_alone() {
    let prefix = unique_prefix("reap");
    let runtime = runtime_with(DockerConfig { label_prefix: prefix.clone(), ..DockerConfig::default() }).await;
    let docker = runtime.client().clone();
    let unlabeled_name = format!("{prefix}-unlabeled-{}", RandomIds.hex(3));
    let mut unlabeled = None;
    with_cleanup(&docker, &prefix, async {
        // A live sandbox, through the runtime.
        let worktree = tempfile::tempdir().unwrap();
        let spec = suite::spec(&image(), worktree.path());
        let live = runtime.create(&spec).await.unwrap();
        // An orphan: labeled, for a run the store does not know.
        let unknown_run = uuid::Uuid::now_v7().to_string();
        let orphan = plant(
            &docker,
            &format!("{prefix}-{unknown_run}-abc123"),
            HashMap::from([
                (format!("{prefix}.managed"), "true".to_string()),
                (format!("{prefix}.run_id"), unknown_run.clone()),
                (format!("{prefix}.project_id"), uuid::Uuid::now_v7().to_string()),
            ]),
        )
        .await;
        // A container Paid does not manage (its name even looks like ours).
        let other = plant(&docker, &unlabeled_name, HashMap::new()).await;
        unlabeled = Some(other.clone());
        // A sandbox network an older version left behind.
        let dangling = format!("{prefix}-net-dangling");
        docker
            .create_network(NetworkCreateRequest {
                name: dangling.clone(),
                internal: Some(true),
                labels: Some(HashMap::from([
                    (format!("{prefix}.managed"), "true".to_string()),
                    (format!("{prefix}.role"), "sandbox-net".to_string()),
                ])),
                ..Default::default()
            })
            .await
            .unwrap();

        let report = runtime.reap_with(&policy().with_live_runs([spec.run_id])).await.unwrap();
        eprintln!("{report:#?}");
        assert_eq!(report.errors, Vec::<String>::new());
        assert_eq!(report.containers.len(), 1, "{report:?}");
        let reaped = &report.containers[0];
        assert_eq!((reaped.id.as_str(), reaped.reason), (orphan.as_str(), ReapReason::Orphan));
        assert_eq!(reaped.run_id.as_deref(), Some(unknown_run.as_str()));
        assert_eq!(reaped.name, format!("{prefix}-{unknown_run}-abc123"));
        assert_eq!(report.networks, vec![dangling]);

        assert!(!exists(&docker, &orphan).await, "the orphan is gone");
        assert!(exists(&docker, &other).await, "the unlabeled container is untouched");
        assert!(runtime.is_running(&live).await.unwrap(), "the live sandbox is untouched");

        // Without the live run in the set, the live sandbox is an orphan too.
        let report = runtime.reap_with(&policy().with_live_runs(Vec::<String>::new())).await.unwrap();
        assert_eq!(report.containers.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [live.id.as_str()]);
        assert!(exists(&docker, &other).await);
        assert!(runtime.reap_with(&policy()).await.unwrap().is_empty(), "nothing left to reap");
    })
    .await;
    // Our own cleanup of the unlabeled container, by id.
    if let Some(id) = unlabeled {
        docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_old_sandboxes_go_busy_ones_stay() {
    let prefix = unique_prefix("idle");
    let runtime = runtime_with(DockerConfig { label_prefix: prefix.clone(), ..DockerConfig::default() }).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let (w1, w2, w3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (s_idle, s_busy, s_new) =
            (suite::spec(&image(), w1.path()), suite::spec(&image(), w2.path()), suite::spec(&image(), w3.path()));
        let idle = runtime.create(&s_idle).await.unwrap();
        let busy = runtime.create(&s_busy).await.unwrap();
        sh(&runtime, &idle, "true").await;
        // A long exec keeps `busy` busy.
        let cancel = CancellationToken::new();
        let mut long =
            runtime.exec(&busy, ExecRequest::shell("echo go; sleep 600").with_cancel(cancel.clone())).await.unwrap();
        assert!(long.next().await.is_some());
        // not an assertion: lets idle time pass: docker's ages are whole seconds of the real clock, which cannot be paused
        tokio::time::sleep(Duration::from_millis(2100)).await;
        // Created after the others' last activity: idle for less than a second.
        let fresh = runtime.create(&s_new).await.unwrap();
        sh(&runtime, &fresh, "true").await;

        let live = [s_idle.run_id, s_busy.run_id, s_new.run_id];
        let quick = ReapPolicy { idle_after: Duration::from_secs(1), ..policy() }.with_live_runs(live);
        let report = runtime.reap_with(&quick).await.unwrap();
        eprintln!("{report:#?}");
        assert_eq!(report.errors, Vec::<String>::new());
        let reaped: Vec<(&str, ReapReason)> = report.containers.iter().map(|r| (r.id.as_str(), r.reason)).collect();
        assert_eq!(reaped, [(idle.id.as_str(), ReapReason::Idle)]);
        assert!(runtime.is_running(&busy).await.unwrap() && runtime.is_running(&fresh).await.unwrap());

        // Too old beats busy (ages are whole seconds).
        // not an assertion: lets a whole second pass (docker's ages are whole seconds of the real clock)
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let old = ReapPolicy { max_age: Duration::from_millis(1), ..policy() }.with_live_runs(live);
        let report = runtime.reap_with(&old).await.unwrap();
        let mut reaped: Vec<(&str, ReapReason)> = report.containers.iter().map(|r| (r.id.as_str(), r.reason)).collect();
        reaped.sort();
        let mut want = vec![(busy.id.as_str(), ReapReason::TooOld), (fresh.id.as_str(), ReapReason::TooOld)];
        want.sort();
        assert_eq!(reaped, want);
        cancel.cancel();
        while long.next().await.is_some() {}
    })
    .await;
}

/// A worker dies holding a pool and a claimed pooled sandbox. Another
/// runtime's reaper removes both, and the dead run's worktree gets its
/// directory back.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_crash_the_reaper_cleans_the_pool_and_restores_the_worktree() {
    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("crash");
    let config = DockerConfig {
        label_prefix: prefix.clone(),
        warm_pool: paid_runtime_docker::WarmPoolConfig {
            per_image: 1,
            root: Some(base.path().join("pool")),
            ..Default::default()
        },
        ..DockerConfig::default()
    };
    let dead = runtime_with(config.clone()).await;
    let docker = dead.client().clone();
    with_cleanup(&docker, &prefix, async {
        let wt = base.path().join("w/run");
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(wt.join("file"), "kept\n").unwrap();
        let spec = suite::spec(&image(), &wt);
        dead.warm_up(&spec, Duration::from_secs(60)).await.unwrap();
        let claimed = dead.create(&spec).await.unwrap();
        sh(&dead, &claimed, "echo more > more").await;
        dead.warm_up(&spec, Duration::from_secs(60)).await.unwrap();
        assert!(std::fs::symlink_metadata(&wt).unwrap().file_type().is_symlink());
        drop(dead); // no drain, no remove: the worker is gone

        let survivor = runtime_with(config).await;
        // not an assertion: lets a whole second pass (docker's ages are whole seconds of the real clock)
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let policy = ReapPolicy { idle_after: Duration::ZERO, ..policy() }.with_live_runs(Vec::<String>::new());
        let report = survivor.reap_with(&policy).await.unwrap();
        eprintln!("{report:#?}");
        assert_eq!(report.errors, Vec::<String>::new());
        let mut reasons: Vec<ReapReason> = report.containers.iter().map(|r| r.reason).collect();
        reasons.sort();
        assert_eq!(reasons, [ReapReason::Orphan, ReapReason::AbandonedPoolEntry]);
        let orphan = report.containers.iter().find(|r| r.reason == ReapReason::Orphan).unwrap();
        assert_eq!((orphan.id.as_str(), orphan.run_id.clone()), (claimed.id.as_str(), Some(spec.run_id.to_string())));

        assert!(std::fs::symlink_metadata(&wt).unwrap().is_dir(), "the worktree is a directory again");
        assert_eq!(std::fs::read_to_string(wt.join("file")).unwrap(), "kept\n");
        assert_eq!(std::fs::read_to_string(wt.join("more")).unwrap(), "more\n");
        assert_eq!(std::fs::read_dir(base.path().join("pool")).unwrap().count(), 0, "no slot left");
        assert!(common::managed_ids(&docker, &prefix).await.is_empty());
    })
    .await;
}

/// With a warm pool and egress on, a worker dies with a full pool; another
/// creates and removes sandboxes and keeps one run. The port's `reap`
/// removes what the dead worker left but the shared forwarder and its
/// socket volume, and keeps the kept run's sandbox and the live pool. A
/// `shutdown` while that sandbox runs keeps the forwarder and its volume;
/// after the run ends, `shutdown` leaves no container, volume or slot.
#[tokio::test(flavor = "multi_thread")]
async fn reap_and_shutdown_leave_nothing_behind_with_pool_and_egress() {
    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("sweep");
    let proxy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let config = DockerConfig {
        label_prefix: prefix.clone(),
        egress: Some(paid_runtime_docker::EgressConfig::proxy(proxy.local_addr().unwrap().port())),
        warm_pool: paid_runtime_docker::WarmPoolConfig {
            per_image: 1,
            root: Some(base.path().join("pool")),
            ..Default::default()
        },
        reaper: ReaperConfig { idle_after_secs: 2, ..ReaperConfig::default() },
        ..DockerConfig::default()
    };
    let dead = runtime_with(config.clone()).await;
    let docker = dead.client().clone();
    let sorted = async || {
        let mut ids = common::managed_ids(&docker, &prefix).await;
        ids.sort();
        ids
    };
    let volumes = async || common::managed_volumes(&docker, &prefix).await;
    with_cleanup(&docker, &prefix, async {
        let spec = |n: usize| {
            let worktree = base.path().join(format!("w/{n}"));
            std::fs::create_dir_all(&worktree).unwrap();
            suite::spec(&image(), &worktree)
        };
        // The dead worker: a pooled sandbox, and the forwarder it started.
        dead.warm_up(&spec(0), Duration::from_secs(60)).await.unwrap();
        let dead_left = std::time::Instant::now();
        drop(dead);
        let dead_containers = sorted().await;
        assert_eq!(dead_containers.len(), 2, "{dead_containers:?}");
        assert_eq!(volumes().await.len(), 1, "the forwarder's socket volume");

        // The live worker: three runs, two of them end.
        let live = runtime_with(config).await;
        let specs = [spec(1), spec(2), spec(3)];
        live.warm_up(&specs[0], Duration::from_secs(60)).await.unwrap();
        let mut sandboxes = Vec::new();
        for spec in &specs {
            sandboxes.push(live.create(spec).await.unwrap());
        }
        live.remove(&sandboxes[0]).await.unwrap();
        live.remove(&sandboxes[1]).await.unwrap();
        live.warm_up(&specs[0], Duration::from_secs(60)).await.unwrap();
        // Everything of the dead worker is older than `idle_after`; the
        // kept sandbox was just used.
        // not an assertion: lets the dead worker's things age past `idle_after` (docker's real clock; ages are whole seconds)
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(dead_left.elapsed())).await;
        sh(&live, &sandboxes[2], "true").await;

        let keep = [specs[2].run_id];
        let req = paid_core::ReapRequest { keep: &keep, min_age: Duration::ZERO, now: chrono::Utc::now() };
        let report = SandboxRuntime::reap(&live, &req).await.unwrap();
        eprintln!("{report:#?}");
        assert_eq!(report.errors, Vec::<String>::new());
        assert_eq!(report.sandboxes, Vec::<String>::new(), "the ended runs' sandboxes were removed already");
        let containers = sorted().await;
        let forwarder = dead_containers.iter().filter(|id| containers.contains(id)).count();
        assert_eq!(forwarder, 1, "of the dead worker's containers only the shared forwarder stays");
        assert!(live.is_running(&sandboxes[2]).await.unwrap(), "the kept run's sandbox stays");
        assert_eq!(live.pool_status()[0].ready, 1, "the live pool stays");
        assert_eq!(containers.len(), 3, "forwarder, kept sandbox, pooled sandbox: {containers:?}");
        assert_eq!(volumes().await.len(), 1, "the reaper leaves the forwarder's volume");

        // The kept sandbox still uses the forwarder: it stays, with its volume.
        let report = live.shutdown().await;
        assert_eq!(report.errors, Vec::<String>::new());
        let reasons: Vec<ReapReason> = report.containers.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, [ReapReason::Drained]);
        assert_eq!((sorted().await.len(), volumes().await.len()), (2, 1));
        assert!(live.is_running(&sandboxes[2]).await.unwrap());

        live.remove(&sandboxes[2]).await.unwrap();
        let report = live.shutdown().await;
        eprintln!("{report:#?}");
        assert_eq!(report.errors, Vec::<String>::new());
        let reasons: Vec<ReapReason> = report.containers.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, [ReapReason::UnusedForwarder]);
        assert_eq!(sorted().await, Vec::<String>::new(), "no managed container is left");
        assert_eq!(volumes().await, Vec::<String>::new(), "no volume is left");
        assert_eq!(std::fs::read_dir(base.path().join("pool")).unwrap().count(), 0, "no slot is left");
    })
    .await;
}
