//! "Sandbox ready" latency: from asking for a sandbox until it runs with
//! the worktree mounted and its first exec has answered. p50 and p95 over
//! `PAID_BENCH_SAMPLES` sandboxes (default 30) per case, all cases in one
//! run, interleaved round by round so drift hits them alike:
//!
//! - `bare docker run true`: the reference, create + start + wait for exit
//!   of the image running `true`, through the API (and, for comparison, the
//!   `docker run --rm <image> true` CLI);
//! - `cold`: `DockerRuntime::create` of a hardened sandbox, then `true`;
//!   once without and once with egress control (no network, a relay to the proxy);
//! - `warm`: the same from the warm pool (with egress), the pool refilled
//!   between samples (not timed);
//! - `naive`: what the original Paid does, `docker run` of the same image
//!   and `git clone` of the repository inside it, until the clone answers.
//!
//! The repository has `PAID_BENCH_FILES` files (default 3000, about 2 KiB
//! each). Worktrees for the cold and warm cases are checked out before the
//! clock starts (the engine creates them before asking for a sandbox); the
//! naive case clones from a bare repository bind-mounted read-only.
//!
//! ```text
//! cargo bench -p paid-benches --bench sandbox_ready
//! ```
//!
//! Needs the Docker engine and `paid/agent:bookworm` (scripts/build-images).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark binary: fail loudly")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use paid_core::{ExecEvent, ExecExit, ExecRequest, Ids, RandomIds, SandboxRuntime, SandboxSpec};
use paid_runtime_docker::{DockerConfig, DockerRuntime, EgressConfig, WarmPoolConfig};

const IMAGE: &str = "paid/agent:bookworm";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} in {}", dir.display());
}

/// A repository of `files` files (about 2 KiB each) in 60 directories, and
/// a bare clone of it.
fn make_repo(base: &Path, files: usize) -> (PathBuf, PathBuf) {
    let repo = base.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    for i in 0..files {
        let dir = repo.join(format!("src/module_{:02}", i % 60));
        std::fs::create_dir_all(&dir).unwrap();
        let body: String = (0..40).map(|line| format!("pub const ITEM_{i}_{line}: usize = {};\n", i * line)).collect();
        std::fs::write(dir.join(format!("file_{i:05}.rs")), body).unwrap();
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "bench repository"]);
    let bare = base.join("repo.git");
    git(base, &["clone", "-q", "--bare", repo.to_str().unwrap(), bare.to_str().unwrap()]);
    (repo, bare)
}

/// A fresh worktree of `repo` under `dir` (not timed).
fn checkout(repo: &Path, dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("wt-{n:03}"));
    git(repo, &["worktree", "add", "-q", "--detach", path.to_str().unwrap()]);
    path
}

fn spec(worktree: &Path) -> SandboxSpec {
    SandboxSpec {
        run_id: paid_core::RunId(uuid::Uuid::now_v7()),
        project_id: paid_core::ProjectId(uuid::Uuid::now_v7()),
        image: IMAGE.to_string(),
        worktree: worktree.to_path_buf(),
        mount_at: SandboxSpec::DEFAULT_MOUNT.to_string(),
        env: Default::default(),
        limits: Default::default(),
    }
}

/// Runs `cmd` in the sandbox and waits for its exit code.
async fn exec(runtime: &DockerRuntime, sandbox: &paid_core::SandboxHandle, cmd: &str) -> ExecExit {
    let mut events = runtime.exec(sandbox, ExecRequest::shell(cmd)).await.unwrap();
    let mut exit = None;
    while let Some(event) = events.next().await {
        if let ExecEvent::Exit(e) = event.unwrap() {
            exit = Some(e);
        }
    }
    exit.unwrap()
}

/// Create, start, ready: a sandbox from `runtime` with its first exec.
async fn sandbox_ready(runtime: &DockerRuntime, worktree: &Path) -> Duration {
    let spec = spec(worktree);
    let started = Instant::now();
    let sandbox = runtime.create(&spec).await.unwrap();
    assert_eq!(exec(runtime, &sandbox, "true").await, ExecExit::Code(0));
    let took = started.elapsed();
    runtime.remove(&sandbox).await.unwrap();
    took
}

/// A plain container (what `docker run` makes), labeled for cleanup.
async fn run_plain(docker: &Docker, label: &str, cmd: &[&str], mounts: Vec<Mount>) -> String {
    let body = ContainerCreateBody {
        image: Some(IMAGE.to_string()),
        entrypoint: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: Some(HashMap::from([(label.to_string(), "true".to_string())])),
        host_config: Some(HostConfig { mounts: Some(mounts), ..Default::default() }),
        ..Default::default()
    };
    let name = format!("paid-bench-{}", RandomIds.hex(4));
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = docker.create_container(Some(options), body).await.unwrap().id;
    docker.start_container(&id, None).await.unwrap();
    id
}

async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    let _ = docker.remove_container(id, Some(options)).await;
}

/// `docker run <image> true` through the API: create, start, wait.
async fn bare_run(docker: &Docker, label: &str) -> Duration {
    let started = Instant::now();
    let id = run_plain(docker, label, &["true"], Vec::new()).await;
    let options = WaitContainerOptionsBuilder::new().condition("not-running").build();
    let mut wait = docker.wait_container(&id, Some(options));
    while let Some(status) = wait.next().await {
        status.unwrap();
    }
    let took = started.elapsed();
    remove(docker, &id).await;
    took
}

/// `docker run --rm <image> true`, the CLI.
fn bare_cli() -> Duration {
    let started = Instant::now();
    let status = Command::new("docker").args(["run", "--rm", IMAGE, "true"]).status().unwrap();
    assert!(status.success());
    started.elapsed()
}

/// The original Paid: `docker run` the image, then `git clone` inside.
async fn naive(docker: &Docker, label: &str, bare: &Path) -> Duration {
    let mount = Mount {
        typ: Some(MountType::BIND),
        source: Some(bare.to_string_lossy().into_owned()),
        target: Some("/src/repo.git".to_string()),
        read_only: Some(true),
        ..Default::default()
    };
    let started = Instant::now();
    let id = run_plain(docker, label, &["sleep", "infinity"], vec![mount]).await;
    let exec = docker
        .create_exec(
            &id,
            bollard::exec::CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                // The pack protocol, as over the network; the bind-mounted
                // repository belongs to another uid than the container's.
                cmd: Some(vec![
                    "sh",
                    "-c",
                    "git config --global --add safe.directory '*' && git clone -q file:///src/repo.git /tmp/work",
                ]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut said = String::new();
    if let bollard::exec::StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    {
        while let Some(chunk) = output.next().await {
            said.push_str(&chunk.unwrap().to_string());
        }
    }
    let took = started.elapsed();
    let inspect = docker.inspect_exec(&exec.id).await.unwrap();
    assert_eq!(inspect.exit_code, Some(0), "git clone failed in the naive baseline: {said}");
    remove(docker, &id).await;
    took
}

/// Nearest-rank percentile.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

struct Stats {
    name: &'static str,
    p50: Duration,
    p95: Duration,
    mean: Duration,
    n: usize,
}

fn stats(name: &'static str, mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    Stats { name, p50: percentile(&samples, 50.0), p95: percentile(&samples, 95.0), mean, n: samples.len() }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn cleanup_prefix(docker: &Docker, prefix: &str) {
    let filters = HashMap::from([("label", vec![format!("{prefix}.managed=true")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
        remove(docker, &c.id.unwrap_or_default()).await;
    }
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    for n in docker.list_networks(Some(options)).await.unwrap_or_default() {
        let _ = docker.remove_network(&n.id.unwrap_or_default()).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    use futures::FutureExt;
    // `cargo bench` passes `--bench`; nothing else is understood.
    let prefix = format!("paidbench{}", RandomIds.hex(3));
    let docker = Docker::connect_with_local_defaults().expect("the Docker engine is required");
    let outcome = std::panic::AssertUnwindSafe(bench(&prefix)).catch_unwind().await;
    // Whatever happened: remove what this run created, by its labels only.
    cleanup_prefix(&docker, &prefix).await;
    let filters = HashMap::from([("label", vec![format!("{prefix}.plain=true")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
        remove(&docker, &c.id.unwrap_or_default()).await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn bench(prefix: &str) {
    let prefix = prefix.to_string();
    let samples = env_usize("PAID_BENCH_SAMPLES", 30);
    let files = env_usize("PAID_BENCH_FILES", 3000);
    let base = tempfile::tempdir().unwrap();
    let (repo, bare) = make_repo(base.path(), files);
    let worktrees = base.path().join("worktrees");
    std::fs::create_dir_all(&worktrees).unwrap();

    // The stand-in proxy the forwarder relays to (never called here).
    let proxy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let label = format!("{prefix}.plain");
    let cold = DockerRuntime::connect(DockerConfig { label_prefix: prefix.clone(), ..DockerConfig::default() })
        .await
        .expect("the Docker engine is required");
    cold.ensure_image(IMAGE).await.expect("build the image with scripts/build-images");
    let egress = DockerConfig {
        label_prefix: prefix.clone(),
        egress: Some(EgressConfig::proxy(proxy_port)),
        ..DockerConfig::default()
    };
    let cold_egress = DockerRuntime::connect(egress.clone()).await.unwrap();
    let warm = DockerRuntime::connect(DockerConfig {
        warm_pool: WarmPoolConfig { per_image: 2, root: Some(base.path().join("pool")), ..Default::default() },
        ..egress
    })
    .await
    .unwrap();
    let docker = cold.client().clone();
    let warm = Arc::new(warm);

    // Warm-up: the forwarder, the pool, the image's pages in the cache.
    let n = std::sync::atomic::AtomicUsize::new(0);
    let next = || n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    sandbox_ready(&cold_egress, &checkout(&repo, &worktrees, next())).await;
    bare_run(&docker, &label).await;
    naive(&docker, &label, &bare).await;
    warm.warm_up(&spec(&worktrees), Duration::from_secs(120)).await.unwrap();

    let mut results: HashMap<&'static str, Vec<Duration>> = HashMap::new();
    eprintln!("sandbox ready: {samples} samples per case, {files} files in the repository");
    for round in 0..samples {
        results.entry("bare docker run true (API)").or_default().push(bare_run(&docker, &label).await);
        results.entry("bare docker run --rm true (CLI)").or_default().push(bare_cli());
        let wt = checkout(&repo, &worktrees, next());
        results.entry("cold").or_default().push(sandbox_ready(&cold, &wt).await);
        let wt = checkout(&repo, &worktrees, next());
        results.entry("cold + egress").or_default().push(sandbox_ready(&cold_egress, &wt).await);
        let wt = checkout(&repo, &worktrees, next());
        warm.warm_up(&spec(&wt), Duration::from_secs(120)).await.unwrap();
        results.entry("warm pool + egress").or_default().push(sandbox_ready(&warm, &wt).await);
        results.entry("naive: docker run + git clone").or_default().push(naive(&docker, &label, &bare).await);
        if (round + 1) % 10 == 0 {
            eprintln!("  {} rounds done", round + 1);
        }
    }
    warm.drain_pool().await;

    let order = [
        "bare docker run true (API)",
        "bare docker run --rm true (CLI)",
        "cold",
        "cold + egress",
        "warm pool + egress",
        "naive: docker run + git clone",
    ];
    let table: Vec<Stats> = order.iter().map(|name| stats(name, results.remove(name).unwrap_or_default())).collect();
    println!("\n{:<34} {:>4} {:>10} {:>10} {:>10}", "case", "n", "p50 ms", "p95 ms", "mean ms");
    for s in &table {
        println!("{:<34} {:>4} {:>10.1} {:>10.1} {:>10.1}", s.name, s.n, ms(s.p50), ms(s.p95), ms(s.mean));
    }
    let get = |name: &str| table.iter().find(|s| s.name == name).unwrap();
    let (bare, cli, cold, cold_eg, warm, naive) =
        (get(order[0]), get(order[1]), get(order[2]), get(order[3]), get(order[4]), get(order[5]));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("\nratios (p50 / p95):");
    for (what, a, b) in [
        ("cold / bare run (API)", cold, bare),
        ("cold + egress / bare run (API)", cold_eg, bare),
        ("cold / bare run (CLI)", cold, cli),
        ("cold + egress / bare run (CLI)", cold_eg, cli),
        ("naive / cold + egress", naive, cold_eg),
        ("naive / warm", naive, warm),
        ("cold + egress / warm", cold_eg, warm),
    ] {
        println!("  {what:<32} {:>6.2}x / {:>6.2}x", ratio(a.p50, b.p50), ratio(a.p95, b.p95));
    }
    println!(
        "\ntargets: warm p95 {:.1} ms (< 300 ms: {}); cold+egress p50 {:.2}x bare API (<= 1.2x: {}); \
         naive >= 3x cold+egress: {}; naive >= 3x warm: {}",
        ms(warm.p95),
        warm.p95 < Duration::from_millis(300),
        ratio(cold_eg.p50, bare.p50),
        ratio(cold_eg.p50, bare.p50) <= 1.2,
        ratio(naive.p50, cold_eg.p50) >= 3.0,
        ratio(naive.p50, warm.p50) >= 3.0,
    );
}
