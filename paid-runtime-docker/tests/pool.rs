//! The warm pool against the real engine: a run gets a pre-created sandbox
//! with its worktree, hardened and labeled like a cold one; the worktree
//! comes back when the sandbox is removed; pooled sandboxes are never
//! reused; the pool refills, drains, and passes the conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::MountType;
use bollard::query_parameters::InspectContainerOptions;
use paid_core::testing::sandbox::{self as suite, sh};
use paid_core::{ExecExit, SandboxRuntime, SandboxSpec};
use paid_runtime_docker::{DockerConfig, DockerRuntime, EgressConfig, WarmPoolConfig};

use common::{image, managed_ids, runtime_with, unique_prefix, with_cleanup};

fn pooled(prefix: &str, root: &Path, per_image: usize) -> DockerConfig {
    DockerConfig {
        label_prefix: prefix.to_string(),
        warm_pool: WarmPoolConfig { per_image, root: Some(root.to_path_buf()), ..WarmPoolConfig::default() },
        ..DockerConfig::default()
    }
}

/// A worktree-like directory: files, a nested directory, a `.git` file.
fn worktree(dir: &Path) {
    std::fs::create_dir_all(dir.join("src/deep")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "pub fn answer() -> u32 { 42 }\n").unwrap();
    std::fs::write(dir.join("src/deep/data.txt"), "deep\n").unwrap();
    std::fs::write(dir.join(".git"), "gitdir: /nowhere/worktrees/run\n").unwrap();
}

async fn wait_ready(runtime: &DockerRuntime, want: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    while runtime.pool_status().first().is_none_or(|s| s.ready < want) {
        assert!(Instant::now() < until, "the pool did not refill: {:?}", runtime.pool_status());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_gets_a_ready_sandbox_with_its_worktree() {
    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("pool");
    let runtime = runtime_with(pooled(&prefix, &base.path().join("pool"), 2)).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let wt = base.path().join("worktrees/run-1");
        worktree(&wt);
        let mut spec = suite::spec(&image(), &wt);
        spec.env.insert("PAID_RUN_ID".into(), spec.run_id.to_string());
        runtime.warm_up(&spec, Duration::from_secs(60)).await.unwrap();
        let pool_before = managed_ids(&docker, &prefix).await;
        assert_eq!(pool_before.len(), 2, "two pooled sandboxes wait");

        let started = Instant::now();
        let sandbox = runtime.create(&spec).await.unwrap();
        let claimed = started.elapsed();
        let out =
            sh(&runtime, &sandbox, "cat src/lib.rs src/deep/data.txt; echo $PAID_RUN_ID $PAID_SUITE_SPEC; pwd").await;
        let ready = started.elapsed();
        eprintln!("claimed in {claimed:?}; first exec answered after {ready:?}");
        assert!(pool_before.contains(&sandbox.id), "the sandbox came from the pool");
        assert_eq!(out.exit, ExecExit::Code(0), "{}", out.stderr_text());
        assert_eq!(
            out.stdout_text(),
            format!("pub fn answer() -> u32 {{ 42 }}\ndeep\n{} from-spec\n/workspace\n", spec.run_id)
        );

        // On the host the worktree path leads to the same files (a link to
        // the slot while the sandbox runs), both ways.
        assert!(std::fs::symlink_metadata(&wt).unwrap().file_type().is_symlink());
        let out = sh(&runtime, &sandbox, "echo from-sandbox > src/new.txt && mkdir -p a/b && echo x > a/b/c").await;
        assert_eq!(out.exit, ExecExit::Code(0), "{}", out.stderr_text());
        assert_eq!(std::fs::read_to_string(wt.join("src/new.txt")).unwrap(), "from-sandbox\n");
        std::fs::write(wt.join("from-host.txt"), "host\n").unwrap();
        assert_eq!(sh(&runtime, &sandbox, "cat from-host.txt").await.stdout_text(), "host\n");

        // Hardened and labeled like a cold sandbox; the name carries the run.
        let inspect = docker.inspect_container(&sandbox.id, None::<InspectContainerOptions>).await.unwrap();
        let host = inspect.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!((host.readonly_rootfs, host.privileged, host.init), (Some(true), Some(false), Some(true)));
        assert_eq!((host.memory, host.memory_swap, host.pids_limit), (Some(512 << 20), Some(512 << 20), Some(256)));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        assert_eq!((mounts[0].typ, mounts[0].target.as_deref()), (Some(MountType::BIND), Some("/workspace")));
        let labels: HashMap<String, String> = inspect.config.unwrap().labels.unwrap();
        assert_eq!(labels[&format!("{prefix}.managed")], "true");
        assert_eq!(labels[&format!("{prefix}.role")], "sandbox");
        assert!(inspect.name.unwrap().starts_with(&format!("/{prefix}-{}-", spec.run_id)));
        let out = sh(&runtime, &sandbox, "id -u; grep CapEff /proc/self/status; echo x > /etc/probe").await;
        assert!(out.stdout_text().starts_with("1000\nCapEff:\t0000000000000000\n"), "{}", out.stdout_text());
        assert_ne!(out.exit, ExecExit::Code(0), "the root filesystem is read-only");

        // The engine finds it by run, with its project.
        let listed = runtime.list_managed().await.unwrap();
        assert_eq!(listed.len(), 1, "pool entries are not run sandboxes: {listed:?}");
        assert_eq!(listed[0].id, sandbox.id);
        assert_eq!(listed[0].run_id, Some(spec.run_id.to_string()));
        assert_eq!(listed[0].project_id, Some(spec.project_id.to_string()));

        // Removal gives the worktree its directory back, with the changes.
        runtime.remove(&sandbox).await.unwrap();
        assert!(std::fs::symlink_metadata(&wt).unwrap().is_dir());
        let mut names: Vec<String> =
            std::fs::read_dir(&wt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [".git", "a", "from-host.txt", "src"]);
        assert_eq!(std::fs::read_to_string(wt.join("a/b/c")).unwrap(), "x\n");
        assert!(!runtime.is_running(&sandbox).await.unwrap());

        // Never reused: the pool refills with new sandboxes.
        wait_ready(&runtime, 2).await;
        let pool_after = managed_ids(&docker, &prefix).await;
        assert_eq!(pool_after.len(), 2);
        assert!(!pool_after.contains(&sandbox.id), "a used sandbox never returns to the pool");
        let slots: Vec<_> = std::fs::read_dir(base.path().join("pool")).unwrap().collect();
        assert_eq!(slots.len(), 4, "two slots with their records");

        runtime.drain_pool().await;
        assert!(managed_ids(&docker, &prefix).await.is_empty(), "drain removes the pool");
        assert_eq!(std::fs::read_dir(base.path().join("pool")).unwrap().count(), 0, "and its slots");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_never_share_a_pooled_sandbox() {
    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("share");
    let runtime = runtime_with(pooled(&prefix, &base.path().join("pool"), 2)).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let (w1, w2) = (base.path().join("w/1"), base.path().join("w/2"));
        worktree(&w1);
        worktree(&w2);
        std::fs::write(w1.join("who"), "one\n").unwrap();
        std::fs::write(w2.join("who"), "two\n").unwrap();
        let (s1, s2) = (suite::spec(&image(), &w1), suite::spec(&image(), &w2));
        runtime.warm_up(&s1, Duration::from_secs(60)).await.unwrap();
        let (a, b) = tokio::join!(runtime.create(&s1), runtime.create(&s2));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.id, b.id);
        assert_eq!(sh(&runtime, &a, "cat who; ls ../").await.stdout_text().lines().next(), Some("one"));
        assert_eq!(sh(&runtime, &b, "cat who").await.stdout_text(), "two\n");
        // Neither sees the other's files, nor the pool's other slots.
        let out = sh(&runtime, &a, "ls / | grep -c slot; ls -a /workspace").await;
        assert!(!out.stdout_text().contains("two"), "{}", out.stdout_text());
        runtime.remove(&a).await.unwrap();
        runtime.remove(&b).await.unwrap();
        assert_eq!(std::fs::read_to_string(w1.join("who")).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(w2.join("who")).unwrap(), "two\n");
        runtime.drain_pool().await;
    })
    .await;
}

/// Pooled sandboxes on another filesystem than the worktree cannot take it
/// by rename: the claim falls back to a cold create, worktree untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_on_another_filesystem_falls_back_to_cold() {
    let shm = Path::new("/dev/shm");
    let tmp_dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(std::env::temp_dir()).unwrap());
    let shm_dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(shm).unwrap());
    assert_ne!(tmp_dev, shm_dev, "this test needs /dev/shm and the temp dir on different filesystems");
    let pool_root = tempfile::tempdir_in(shm).unwrap();
    let prefix = unique_prefix("xdev");
    let runtime = runtime_with(pooled(&prefix, pool_root.path(), 1)).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let wt = tempfile::tempdir().unwrap();
        worktree(wt.path());
        let spec = suite::spec(&image(), wt.path());
        runtime.warm_up(&spec, Duration::from_secs(60)).await.unwrap();
        let pooled_ids = managed_ids(&docker, &prefix).await;
        let sandbox = runtime.create(&spec).await.unwrap();
        assert!(!pooled_ids.contains(&sandbox.id), "created cold");
        assert!(std::fs::symlink_metadata(wt.path()).unwrap().is_dir(), "the worktree was not moved");
        assert_eq!(sh(&runtime, &sandbox, "cat src/deep/data.txt").await.stdout_text(), "deep\n");
        runtime.remove(&sandbox).await.unwrap();
        runtime.drain_pool().await;
        assert!(managed_ids(&docker, &prefix).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_suite_passes_on_a_pooled_runtime_with_egress() {
    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("poolconf");
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let config = DockerConfig {
        egress: Some(EgressConfig::proxy(listener.local_addr().unwrap().port())),
        ..pooled(&prefix, &base.path().join("pool"), 2)
    };
    let runtime = runtime_with(config).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let dir = base.path().join("worktrees");
        std::fs::create_dir_all(&dir).unwrap();
        let template = suite::spec(&image(), &dir);
        runtime.warm_up(&template, Duration::from_secs(60)).await.unwrap();
        suite::run_all(&runtime, &image(), &dir).await;
        // Every suite sandbox came and went; only the pool is left.
        let left = runtime.list_managed().await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        runtime.drain_pool().await;
        let left = managed_ids(&docker, &prefix).await;
        assert_eq!(left.len(), 1, "only the forwarder stays: {left:?}");
        let forwarder = docker.inspect_container(&left[0], None::<InspectContainerOptions>).await.unwrap();
        assert_eq!(forwarder.config.unwrap().labels.unwrap()[&format!("{prefix}.role")], "forwarder");
        assert_eq!(common::managed_volumes(&docker, &prefix).await.len(), 1, "the forwarder's socket volume");
    })
    .await;
}

/// A spec the pool does not serve (other limits) is created cold.
#[tokio::test(flavor = "multi_thread")]
async fn other_limits_are_created_cold() {
    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("limits");
    let runtime = runtime_with(pooled(&prefix, &base.path().join("pool"), 1)).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        let wt = base.path().join("w");
        worktree(&wt);
        let spec = suite::spec(&image(), &wt);
        runtime.warm_up(&spec, Duration::from_secs(60)).await.unwrap();
        let pooled_ids = managed_ids(&docker, &prefix).await;
        let other =
            SandboxSpec { limits: paid_core::ResourceLimits { pids: 77, ..spec.limits.clone() }, ..spec.clone() };
        let sandbox = runtime.create(&other).await.unwrap();
        assert!(!pooled_ids.contains(&sandbox.id));
        let inspect = docker.inspect_container(&sandbox.id, None::<InspectContainerOptions>).await.unwrap();
        assert_eq!(inspect.host_config.unwrap().pids_limit, Some(77));
        runtime.remove(&sandbox).await.unwrap();
        runtime.drain_pool().await;
    })
    .await;
}

/// Host-side git, as the Workspaces adapter does it with git2 (a bare
/// mirror with a linked worktree), keeps working on the worktree's path
/// while a pooled sandbox holds it, and after.
#[tokio::test(flavor = "multi_thread")]
async fn host_side_git_works_through_the_link() {
    use git2::{IndexAddOption, Repository, Signature, WorktreeAddOptions};

    let base = tempfile::tempdir().unwrap();
    let prefix = unique_prefix("git");
    let runtime = runtime_with(pooled(&prefix, &base.path().join("pool"), 1)).await;
    let docker = runtime.client().clone();
    with_cleanup(&docker, &prefix, async {
        // A mirror with one commit on `main`, and a worktree of it.
        let mirror = Repository::init_bare(base.path().join("mirror.git")).unwrap();
        let sig = Signature::now("paid", "paid@example.com").unwrap();
        let blob = mirror.blob(b"hello\n").unwrap();
        let mut tree = mirror.treebuilder(None).unwrap();
        tree.insert("README", blob, 0o100644).unwrap();
        let tree = mirror.find_tree(tree.write().unwrap()).unwrap();
        let commit = mirror.commit(Some("refs/heads/main"), &sig, &sig, "init", &tree, &[]).unwrap();
        let branch = mirror.branch("paid/1-x", &mirror.find_commit(commit).unwrap(), false).unwrap();
        let wt = base.path().join("worktrees/run-1");
        std::fs::create_dir_all(wt.parent().unwrap()).unwrap();
        let mut opts = WorktreeAddOptions::new();
        opts.reference(Some(branch.get()));
        mirror.worktree("run-1", &wt, Some(&opts)).unwrap();

        let spec = suite::spec(&image(), &wt);
        runtime.warm_up(&spec, Duration::from_secs(60)).await.unwrap();
        let pooled_ids = managed_ids(&docker, &prefix).await;
        let sandbox = runtime.create(&spec).await.unwrap();
        assert!(pooled_ids.contains(&sandbox.id));
        let out = sh(&runtime, &sandbox, "cat README && echo changed > README && echo new > NEW").await;
        assert_eq!(out.stdout_text(), "hello\n", "{}", out.stderr_text());

        // Commit on the host through the link, as Workspaces::commit_all does.
        {
            let repo = Repository::open(&wt).unwrap();
            assert!(repo.is_worktree());
            let mut index = repo.index().unwrap();
            index.add_all(["*"], IndexAddOption::DEFAULT, None).unwrap();
            index.write().unwrap();
            let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
            let parent = repo.head().unwrap().peel_to_commit().unwrap();
            repo.commit(Some("HEAD"), &sig, &sig, "agent work", &tree, &[&parent]).unwrap();
            assert!(repo.statuses(None).unwrap().is_empty(), "clean after the commit");
        }

        runtime.remove(&sandbox).await.unwrap();
        let repo = Repository::open(&wt).unwrap();
        assert!(repo.statuses(None).unwrap().is_empty(), "still clean with the directory back");
        let head = repo.head().unwrap();
        assert_eq!(head.name().unwrap(), "refs/heads/paid/1-x");
        assert_eq!(head.peel_to_commit().unwrap().message().unwrap(), "agent work");
        assert!(mirror.find_worktree("run-1").unwrap().validate().is_ok());
        runtime.drain_pool().await;
    })
    .await;
}
