//! Acceptance test of the reference deployment as a cluster: the real `paid
//! serve` and the real `paid-worker` (default `--backends real`), side by
//! side, on one `paid.toml` with a PostgreSQL store, real Docker sandboxes
//! with the warm pool and egress control on, real git (a local bare remote)
//! and the fake GitHub served from this process.
//!
//! Docker, the `paid/agent:bookworm` image (`scripts/build-images`) and
//! PostgreSQL (`PAID_TEST_DATABASE_URL`, else `scripts/provision-postgres`)
//! are required: this test fails, never skips, without them.
//!
//! Everything Docker-side is scoped to this test by a unique
//! `docker.label_prefix`, so tests running at the same time on the same
//! engine neither disturb nor are counted here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use paid_api::{ApiClient, RunSummary, RunsQuery};
use paid_core::RunState;
use paid_examples::demo::{DEMO_REPO, FIXER_SCRIPT, create_sample_remote_in};
use paid_github::fake::FakeGitHub;
use paid_store_postgres::{PgStore, PgStoreOptions, testing};
use serde_json::Value;

const API_TOKEN: &str = "cluster-api-token-0123456789abcdef";
const AUTHOR: &str = "trusted-dev";
const ISSUES: u64 = 20;
const SERVE_ID: &str = "cluster-serve";
const WORKER_ID: &str = "cluster-worker";
/// How long the 20 runs may take, all together.
const RUNS_LIMIT: Duration = Duration::from_secs(6 * 60);

/// A port for `docker.egress.proxy_port` where nothing listens (no provider,
/// no proxy): nothing binds it, so there is no race to lose.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `paid serve` or `paid-worker` process and its log (stderr).
struct Node {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
    /// Where `/health`, `/health/ready` and `/metrics` answer.
    health: String,
}

impl Node {
    /// Starts `command` with `--ready-file ready_file` and waits (at most
    /// 90 s) for the file: its listeners bind port 0.
    fn spawn(name: &'static str, mut command: Command, log: PathBuf, ready_file: PathBuf) -> Self {
        let stderr = std::fs::File::create(&log).unwrap();
        let _ = std::fs::remove_file(&ready_file);
        let child = command
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut node = Self { name, child: Some(child), log, health: String::new() };
        let deadline = Instant::now() + Duration::from_secs(90);
        let ready = loop {
            // Written by a rename: present means complete.
            if let Ok(ready) = paid_server::ready::Ready::read(&ready_file) {
                break ready;
            }
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{name} exited with {status} before it was ready\n{}", node.tail());
            }
            assert!(Instant::now() < deadline, "{name} wrote no ready file in 90 s\n{}", node.tail());
            // not an assertion: the poll interval of a deadline-bounded wait
            std::thread::sleep(Duration::from_millis(50));
        };
        let health = ready.health.unwrap_or_else(|| panic!("{name} serves no health: {ready:?}"));
        assert_ne!(health.port(), 0, "{ready:?}");
        node.health = format!("http://{health}");
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- {} (last 40 lines)\n{}", self.name, lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    /// Waits (at most 90 s) until `/health` answers 200.
    async fn wait_healthy(&mut self) {
        let http = paid_api::client::http_client().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited with {status} before serving /health (CI={:?})\n{}",
                    self.name,
                    std::env::var("CI").ok(),
                    self.tail()
                );
            }
            let r = http.get(format!("{}/health", self.health)).send().await;
            if r.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "{} did not answer /health in 90 s\n{}", self.name, self.tail());
            // not an assertion: the poll interval of a deadline-bounded wait
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET path` on the node's health listener: status and body.
    async fn get(&self, path: &str) -> (u16, String) {
        let http = paid_api::client::http_client().unwrap();
        let r = http.get(format!("{}{path}", self.health)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn sigterm(&self) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success(), "kill -TERM {pid}");
    }

    /// Waits (at most `limit`) for the exit after a signal.
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?} of SIGTERM\n{}",
                self.name,
                self.tail()
            );
            // not an assertion: the poll interval of a deadline-bounded wait
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the node's JSON log says it did: per message, the run ids of
    /// the `run` span the message was logged in.
    fn runs_logged(&self, message: &str) -> BTreeSet<String> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                // `paid serve` flattens the event's fields, `paid-worker` nests them.
                v.get("message").or_else(|| v.pointer("/fields/message")).and_then(Value::as_str) == Some(message)
            })
            .filter_map(|v| v.pointer("/span/run_id").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    fn count_logged(&self, message: &str) -> usize {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v.get("message").or_else(|| v.pointer("/fields/message")).and_then(Value::as_str) == Some(message)
            })
            .count()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Removes whatever carries this test's label prefix, last (after the
/// nodes are dead), whether the test passed or not.
struct DockerScope {
    prefix: String,
}

impl DockerScope {
    fn label(&self) -> String {
        format!("label={}.managed=true", self.prefix)
    }

    /// `docker ps -a` lines (`id name status labels`) of this test's containers.
    fn containers(&self) -> Vec<String> {
        let strict = !std::thread::panicking();
        let format = "{{.ID}} {{.Names}} {{.Status}}";
        let by_label = docker(&["ps", "-a", "--filter", &self.label(), "--format", format], strict);
        let by_name = docker(&["ps", "-a", "--filter", &format!("name={}-", self.prefix), "--format", format], strict);
        by_label.into_iter().chain(by_name).collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// `docker network ls` lines (`id name`) of this test's networks.
    fn networks(&self) -> Vec<String> {
        let strict = !std::thread::panicking();
        let format = "{{.ID}} {{.Name}}";
        let by_label = docker(&["network", "ls", "--filter", &self.label(), "--format", format], strict);
        let by_name =
            docker(&["network", "ls", "--filter", &format!("name={}-", self.prefix), "--format", format], strict);
        by_label.into_iter().chain(by_name).collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// `docker volume ls` names of this test's volumes (the egress
    /// forwarder's socket volume).
    fn volumes(&self) -> Vec<String> {
        let strict = !std::thread::panicking();
        docker(&["volume", "ls", "--filter", &self.label(), "--format", "{{.Name}}"], strict)
    }

    /// Each line with the labels of its container or network, for the
    /// failure message.
    fn describe(&self, lines: &[String], what: &str) -> String {
        let format = if what == "container" { "{{json .Config.Labels}}" } else { "{{json .Labels}}" };
        lines
            .iter()
            .map(|line| {
                let id = line.split_whitespace().next().unwrap_or_default();
                let labels = docker(&[what, "inspect", "--format", format, id], false);
                format!("{line} {}", labels.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for DockerScope {
    fn drop(&mut self) {
        let ids: Vec<String> =
            self.containers().iter().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).output();
        }
        let nets: Vec<String> =
            self.networks().iter().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect();
        if !nets.is_empty() {
            let _ = Command::new("docker").args(["network", "rm"]).args(&nets).output();
        }
        let volumes = self.volumes();
        if !volumes.is_empty() {
            let _ = Command::new("docker").args(["volume", "rm", "-f"]).args(&volumes).output();
        }
    }
}

/// The lines `docker ARGS` prints; with `strict`, a failure fails the test.
/// The test's directory (config, logs, data dirs, the bare remote), kept
/// when the test fails so the logs can be read.
struct Workdir(Option<tempfile::TempDir>);

impl Workdir {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("cluster_real: the configuration and both logs are kept in {}", dir.keep().display());
        }
    }
}

fn docker(args: &[&str], strict: bool) -> Vec<String> {
    match Command::new("docker").args(args).output() {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
        }
        Ok(out) if strict => panic!("docker {args:?}: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) if strict => panic!("docker {args:?}: {e}"),
        _ => Vec::new(),
    }
}

/// Docker must answer, and the sandbox image must be there: fail (never
/// skip) otherwise, saying what is missing.
fn require_docker(image: &str) {
    let ci = std::env::var("CI").ok();
    let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match info {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "Docker is required by this test and does not answer (CI={ci:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("Docker is required by this test; the docker CLI cannot run (CI={ci:?}): {e}"),
    }
    let image_ok = Command::new("docker").args(["image", "inspect", image]).output().is_ok_and(|o| o.status.success());
    assert!(image_ok, "the image {image} is missing (CI={ci:?}); build it with scripts/build-images");
}

/// Sums a counter family of a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Worktree directories left under a data dir (the warm pool's slot
/// directory is listed by what it still holds).
fn disk_leftovers(data_dir: &Path) -> Vec<PathBuf> {
    let worktrees = data_dir.join("workspaces").join("worktrees");
    let mut left = Vec::new();
    for entry in std::fs::read_dir(&worktrees).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default() {
        if entry.file_name() == ".paid-warm-pool" {
            left.extend(std::fs::read_dir(entry.path()).unwrap().flatten().map(|e| e.path()));
        } else {
            left.push(entry.path());
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_serve_and_a_paid_worker_share_twenty_issues_on_postgres_and_leave_no_sandbox_or_network_behind() {
    let started = Instant::now();
    let image = "paid/agent:bookworm";
    require_docker(image);
    testing::sweep_stale_schemas().await;
    let database_url = testing::database_url();
    let schema = testing::fresh_schema_name();

    // ---- the world: a bare remote, the fake forge with 20 labeled issues
    let dir = Workdir(Some(tempfile::Builder::new().prefix("cluster_real-").tempdir().unwrap()));
    let remote = create_sample_remote_in(dir.path()).unwrap();
    let github = FakeGitHub::start().await.unwrap();
    let (owner, name) = DEMO_REPO;
    for n in 1..=ISSUES {
        github.add_issue(
            owner,
            name,
            n,
            &format!("add() returns the wrong result (report {n})"),
            "Running `sh test.sh` fails: `add 2 3` prints -1 instead of 5. Please fix add() in calc.sh.",
            AUTHOR,
            &["paid-build"],
        );
    }
    let scope = DockerScope { prefix: format!("pc{}", &uuid::Uuid::now_v7().simple().to_string()[20..]) };
    std::fs::write(dir.path().join("api-token"), API_TOKEN).unwrap();
    paid_server::vault::write_new_key(&dir.path().join("master.key")).unwrap();

    // The agent refuses to work without the egress relay: every run's
    // success proves its sandbox (cold or pooled) had the proxy address.
    let agent = format!(
        "test -n \"$PAID_PROXY_URL\" || {{ echo \"no egress relay: PAID_PROXY_URL is unset\" >&2; exit 3; }}; {FIXER_SCRIPT}"
    );
    let config = format!(
        r#"
data_dir = "data-serve"
worker_id = "{SERVE_ID}"
concurrency = 2
shutdown_grace_secs = 60

[store]
url = "{database_url}"
schema = "{schema}"

[api]
bind = "127.0.0.1:0"
token_file = "api-token"

[keys]
master_key_file = "master.key"

[github]
api_url = "{github}"
token_env = "PAID_TEST_GITHUB_TOKEN"

[docker]
label_prefix = "{prefix}"

[docker.warm_pool]
per_image = 1

[docker.egress]
# Nothing listens there: no provider is configured, so no metering proxy
# runs; the scripted agent needs no network. The sandboxes still get the
# relay to the forwarder's socket, and the forwarder runs.
proxy_port = {proxy_port}

[engine]
max_iterations = 2

[reaper]
interval_secs = 5

[disk]
interval_secs = 5
warning_percent = 98
critical_percent = 99
emergency_percent = 100

[log]
format = "json"
level = "info"

[agents.cluster-agent]
script = '''{agent}'''

[[projects]]
repo = "{owner}/{name}"
clone_url = "{remote}"
allowed_authors = ["{AUTHOR}"]
verify = ["sh test.sh"]
image = "{image}"
agent = "cluster-agent"
max_concurrent_runs = 4
"#,
        github = github.base_url(),
        prefix = scope.prefix,
        proxy_port = free_port(),
        remote = remote.display(),
    );
    let config_file = dir.path().join("paid.toml");
    std::fs::write(&config_file, config).unwrap();

    let base = |program: &str| {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars() {
            if k.starts_with("PAID_") {
                c.env_remove(k);
            }
        }
        c.current_dir(dir.path()).env("PAID_TEST_GITHUB_TOKEN", "gh-test-token").env("RUST_LOG", "info,sqlx=warn");
        c
    };

    // ---- the worker first (it polls nothing, so it idles), then the server,
    // whose first poll, at start, queues the 20 runs.
    let mut worker_cmd = base(env!("CARGO_BIN_EXE_paid-worker"));
    worker_cmd
        .arg("--config")
        .arg(&config_file)
        .args(["--worker-id", WORKER_ID, "--health-addr", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        // A node of its own: mirrors, worktrees and pool slots are local
        // state (its locks are per process), so it gets its own data_dir.
        .env("PAID_DATA_DIR", dir.path().join("data-worker"));
    let mut worker =
        Node::spawn("paid-worker", worker_cmd, dir.path().join("worker.log"), dir.path().join("worker.ready.json"));
    worker.wait_healthy().await;

    let mut serve_cmd = base(env!("CARGO_BIN_EXE_paid"));
    serve_cmd.arg("--config").arg(&config_file).arg("serve");
    let mut serve =
        Node::spawn("paid serve", serve_cmd, dir.path().join("serve.log"), dir.path().join("serve.ready.json"));
    serve.wait_healthy().await;
    let logs = |serve: &Node, worker: &Node| format!("{}\n{}", serve.tail(), worker.tail());

    // Both are ready: store, Docker and forge reachable.
    for node in [&serve, &worker] {
        let (status, body) = node.get("/health/ready").await;
        assert_eq!(status, 200, "{} is not ready: {body}\n{}", node.name, node.tail());
    }
    let (status, body) = worker.get("/api/v1/runs").await;
    assert_eq!(status, 404, "the worker serves no API, yet /api/v1/runs answered {status}: {body}");

    // ---- wait (bounded) until the 20 runs have ended
    let api = ApiClient::new(&serve.health, Some(API_TOKEN.to_string().into())).unwrap();
    let deadline = Instant::now() + RUNS_LIMIT;
    let runs: Vec<RunSummary> = loop {
        let runs = api.runs(&RunsQuery::new().limit(1000)).await.unwrap().data;
        let ended = runs.iter().filter(|r| r.run.state.is_terminal()).count();
        if runs.len() >= ISSUES as usize && ended == runs.len() {
            break runs;
        }
        if let Some(bad) = runs.iter().find(|r| r.run.state.is_terminal() && r.run.state != RunState::Succeeded) {
            panic!(
                "run {} of issue #{} ended {}: {:?}\n{}",
                bad.run.id,
                bad.run.issue_number,
                bad.run.state,
                bad.run.failure,
                logs(&serve, &worker)
            );
        }
        for node in [&mut serve, &mut worker] {
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {status} while runs were open\n{}", node.name, node.tail());
            }
        }
        if Instant::now() > deadline {
            let states: BTreeMap<u64, String> =
                runs.iter().map(|r| (r.run.issue_number, r.run.state.to_string())).collect();
            panic!("after {RUNS_LIMIT:?}, {ended} of {} runs ended: {states:?}\n{}", runs.len(), logs(&serve, &worker));
        }
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let runs_took = started.elapsed();

    // ---- exactly one successful run per issue
    assert_eq!(runs.len(), ISSUES as usize, "{runs:#?}");
    let issues: BTreeSet<u64> = runs.iter().map(|r| r.run.issue_number).collect();
    assert_eq!(issues, (1..=ISSUES).collect::<BTreeSet<_>>(), "each issue exactly once");
    for r in &runs {
        assert_eq!(r.run.state, RunState::Succeeded, "issue #{}: {:?}", r.run.issue_number, r.run.failure);
        assert_eq!(r.repo, format!("{owner}/{name}"));
    }

    // ---- one PR per issue on the forge, each from its run's own branch
    let prs = github.pull_requests(owner, name);
    assert_eq!(prs.len(), ISSUES as usize, "{prs:#?}");
    let heads: BTreeSet<&str> = prs.iter().map(|p| p.head.as_str()).collect();
    assert_eq!(heads.len(), ISSUES as usize, "PR branches are not distinct: {heads:?}");
    for r in &runs {
        let n = r.run.issue_number;
        let url = r.run.pr_url.as_deref().unwrap_or_else(|| panic!("issue #{n}: no PR URL"));
        let pr =
            prs.iter().find(|p| p.html_url == url).unwrap_or_else(|| panic!("issue #{n}: {url} is not on the forge"));
        assert_eq!(Some(pr.head.as_str()), r.run.branch.as_deref(), "issue #{n}");
        assert!(pr.title.starts_with(&format!("Fix #{n}: ")), "issue #{n}: {}", pr.title);
        assert_eq!(pr.base, "main", "issue #{n}");
        let comments = github.comments(owner, name, n);
        assert_eq!(comments.len(), 1, "issue #{n}: {comments:?}");
        let labels = github.issue_labels(owner, name, n);
        assert!(labels.contains(&"paid-done".to_string()), "issue #{n}: {labels:?}");
    }

    // ---- both processes drove runs, none drove one twice
    let by_serve = serve.runs_logged("run ended");
    let by_worker = worker.runs_logged("run ended");
    let all: BTreeSet<String> = runs.iter().map(|r| r.run.id.to_string()).collect();
    assert!(
        by_serve.is_disjoint(&by_worker),
        "runs ended on both: {:?}",
        by_serve.intersection(&by_worker).collect::<Vec<_>>()
    );
    assert_eq!(
        by_serve.union(&by_worker).cloned().collect::<BTreeSet<_>>(),
        all,
        "every run ended on exactly one node"
    );
    assert!(
        !by_serve.is_empty() && !by_worker.is_empty(),
        "both processes must drive runs: paid serve ended {}, paid-worker ended {}\n{}",
        by_serve.len(),
        by_worker.len(),
        logs(&serve, &worker)
    );
    // The same split, from each process's own /metrics.
    let mut prs_by_node = Vec::new();
    for (node, ended) in [(&serve, &by_serve), (&worker, &by_worker)] {
        let (status, text) = node.get("/metrics").await;
        assert_eq!(status, 200, "{} /metrics: {text}", node.name);
        let created = metric_sum(&text, "paid_prs_created_total");
        assert_eq!(created, ended.len() as f64, "{}: PRs counted vs runs ended\n{text}", node.name);
        prs_by_node.push(created);
    }
    // The warm pool and egress were on in both.
    let pooled = [&serve, &worker].map(|n| n.count_logged("sandbox claimed from the warm pool"));
    let cold = [&serve, &worker].map(|n| n.count_logged("sandbox started (cold)"));
    assert_eq!(pooled.iter().sum::<usize>() + cold.iter().sum::<usize>(), ISSUES as usize, "one sandbox per run");
    assert!(pooled.iter().sum::<usize>() > 0, "no run got a pooled sandbox: pooled {pooled:?}, cold {cold:?}");
    let forwarders = [&serve, &worker].map(|n| n.count_logged("egress forwarder started"));
    assert!(forwarders.iter().sum::<usize>() >= 1, "no egress forwarder was started");

    // ---- SIGTERM both at once: clean exits, nothing left behind
    serve.sigterm();
    worker.sigterm();
    for node in [&mut serve, &mut worker] {
        let status = node.wait_exit(Duration::from_secs(120)).await;
        assert!(status.success(), "{} exited with {status} after SIGTERM\n{}", node.name, node.tail());
    }
    let containers = scope.containers();
    let networks = scope.networks();
    let volumes = scope.volumes();
    assert!(
        containers.is_empty() && networks.is_empty() && volumes.is_empty(),
        "left behind after both nodes stopped:\ncontainers:\n{}\nnetworks:\n{}\nvolumes: {volumes:?}\n{}",
        scope.describe(&containers, "container"),
        scope.describe(&networks, "network"),
        logs(&serve, &worker)
    );
    for data in ["data-serve", "data-worker"] {
        let left = disk_leftovers(&dir.path().join(data));
        assert!(left.is_empty(), "{data}: worktrees or pool slots left: {left:?}");
    }

    eprintln!(
        "cluster_real: 20 runs in {runs_took:?} (paid serve {}, paid-worker {}; PRs counted {prs_by_node:?}; \
         pooled sandboxes {pooled:?}, cold {cold:?}); total {:?}",
        by_serve.len(),
        by_worker.len(),
        started.elapsed()
    );
    let store =
        PgStore::connect_with(PgStoreOptions::new(database_url).schema(&schema).max_connections(1)).await.unwrap();
    store.drop_schema().await.unwrap();
}
