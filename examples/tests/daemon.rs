//! Acceptance tests of `paid serve` and the CLI: the real binary, the fake
//! GitHub server (started here), a bare git repository as the remote, real
//! Docker sandboxes and SQLite. Docker, the `paid/agent:bookworm` image
//! (`scripts/build-images`) and promtool (`scripts/provision-promtool`) are
//! required: these tests fail, never skip, without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use paid_examples::demo::{DEMO_REPO, FIXER_SCRIPT, create_sample_remote_in};
use paid_github::fake::FakeGitHub;
use serde_json::Value;

const API_TOKEN: &str = "test-api-token-0123456789abcdef";
const ISSUE_AUTHOR: &str = "demo-user";

/// Listeners bind port 0: `paid serve --ready-file` says where they are.
const ANY_PORT: &str = "127.0.0.1:0";

/// The metering proxy on port 0, with one provider.
const PROXY_ON_ANY_PORT: &str = "[proxy]\nbind = \"127.0.0.1:0\"\n\n[providers.anthropic]\nbase_url = \"http://127.0.0.1:9\"\nkey_env = \"PAID_TEST_ANTHROPIC_KEY\"\n";

/// Whether a process of container `id` runs a command line containing
/// `command` (`docker top`).
fn container_runs(id: &str, command: &str) -> bool {
    Command::new("docker")
        .args(["top", id])
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains(command))
}

fn rand_hex() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_string()
}

/// One daemon's world: a directory with paid.toml, the fake forge, the
/// bare remote.
struct World {
    dir: tempfile::TempDir,
    github: FakeGitHub,
    remote: PathBuf,
    /// The running (or last) daemon's ready file: its bound addresses.
    ready: Option<paid_server::ready::Ready>,
    label_prefix: String,
    daemon: Option<Child>,
}

struct Setup<'a> {
    agent_script: &'a str,
    extra: &'a str,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self { agent_script: FIXER_SCRIPT, extra: "" }
    }
}

impl World {
    async fn new(setup: Setup<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let remote = create_sample_remote_in(dir.path()).unwrap();
        let github = FakeGitHub::start().await.unwrap();
        github.add_issue(
            DEMO_REPO.0,
            DEMO_REPO.1,
            1,
            "add() returns the wrong result",
            "Running `sh test.sh` fails: `add 2 3` prints -1 instead of 5. Please fix add() in calc.sh.",
            ISSUE_AUTHOR,
            &["paid-build"],
        );
        let label_prefix = format!("pt{}", rand_hex());
        std::fs::write(dir.path().join("api-token"), API_TOKEN).unwrap();
        paid_server::vault::write_new_key(&dir.path().join("master.key")).unwrap();
        let world = Self { dir, github, remote, ready: None, label_prefix, daemon: None };
        world.write_config("paid.toml", &setup, "master.key");
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, name: &str, setup: &Setup<'_>, key_file: &str) {
        let text = format!(
            r#"
data_dir = "data"
worker_id = "test-worker"
concurrency = 1
shutdown_grace_secs = 60

[store]
url = "data/paid.db"

[api]
bind = "{port}"
token_file = "api-token"
max_body_bytes = 4096

[keys]
master_key_file = "{key_file}"

[github]
api_url = "{github}"
token_env = "PAID_TEST_GITHUB_TOKEN"

[docker]
label_prefix = "{prefix}"

[engine]
lease_secs = 10
heartbeat_ms = 200

[reaper]
interval_secs = 2

[disk]
interval_secs = 1
warning_percent = 98
critical_percent = 99
emergency_percent = 100

[log]
format = "json"
level = "info,paid_core=debug"

[agents.test-agent]
script = '''{script}'''

[[projects]]
repo = "{owner}/{name}"
clone_url = "{remote}"
allowed_authors = ["{author}"]
verify = ["sh test.sh"]
agent = "test-agent"

{extra}
"#,
            port = ANY_PORT,
            github = self.github.base_url(),
            prefix = self.label_prefix,
            script = setup.agent_script,
            owner = DEMO_REPO.0,
            name = DEMO_REPO.1,
            remote = self.remote.display(),
            author = ISSUE_AUTHOR,
            extra = setup.extra,
        );
        std::fs::write(self.path(name), text).unwrap();
    }

    /// The running daemon's bound addresses.
    fn ready(&self) -> &paid_server::ready::Ready {
        self.ready.as_ref().expect("a started daemon")
    }

    fn api(&self) -> String {
        format!("http://{}", self.ready().api.expect("paid serve serves the API"))
    }

    /// The metering proxy's bound address.
    fn proxy_addr(&self) -> std::net::SocketAddr {
        self.ready().proxy.expect("the proxy is configured")
    }

    /// `name` with the port-0 listeners of `from` pinned to where the
    /// running daemon bound them (for `paid doctor`, which reads them).
    fn pin_config(&self, from: &str, name: &str) {
        let any = format!("bind = \"{ANY_PORT}\"");
        let mut text = std::fs::read_to_string(self.path(from)).unwrap();
        text = text.replacen(&any, &format!("bind = \"{}\"", self.ready().api.unwrap()), 1);
        if let Some(proxy) = self.ready().proxy {
            text = text.replacen(&any, &format!("bind = \"{proxy}\""), 1);
        }
        assert!(!text.contains(&any), "{text}");
        std::fs::write(self.path(name), text).unwrap();
    }

    fn command(&self, config: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_paid"));
        for (k, _) in std::env::vars() {
            if k.starts_with("PAID_") {
                c.env_remove(k);
            }
        }
        c.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.path(config))
            .env("PAID_TEST_GITHUB_TOKEN", "gh-test-token")
            .env("PAID_TEST_ANTHROPIC_KEY", "sk-ant-test-key")
            .env("PAID_POLL_INTERVAL_MS", "300");
        // The CLI finds the daemon from its ready file, not api.bind (port 0).
        if let Some(api) = self.ready.as_ref().and_then(|r| r.api) {
            c.env("PAID_API_URL", format!("http://{api}"));
        }
        c
    }

    /// Runs a CLI command against paid.toml.
    fn paid(&self, args: &[&str]) -> Output {
        self.command("paid.toml").args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs a CLI command with `--json` and parses its output.
    fn paid_json(&self, args: &[&str]) -> (bool, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.paid(&all);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "paid {args:?}: stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// Starts `paid serve` with `config` and waits until /health answers.
    async fn start(&mut self, config: &str) {
        let command = self.command(config);
        self.start_command(command).await;
    }

    /// Starts `paid serve` from `command` (see [`World::command`]), waits
    /// for its ready file, then until /health answers.
    async fn start_command(&mut self, mut command: Command) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path("daemon.log")).unwrap();
        let ready_file = self.path("ready.json");
        // A previous daemon's file says nothing about this one.
        let _ = std::fs::remove_file(&ready_file);
        self.ready = None;
        let child = command
            .arg("serve")
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let log_path = self.path("daemon.log");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let ready = wait_ready(&ready_file, self.daemon.as_mut().unwrap(), log);
        assert_ne!(ready.api.map(|a| a.port()), Some(0), "{ready:?}");
        self.ready = Some(ready);
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("paid serve exited with {status} (CI={:?}); log:\n{}", std::env::var("CI").ok(), self.log());
            }
            if http.get(format!("{}/health", self.api())).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "paid serve did not answer /health in 60 s; log:\n{}", self.log());
            // not an assertion: the poll interval of a deadline-bounded wait
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then waits for the exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.daemon.take().expect("a running daemon");
        let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "paid serve did not stop after SIGTERM; log:\n{}", self.log());
            // not an assertion: the poll interval of a deadline-bounded wait
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = client().get(format!("{}{path}", self.api())).bearer_auth(API_TOKEN).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Waits until `f` of the run list holds, returning the list.
    async fn wait_runs(&self, what: &str, timeout: Duration, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get("/api/v1/runs").await;
            let runs = v["data"].as_array().cloned().unwrap_or_default();
            if f(&runs) {
                return runs;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; runs: {runs:#?}\nlog:\n{}", self.log());
            // not an assertion: the poll interval of a deadline-bounded wait
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn sandboxes(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label={}.managed=true", self.label_prefix)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// Managed volumes: the egress forwarder's socket volume.
    fn volumes(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["volume", "ls", "-q", "--filter", &format!("label={}.managed=true", self.label_prefix)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    fn worktrees(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path("data/workspaces/worktrees"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let ids = self.sandboxes();
        if !ids.is_empty() {
            let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
        }
        // The egress forwarder's socket volume a killed daemon left behind.
        let volumes = self.volumes();
        if !volumes.is_empty() {
            let _ = Command::new("docker").args(["volume", "rm", "-f"]).args(&volumes).output();
        }
    }
}

/// The last lines of a log, for failure messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Waits (at most 60 s) for `child`'s ready file; fails with the log's
/// tail if it exits or the deadline passes first.
fn wait_ready(path: &Path, child: &mut Child, log: impl Fn() -> String) -> paid_server::ready::Ready {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Written by a rename: present means complete.
        if let Ok(ready) = paid_server::ready::Ready::read(path) {
            assert_eq!(ready.pid, child.id(), "{ready:?}");
            return ready;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited with {status} before writing {}; log tail:\n{}", path.display(), tail(&log()));
        }
        assert!(Instant::now() < deadline, "no ready file {} after 60 s; log tail:\n{}", path.display(), tail(&log()));
        // not an assertion: the poll interval of a deadline-bounded wait
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command that must end by itself within 60 s.
fn bounded(cmd: &mut Command) -> Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("{cmd:?} did not end within 60 s");
        }
    }
}

fn client() -> reqwest::Client {
    paid_api::client::http_client().unwrap()
}

fn state_of(runs: &[Value]) -> Vec<String> {
    runs.iter().map(|r| r["state"].as_str().unwrap_or_default().to_string()).collect()
}

fn promtool() -> PathBuf {
    let out = Command::new("sh").args(["-c", "command -v promtool"]).output().unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "promtool is missing: run scripts/provision-promtool (Debian's prometheus package); CI={:?}",
        std::env::var("CI").ok()
    );
    PathBuf::from(path)
}

/// `promtool check metrics` on a scrape: any finding fails.
fn promtool_check_metrics(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let findings: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "promtool check metrics: {:?}: {findings:#?}\n{text}",
        out.status
    );
}

/// The host's address on Docker's default bridge.
fn bridge_gateway() -> String {
    let out = Command::new("docker")
        .args(["network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.split_whitespace().next().expect("the bridge network has an address");
    if first.parse::<std::net::Ipv4Addr>().is_ok() {
        return first.to_string();
    }
    // No gateway recorded: the subnet's first host is the bridge.
    let base: std::net::Ipv4Addr = first.split('/').next().unwrap().parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(base) + 1).to_string()
}

/// What a compromised agent tries: a default route (with egress control it
/// must have none), a listener on this host's bridge address, another
/// container, and the metering proxy by the URL it was given. Targets are
/// this machine's own: the test's listener and container.
fn egress_probe(host: &str, other: &str) -> String {
    format!(
        r#"probe() {{ if timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then echo "reached $1:$2"; else echo "blocked $1:$2"; fi; }}
{{ gw=$(python3 -c "import socket; print(next((socket.inet_ntoa(int(l.split()[2], 16).to_bytes(4, 'little')) for l in open('/proc/net/route').read().splitlines()[1:] if l.split()[1] == '00000000'), 'none'))")
  if [ "$gw" = none ]; then echo "no default route"; elif [ -z "$gw" ]; then echo "unreadable route table"; elif timeout 3 bash -c "exec 3<>/dev/tcp/$gw/9" 2>&1 | grep -q refused; then echo "gateway answers"; else echo "gateway is nobody"; fi
  echo "routes $(tail -n +2 /proc/net/route | grep -c .)"
  probe {host}
  probe {other}
  python3 -c "import os, urllib.request as u; print('proxy', u.urlopen(os.environ['PAID_PROXY_URL'] + '/health', timeout=5).read().decode())" 2>&1 | tail -n 1
}} > egress-probe.txt"#,
        host = host.replace(':', " "),
        other = other.replace(':', " "),
    )
}

/// A listener on the host's bridge address and a container on the default
/// bridge, as targets a sandbox must not reach; removed on drop.
struct EgressTargets {
    host: String,
    other: String,
    container: String,
    _listener: std::net::TcpListener,
}

impl EgressTargets {
    fn start() -> Self {
        let gateway = bridge_gateway();
        let listener = std::net::TcpListener::bind((gateway.as_str(), 0)).unwrap();
        let host = format!("{gateway}:{}", listener.local_addr().unwrap().port());
        let container = format!("paid-egress-target-{}", rand_hex());
        let run = Command::new("docker")
            .args(["run", "-d", "--rm", "--name", &container, "paid/agent:bookworm"])
            .args(["python3", "-m", "http.server", "8080"])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let ip = Command::new("docker")
            .args(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &container])
            .output()
            .unwrap();
        let ip = String::from_utf8(ip.stdout).unwrap().trim().to_string();
        let other = format!("{ip}:8080");
        // The target answers (from the host), so "blocked" below means the
        // sandbox was stopped, not that nothing listened.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&other).is_err() {
            assert!(Instant::now() < deadline, "the target container never listened on {other}");
            // not an assertion: the poll interval of a deadline-bounded wait
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { host, other, container, _listener: listener }
    }

    /// The probe run in a plain container on the default bridge (what every
    /// sandbox was before egress control became the default) reaches both
    /// targets: the probe can tell.
    fn probe_on_the_default_bridge(&self) -> String {
        let out = Command::new("docker")
            .args(["run", "--rm", "--network", "bridge", "-e", "PAID_PROXY_URL=http://127.0.0.1:9"])
            .args(["-w", "/tmp", "paid/agent:bookworm", "bash", "-c"])
            .arg(format!("{} && cat egress-probe.txt", egress_probe(&self.host, &self.other)))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for EgressTargets {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.container]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_polls_the_issue_and_a_pull_request_appears() {
    // With a provider configured, the metering proxy runs and the agent gets
    // its address and a run token (never a provider key). The agent is also
    // a compromised one: with paid.toml's defaults (egress control on; the
    // proxy on loopback), it probes its sandbox and commits what it found.
    let targets = EgressTargets::start();
    let extra = PROXY_ON_ANY_PORT;
    let script = format!(
        "echo \"proxy=$PAID_PROXY_URL token=${{#PAID_RUN_TOKEN}} model=[$PAID_MODEL]\" && {} && {FIXER_SCRIPT}",
        egress_probe(&targets.host, &targets.other)
    );
    let mut w = World::new(Setup { agent_script: &script, extra }).await;
    w.start("paid.toml").await;

    // The poller picks the labeled issue up; a PR appears on the forge.
    let deadline = Instant::now() + Duration::from_secs(120);
    while w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty() {
        assert!(Instant::now() < deadline, "no PR after 120 s; log:\n{}", w.log());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let runs = w.wait_runs("the run to succeed", Duration::from_secs(60), |r| state_of(r) == ["succeeded"]).await;
    let prs = w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1);
    assert_eq!(prs.len(), 1, "{prs:?}");
    assert!(prs[0].body.contains("Closes #1"), "{}", prs[0].body);
    let run_id = runs[0]["id"].as_str().unwrap().to_string();

    // `paid runs show --json`: steps and cost.
    let (ok, show) = w.paid_json(&["runs", "show", &run_id]);
    assert!(ok, "{show:#}");
    let data = &show["data"];
    assert_eq!(data["run"]["state"], "succeeded");
    assert_eq!(data["run"]["pr_url"].as_str(), Some(prs[0].html_url.as_str()));
    let steps: Vec<&str> = data["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    for step in ["selecting_model", "provisioning", "running_agent", "verifying", "pushing", "opening_pr", "cleaning"] {
        assert!(steps.contains(&step), "step {step} missing from {steps:?}");
    }
    assert!(
        data["steps"].as_array().unwrap().iter().all(|s| s["status"] == "done" || s["status"] == "failed"),
        "{data:#}"
    );
    assert!(data["cost"]["usd"].is_number(), "{:#}", data["cost"]);
    assert!(data["cost"]["records"].is_number() && data["cost"]["unpriced_records"].is_number());
    // No model is configured (no engine.models, no project model): the
    // agent's own default, never a placeholder model name.
    assert_eq!(data["model_decision"]["selector"], "agent_default", "{data:#}");
    assert_eq!(data["model_decision"]["model"], "", "{data:#}");
    assert!(data["run"]["model"].is_null(), "{data:#}");
    assert!(show["meta"]["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    // Human output, logs, lists.
    let out = w.paid(&["runs", "show", &run_id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("succeeded") && text.contains("opening_pr"), "{text}");
    let out = w.paid(&["runs", "logs", &run_id, "--follow"]);
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("ok: add 2 3"), "{logs}");
    // The proxy is on the sandbox's own loopback (its relay), with no
    // configuration.
    assert!(logs.contains("proxy=http://127.0.0.1:3128 token="), "{logs}");
    assert!(logs.contains(" model=[]"), "the agent was given a model: {logs}");
    assert!(!logs.contains("token=0\n"), "the agent got no run token: {logs}");
    // What the compromised agent found: no default route (no network at
    // all), neither target, and the proxy reached (its /health answered
    // through the sandbox's relay and the forwarder).
    let branch = runs[0]["branch"].as_str().unwrap();
    let probe = Command::new("git")
        .args(["show", &format!("{branch}:egress-probe.txt")])
        .current_dir(&w.remote)
        .output()
        .unwrap();
    let probe = String::from_utf8_lossy(&probe.stdout);
    let expected =
        format!("no default route\nroutes 0\nblocked {}\nblocked {}\nproxy ok\n", targets.host, targets.other);
    assert_eq!(probe.as_ref(), expected, "the sandbox's view; log:\n{}", w.log());
    // The same probe on the default bridge reaches both targets.
    let control = targets.probe_on_the_default_bridge();
    assert!(
        control.starts_with("gateway answers\n")
            && control.contains(&format!("reached {}", targets.host))
            && control.contains(&format!("reached {}", targets.other)),
        "{control}"
    );
    let proxy_health = client().get(format!("http://{}/health", w.proxy_addr())).send().await.unwrap();
    assert_eq!(proxy_health.status(), 200);
    let (ok, list) = w.paid_json(&["runs", "list"]);
    assert!(ok && list["data"][0]["id"] == run_id.as_str(), "{list:#}");
    let (ok, projects) = w.paid_json(&["project", "list"]);
    assert!(ok, "{projects:#}");
    assert_eq!(projects["data"][0]["source"], "config");
    let (ok, costs) = w.paid_json(&["costs"]);
    assert!(ok && costs["data"]["total"]["usd"].is_number(), "{costs:#}");
    let (ok, prompts) = w.paid_json(&["prompts", "list"]);
    assert!(ok && prompts["data"].is_array(), "{prompts:#}");
    let (ok, missing) = w.paid_json(&["prompts", "show", "no-such-prompt"]);
    assert!(!ok && missing["error"]["code"] == "not_found", "{missing:#}");

    // Health.
    let http = client();
    let health = http.get(format!("{}/health", w.api())).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = http.get(format!("{}/health/ready", w.api())).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    let checks: Vec<(&str, bool)> =
        ready["checks"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c["ok"] == true)).collect();
    assert_eq!(checks, vec![("store", true), ("docker", true), ("forge", true)], "{ready:#}");

    // Metrics: the DESIGN §8 names, checked by promtool.
    let metrics = http.get(format!("{}/metrics", w.api())).send().await.unwrap().text().await.unwrap();
    for name in [
        "paid_agent_runs_total{",
        "paid_prs_created_total{",
        "paid_agent_run_duration_seconds_bucket{",
        "paid_iterations_to_complete_bucket{",
        "paid_container_startup_seconds_bucket{",
        "paid_disk_usage_bytes{type=\"worktrees\"}",
        "paid_github_api_calls_total{",
        "paid_github_rate_limit_remaining{",
        "# TYPE paid_active_workflows gauge",
        "# TYPE paid_active_containers gauge",
        "# TYPE paid_worktrees gauge",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    assert!(metrics.contains("status=\"succeeded\"} 1"), "{metrics}");
    promtool_check_metrics(&metrics);
    let om = http
        .get(format!("{}/metrics", w.api()))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(om.trim_end().ends_with("# EOF"), "{om}");

    // Every metric the Grafana dashboard queries is one of DESIGN §8 (the
    // families without samples yet, such as token counts, are not encoded).
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("deploy/grafana/paid.json")).unwrap()).unwrap();
    let rows: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(rows, vec!["Overview", "Runs", "Costs", "Quality", "Infrastructure"]);
    let re = regex_lite_names(&dashboard.to_string());
    for name in re {
        let family = name.trim_end_matches("_bucket");
        assert!(DESIGN_METRICS.contains(&family), "the dashboard queries {name}, which is not a DESIGN §8 metric");
    }
    for family in DESIGN_METRICS {
        assert!(dashboard.to_string().contains(family), "the dashboard shows nothing of {family}");
    }

    // JSON logs carry trace_id, run_id and project_id.
    let log = w.log();
    let run_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["span"]["run_id"] == run_id.as_str())
        .unwrap_or_else(|| panic!("no JSON log line with span.run_id = {run_id}:\n{log}"));
    assert!(run_line["span"]["trace_id"].is_string() && run_line["span"]["project_id"].is_string(), "{run_line}");

    // `paid doctor` agrees.
    // The doctor reads the listeners from the file: pin them to the ready file's.
    w.pin_config("paid.toml", "doctor.toml");
    let (ok, doctor) = w.paid_json_with("doctor.toml", &["doctor"]);
    let checks = doctor["data"]["checks"].as_array().unwrap();
    let status =
        |name: &str| checks.iter().find(|c| c["check"] == name).map(|c| c["status"].as_str().unwrap().to_string());
    assert_eq!(status("docker").as_deref(), Some("ok"), "{doctor:#}");
    assert_eq!(status("store").as_deref(), Some("ok"), "{doctor:#}");
    assert_eq!(status("image").as_deref(), Some("ok"), "{doctor:#}");
    assert_eq!(status("github token").as_deref(), Some("ok"), "{doctor:#}");
    assert_eq!(status("daemon").as_deref(), Some("ok"), "{doctor:#}");
    assert_eq!(status("proxy").as_deref(), Some("ok"), "{doctor:#}");
    // A sandbox of the project's image, made as `paid serve` makes them,
    // has no route, and reached the running daemon's proxy through its
    // relay and the forwarder and nothing else.
    assert_eq!(status("sandbox egress").as_deref(), Some("ok"), "{doctor:#}");
    assert_eq!(status("sandbox proxy").as_deref(), Some("ok"), "{doctor:#}");
    assert!(ok, "{doctor:#}");

    let status = w.stop();
    assert!(status.success(), "{status}; log:\n{}", w.log());
    assert!(w.sandboxes().is_empty(), "sandboxes left: {:?}", w.sandboxes());
    assert!(w.volumes().is_empty(), "volumes left: {:?}", w.volumes());
}

/// The metric families of DESIGN §8.
const DESIGN_METRICS: &[&str] = &[
    "paid_agent_runs_total",
    "paid_prs_created_total",
    "paid_agent_run_duration_seconds",
    "paid_iterations_to_complete",
    "paid_tokens_used_total",
    "paid_cost_cents_total",
    "paid_quality_score",
    "paid_pr_merge_rate",
    "paid_active_workflows",
    "paid_active_containers",
    "paid_worktrees",
    "paid_container_startup_seconds",
    "paid_disk_usage_bytes",
    "paid_llm_request_seconds",
    "paid_github_api_calls_total",
    "paid_github_rate_limit_remaining",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `paid_…` metric names in a text.
fn regex_lite_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("paid_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_' || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        let name = &text[start..end];
        if start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            names.insert(name.to_string());
        }
        i = end;
    }
    names.retain(|n| n != "paid_" && n != "paid_json");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_long_running_agent_within_5_s_and_cleans_up() {
    // Not labeled: the run is triggered by hand.
    let mut w = World::new(Setup { agent_script: "sleep 300", ..Setup::default() }).await;
    w.github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "add() returns the wrong result", "Fix add().", ISSUE_AUTHOR, &[]);
    w.start("paid.toml").await;

    let url = format!("{}/{}/{}/issues/1", w.github.base_url(), DEMO_REPO.0, DEMO_REPO.1);
    let (ok, queued) = w.paid_json(&["run", &url]);
    assert!(ok, "{queued:#}");
    let run_id = queued["data"]["id"].as_str().unwrap().to_string();
    w.wait_runs("the agent to run", Duration::from_secs(90), |r| state_of(r) == ["running_agent"]).await;
    // Wait until the agent's process is up in its sandbox.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.sandboxes().iter().any(|id| container_runs(id, "sleep 300")) {
        assert!(Instant::now() < deadline, "the agent's process never started; log:\n{}", w.log());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.sandboxes().len(), 1, "one sandbox while the agent runs");

    let asked = Instant::now();
    let (ok, cancel) = w.paid_json(&["runs", "cancel", &run_id]);
    assert!(ok, "{cancel:#}");
    assert_eq!(cancel["data"]["cancel_requested"], true);
    w.wait_runs("the run to end cancelled", Duration::from_secs(30), |r| state_of(r) == ["cancelled"]).await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "cancel took {took:?}");
    assert!(w.sandboxes().is_empty(), "sandbox left after cancel: {:?}", w.sandboxes());
    assert!(w.worktrees().is_empty(), "worktree left after cancel: {:?}", w.worktrees());
    assert!(w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty());

    // Cancelling again says it already ended.
    let (ok, again) = w.paid_json(&["runs", "cancel", &run_id]);
    assert!(!ok);
    assert_eq!(again["error"]["code"], "already_finished");
    assert!(w.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_then_restart_finishes_with_exactly_one_pr() {
    let script = format!("sleep 4 && {FIXER_SCRIPT}");
    let mut w = World::new(Setup { agent_script: &script, ..Setup::default() }).await;
    w.start("paid.toml").await;
    let runs = w.wait_runs("the agent to run", Duration::from_secs(90), |r| state_of(r) == ["running_agent"]).await;
    let run_id = runs[0]["id"].as_str().unwrap().to_string();

    // SIGTERM while the agent works: the step finishes, the lease is released.
    let stopped = Instant::now();
    let status = w.stop();
    assert!(status.success(), "{status}; log:\n{}", w.log());
    assert!(stopped.elapsed() < Duration::from_secs(30), "shutdown took {:?}", stopped.elapsed());
    let store = paid_store_sqlite::SqliteStore::open(w.path("data/paid.db")).unwrap();
    let run = paid_core::Runs::run(&store, paid_core::RunId::parse(&run_id).unwrap()).await.unwrap();
    assert!(!run.state.is_terminal(), "the run must pause, not end: {run:?}");
    assert_eq!(run.lease_owner, None, "the lease must be released on SIGTERM");
    drop(store);
    assert!(w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty());
    assert!(w.log().contains("run paused for shutdown"), "{}", w.log());

    // A restarted daemon resumes it.
    w.start("paid.toml").await;
    w.wait_runs("the resumed run to succeed", Duration::from_secs(120), |r| state_of(r) == ["succeeded"]).await;
    assert_eq!(w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).len(), 1, "exactly one PR");
    assert_eq!(w.github.comments(DEMO_REPO.0, DEMO_REPO.1, 1).len(), 1, "exactly one comment");
    let runs = w.get("/api/v1/runs").await;
    assert_eq!(runs["data"].as_array().unwrap().len(), 1, "one run: {runs:#}");
    assert!(w.stop().success());
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                hits.push(p);
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_tokens_are_encrypted_rotated_and_never_read_with_a_wrong_key() {
    const GH: &str = "ghp_TESTsecretVALUE0123456789abcdef";
    const OPENAI: &str = "sk-test-OPENAIsecret-987654321";
    let mut w = World::new(Setup::default()).await;
    // No run is wanted here: the issue is not labeled.
    w.github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "x", "y", ISSUE_AUTHOR, &[]);
    w.start("paid.toml").await;

    std::fs::write(w.path("gh-token"), format!("{GH}\n")).unwrap();
    let (ok, set) = w.paid_json(&["token", "set", "github", "--from-file", w.path("gh-token").to_str().unwrap()]);
    assert!(ok, "{set:#}");
    assert_eq!(set["data"]["validation"]["login"], "paid-bot", "validated against the forge: {set:#}");
    assert_eq!(set["data"]["validation"]["repositories"][0], "paid-demo/calc");
    let mut child = w
        .command("paid.toml")
        .args(["token", "set", "provider.openai"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(OPENAI.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    std::fs::remove_file(w.path("gh-token")).unwrap();

    // The plaintexts are nowhere in the database files (or anywhere else).
    for secret in [GH, OPENAI] {
        let hits = files_contain(w.dir.path(), secret.as_bytes());
        assert!(hits.is_empty(), "{secret} readable in {hits:?}");
    }
    assert!(!w.log().contains(GH) && !w.log().contains(OPENAI), "a secret reached the log");
    let (_, list) = w.paid_json(&["token", "list"]);
    let secrets = list["data"]["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2, "{list:#}");
    let old_id = list["data"]["master_key_id"].as_str().unwrap().to_string();
    assert!(secrets.iter().all(|s| s["key_id"] == old_id.as_str()), "{list:#}");
    assert!(!list.to_string().contains(GH));

    // Rotation re-encrypts everything under the new key, the daemon running.
    // The daemon reads a key file a request names only inside its data_dir.
    let (ok, rot) =
        w.paid_json(&["token", "rotate-key", "--new-key-file", w.path("data/new.key").to_str().unwrap(), "--generate"]);
    assert!(ok, "{rot:#}");
    let new_id = rot["data"]["rotation"]["key_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, old_id);
    assert_eq!(rot["data"]["rotation"]["rotated"].as_array().unwrap().len(), 2, "{rot:#}");
    let (_, list) = w.paid_json(&["token", "list"]);
    assert!(list["data"]["secrets"].as_array().unwrap().iter().all(|s| s["key_id"] == new_id.as_str()), "{list:#}");
    for secret in [GH, OPENAI] {
        assert!(files_contain(w.dir.path(), secret.as_bytes()).is_empty());
    }
    assert!(w.stop().success());

    // Every secret reads with the new key: the daemon decrypts them all at start.
    w.write_config("new.toml", &Setup::default(), "data/new.key");
    w.start("new.toml").await;
    assert!(w.log().contains("stored secrets decrypt with the configured key"), "{}", w.log());
    assert!(w.stop().success());

    // The old key, or an unrelated one, is refused at start, naming the key
    // the secrets need; nothing starts.
    paid_server::vault::write_new_key(&w.path("other.key")).unwrap();
    for key in ["master.key", "other.key"] {
        w.write_config("wrong.toml", &Setup::default(), key);
        let out = bounded(w.command("wrong.toml").args(["serve", "--ready-file"]).arg(w.path("wrong-ready.json")));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with the wrong key {key}: {err}");
        assert!(err.contains(&format!("encrypted under master key {new_id}")), "{err}");
        assert!(err.contains("loaded keys"), "{err}");
        assert!(!w.path("wrong-ready.json").exists(), "nothing may be ready: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_forge_rejects_is_not_stored() {
    let mut w = World::new(Setup::default()).await;
    w.github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "x", "y", ISSUE_AUTHOR, &[]);
    // A forge that only takes one token: point the daemon at it.
    let strict = FakeGitHub::start_with(paid_github::fake::FakeConfig::new().token("gh-test-token")).await.unwrap();
    strict.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "x", "y", ISSUE_AUTHOR, &[]);
    let cfg = std::fs::read_to_string(w.path("paid.toml")).unwrap().replace(w.github.base_url(), strict.base_url());
    std::fs::write(w.path("strict.toml"), cfg).unwrap();
    w.start("strict.toml").await;
    std::fs::write(w.path("bad-token"), "ghp_wrong").unwrap();
    let out = w
        .command("strict.toml")
        .args(["--json", "token", "set", "github", "--from-file"])
        .arg(w.path("bad-token"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success());
    assert_eq!(v["error"]["code"], "token_rejected", "{v:#}");
    assert!(v["error"]["message"].as_str().unwrap().contains("401"), "{v:#}");
    let (_, list) = w.paid_json_with("strict.toml", &["token", "list"]);
    assert!(list["data"]["secrets"].as_array().unwrap().is_empty(), "{list:#}");
    assert!(w.stop().success());
}

impl World {
    fn paid_json_with(&self, config: &str, args: &[&str]) -> (bool, Value) {
        let out = self.command(config).arg("--json").args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.success(), serde_json::from_slice(&out.stdout).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_clearly() {
    let mut w = World::new(Setup::default()).await;
    w.github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "x", "y", ISSUE_AUTHOR, &[]);

    // Malformed configuration: file, key and reason; nothing starts.
    let good = std::fs::read_to_string(w.path("paid.toml")).unwrap();
    for (bad, key, reason) in [
        (format!("poll_interval_secs = \"soon\"\n{good}"), "poll_interval_secs", "invalid type"),
        (format!("poll_interval_secs = 5\n{good}"), "poll_interval_secs", "minimum of 60 s"),
        (
            good.replace("token_env = \"PAID_TEST_GITHUB_TOKEN\"", "token = \"ghp_inline\""),
            "github.token",
            "never written inline",
        ),
        (good.replace("repo = \"paid-demo/calc\"", "repo = \"calc\""), "projects[0].repo", "owner/name"),
        (
            good.replace("agent = \"test-agent\"", "agent = \"no-such-agent\""),
            "projects[0].agent",
            "no agent \"no-such-agent\"",
        ),
    ] {
        std::fs::write(w.path("bad.toml"), &bad).unwrap();
        let out = bounded(
            w.command("bad.toml")
                .env_remove("PAID_POLL_INTERVAL_MS")
                .args(["serve", "--ready-file"])
                .arg(w.path("bad-ready.json")),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(&w.path("bad.toml").display().to_string()), "{key}: file not named: {err}");
        assert!(err.contains(key), "{key}: key not named: {err}");
        assert!(err.contains(reason), "{key}: reason missing: {err}");
        assert!(!w.path("bad-ready.json").exists(), "{key}: nothing may be ready: {err}");
        let out = bounded(w.command("bad.toml").env_remove("PAID_POLL_INTERVAL_MS").args(["--json", "serve"]));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["code"], "invalid_config");
        assert_eq!(v["error"]["details"]["key"], key);
    }
    // The poll-interval test hook (this test build has it) refuses 0.
    let out = bounded(
        w.command("paid.toml")
            .env("PAID_POLL_INTERVAL_MS", "0")
            .args(["serve", "--ready-file"])
            .arg(w.path("bad-ready.json")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("PAID_POLL_INTERVAL_MS") && err.contains("at least 1 ms"), "{err}");
    assert!(!w.path("bad-ready.json").exists(), "nothing may be ready: {err}");

    w.start("paid.toml").await;

    // An unknown project in `paid run`.
    let out = w.paid(&["run", "https://github.com/nobody/nothing/issues/3"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no project for nobody/nothing"), "{err}");
    let (ok, v) = w.paid_json(&["run", "nobody/nothing#3"]);
    assert!(!ok);
    assert_eq!(v["error"]["code"], "project_not_found");
    assert_eq!(v["error"]["details"]["repo"], "nobody/nothing");
    let (ok, v) = w.paid_json(&["run", "not an issue"]);
    assert!(!ok && v["error"]["code"] == "invalid_input", "{v:#}");

    // No token, a wrong token, an unknown path: the same 401, revealing nothing.
    let http = client();
    let mut bodies = Vec::new();
    for (path, token) in
        [("/api/v1/runs", None), ("/api/v1/runs", Some("wrong")), ("/api/v1/no/such/thing", None), ("/api/v9", None)]
    {
        let mut req = http.get(format!("{}{path}", w.api()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let mut v: Value = r.json().await.unwrap();
        assert_eq!(v["meta"]["request_id"], rid.as_str());
        v["meta"]["request_id"] = Value::Null;
        bodies.push(v);
    }
    assert!(bodies.windows(2).all(|b| b[0] == b[1]), "{bodies:#?}");
    assert_eq!(
        bodies[0],
        serde_json::json!({
            "error": { "code": "unauthorized", "message": "authentication required", "details": {} },
            "meta": { "request_id": null },
        })
    );
    let out = w.command("paid.toml").args(["--token-file", "/dev/null", "runs", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("API token is missing or wrong"));

    // An oversized body: 413 in the error shape; the request id is kept.
    let big = serde_json::json!({ "issue_url": "x".repeat(10_000) });
    let r = http
        .post(format!("{}/api/v1/runs", w.api()))
        .bearer_auth(API_TOKEN)
        .header("x-request-id", "test-request-1")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-request-id"], "test-request-1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large");
    assert_eq!(v["meta"]["request_id"], "test-request-1");
    assert!(v["error"]["message"].is_string() && v["error"]["details"].is_object());

    // Malformed JSON and unknown fields are in the same shape.
    let r = http
        .post(format!("{}/api/v1/runs", w.api()))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
    // Unknown resources, authenticated: 404 in the shape.
    let r = http.get(format!("{}/api/v1/runs/not-a-run", w.api())).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    let r = http.get(format!("{}/api/v1/experiments", w.api())).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"].as_array().is_some_and(Vec::is_empty), "{v:#}");
    assert!(w.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_emergency_stops_new_runs() {
    let mut w = World::new(Setup::default()).await;
    // Thresholds at 0%: any filesystem is "full".
    let cfg = std::fs::read_to_string(w.path("paid.toml"))
        .unwrap()
        .replace("warning_percent = 98", "warning_percent = 0")
        .replace("critical_percent = 99", "critical_percent = 0")
        .replace("emergency_percent = 100", "emergency_percent = 0");
    std::fs::write(w.path("full.toml"), cfg).unwrap();
    w.start("full.toml").await;
    let status = w.get("/api/v1/status").await;
    assert_eq!(status["data"]["accepting_runs"], false, "{status:#}");
    assert_eq!(status["data"]["disk"]["level"], "emergency");
    // A manual trigger is refused, and the labeled issue is not picked up.
    let (ok, v) = w.paid_json_with("full.toml", &["run", "paid-demo/calc#1"]);
    assert!(!ok);
    assert_eq!(v["error"]["code"], "disk_emergency");
    let metrics = client().get(format!("{}/metrics", w.api())).send().await.unwrap().text().await.unwrap();
    for t in ["repos", "worktrees", "logs", "images", "filesystem_used", "filesystem_size"] {
        assert!(metrics.contains(&format!("paid_disk_usage_bytes{{type=\"{t}\"}}")), "{t}: {metrics}");
    }
    assert!(w.get("/api/v1/runs").await["data"].as_array().unwrap().is_empty());
    // Once the daemon has exited it has made every poll it ever would (one
    // per 300 ms while it ran): none reached the forge, so nothing could be
    // queued.
    assert!(w.stop().success());
    let polls: Vec<_> =
        w.github.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with("/issues")).collect();
    assert!(polls.is_empty(), "polled during a disk emergency: {polls:?}\nlog:\n{}", w.log());
}

#[test]
fn promtool_accepts_the_shipped_alert_rules() {
    let root = repo_root();
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(root.join("deploy/prometheus/alerts.yml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = Command::new(promtool())
        .args(["test", "rules"])
        .arg(root.join("deploy/prometheus/alerts.test.yml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    for alert in [
        "PaidHighRunFailureRate",
        "PaidBudgetExceeded",
        "PaidGitHubRateLimitLow",
        "PaidSlowContainerStart",
        "PaidDiskSpaceLow",
        "PaidQualityDrop",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "{alert} missing");
    }
}

#[test]
fn init_writes_a_config_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("paid.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_paid")).args(["--json", "init", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["created"].as_array().unwrap().len(), 3, "{v:#}");
    let config = paid_server::config::Config::load_with_env(&cfg, &Default::default()).unwrap();
    assert_eq!(config.poll_interval, Duration::from_secs(60));
    let key = std::fs::metadata(dir.path().join("paid-master.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let out = Command::new(env!("CARGO_BIN_EXE_paid")).args(["init", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success(), "init must not overwrite without --force");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_forge_token_is_used_without_a_restart() {
    const NEW: &str = "ghp_NEWrotatedTOKEN0123456789abcdef";
    let mut w = World::new(Setup::default()).await;
    // A forge that only takes the new token; the daemon starts with the old
    // one (PAID_TEST_GITHUB_TOKEN), which it rejects.
    let strict = FakeGitHub::start_with(paid_github::fake::FakeConfig::new().token(NEW)).await.unwrap();
    strict.add_issue(
        DEMO_REPO.0,
        DEMO_REPO.1,
        1,
        "add() returns the wrong result",
        "Running `sh test.sh` fails: `add 2 3` prints -1 instead of 5. Please fix add() in calc.sh.",
        ISSUE_AUTHOR,
        &["paid-build"],
    );
    let cfg = std::fs::read_to_string(w.path("paid.toml")).unwrap().replace(w.github.base_url(), strict.base_url());
    std::fs::write(w.path("strict.toml"), cfg).unwrap();
    w.start("strict.toml").await;
    let polls = |status: u16| {
        strict
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/issues") && r.status == status)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while polls(401) == 0 {
        assert!(Instant::now() < deadline, "no poll with the old token; log:\n{}", w.log());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(polls(200), 0);
    assert!(w.get("/api/v1/runs").await["data"].as_array().unwrap().is_empty());

    // Rotate through the CLI, the daemon running: the very next poll uses it.
    std::fs::write(w.path("new-token"), NEW).unwrap();
    let (ok, set) = w.paid_json_with("strict.toml", &["token", "set", "github", "--from-file", "new-token"]);
    assert!(ok, "{set:#}");
    assert!(set["data"]["note"].as_str().unwrap().contains("from now on"), "{set:#}");
    let rejected_before = polls(401);
    let runs = w.wait_runs("the run to succeed", Duration::from_secs(120), |r| state_of(r) == ["succeeded"]).await;
    assert!(polls(200) > 0);
    assert!(polls(401) <= rejected_before + 1, "at most a poll in flight used the old token");
    let prs = strict.pull_requests(DEMO_REPO.0, DEMO_REPO.1);
    assert_eq!(prs.len(), 1, "the PR was opened with the new token: {prs:?}; runs: {runs:#?}");
    assert!(w.log().contains("a new GitHub token is in use"), "{}", w.log());
    let ready: Value = client().get(format!("{}/health/ready", w.api())).send().await.unwrap().json().await.unwrap();
    let forge = ready["checks"].as_array().unwrap().iter().find(|c| c["name"] == "forge").unwrap().clone();
    assert_eq!(forge["ok"], true, "readiness checks the forge with the new token: {ready:#}");
    assert!(!w.log().contains(NEW), "the token reached the log");
    assert!(w.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_budgets_reach_the_proxy_and_survive_a_restart() {
    let mut w = World::new(Setup { extra: PROXY_ON_ANY_PORT, ..Setup::default() }).await;
    w.github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "x", "y", ISSUE_AUTHOR, &[]);
    let cfg = std::fs::read_to_string(w.path("paid.toml"))
        .unwrap()
        .replace("agent = \"test-agent\"\n", "agent = \"test-agent\"\nbudget_usd_per_run = 0.5\n");
    std::fs::write(w.path("paid.toml"), cfg).unwrap();
    w.start("paid.toml").await;
    assert!(w.log().contains("per-project budgets registered with the proxy"), "{}", w.log());
    let registered =
        |log: &str| log.lines().rfind(|l| l.contains("per-project budgets registered")).map(str::to_string);
    assert!(registered(&w.log()).unwrap().contains("\"projects\":1"), "{}", w.log());

    // A project added through the API, with budgets.
    w.github.add_issue("acme", "tools", 1, "x", "y", ISSUE_AUTHOR, &[]);
    let (ok, added) = w.paid_json(&[
        "project",
        "add",
        "acme/tools",
        "--author",
        ISSUE_AUTHOR,
        "--agent",
        "test-agent",
        "--budget-usd-per-month",
        "20",
    ]);
    assert!(ok, "{added:#}");
    assert_eq!(added["data"]["budget_usd_per_month"], 20.0, "{added:#}");
    let (ok, bad) = w.paid_json(&["project", "add", "acme/other", "--author", "a", "--budget-usd-per-run=-1"]);
    assert!(!ok && bad["error"]["code"] == "invalid_input", "{bad:#}");
    assert!(w.stop().success());

    // After a restart both projects' caps are registered again.
    w.start("paid.toml").await;
    assert!(registered(&w.log()).unwrap().contains("\"projects\":2"), "{}", w.log());
    let (_, list) = w.paid_json(&["project", "list"]);
    let tools = list["data"].as_array().unwrap().iter().find(|p| p["repo"]["name"] == "tools").unwrap().clone();
    assert_eq!(tools["budget_usd_per_month"], 20.0, "{list:#}");
    let calc = list["data"].as_array().unwrap().iter().find(|p| p["repo"]["name"] == "calc").unwrap().clone();
    assert_eq!(calc["budget_usd_per_run"], 0.5, "{list:#}");
    // `paid costs` shows each project's monthly budget: cap, spend, holds.
    let (ok, costs) = w.paid_json(&["costs"]);
    assert!(ok, "{costs:#}");
    let budgets = costs["data"]["budgets"].as_array().unwrap();
    let tools = budgets.iter().find(|b| b["repo"] == "acme/tools").unwrap_or_else(|| panic!("{costs:#}"));
    let state = |b: &Value| (b["limit_usd"].as_f64(), b["spent_usd"].as_f64(), b["reserved_usd"].as_f64());
    assert_eq!(state(tools), (Some(20.0), Some(0.0), Some(0.0)), "{costs:#}");
    let calc = budgets.iter().find(|b| b["repo"] != "acme/tools").unwrap_or_else(|| panic!("{costs:#}"));
    assert_eq!(state(calc), (None, Some(0.0), Some(0.0)), "no monthly cap: {costs:#}");

    // Removing it returns it to the defaults.
    let (ok, _) = w.paid_json(&["project", "remove", "acme/tools"]);
    assert!(ok);
    assert!(w.stop().success());
    w.start("paid.toml").await;
    assert!(registered(&w.log()).unwrap().contains("\"projects\":1"), "{}", w.log());
    assert!(w.stop().success());
}

const WEBHOOK_SECRET: &str = "webhook-secret-0123456789abcdef";

/// Posts a GitHub webhook delivery to the daemon, signed with `secret`.
async fn post_webhook(world: &World, event: &str, body: &[u8], secret: &str) -> reqwest::StatusCode {
    client()
        .post(format!("{}/webhooks/github", world.api()))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", uuid::Uuid::now_v7().to_string())
        .header("x-hub-signature-256", paid_github::webhooks::sign(secret.as_bytes(), body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

fn issues_event(number: u64) -> Vec<u8> {
    // A fresh `updated_at`, as GitHub sends: older payloads are refused as replays.
    serde_json::to_vec(&serde_json::json!({
        "action": "labeled",
        "issue": { "number": number, "updated_at": chrono::Utc::now().to_rfc3339() },
        "label": { "name": "paid-build" },
        "repository": { "name": DEMO_REPO.1, "owner": { "login": DEMO_REPO.0 } },
        "sender": { "login": ISSUE_AUTHOR },
    }))
    .unwrap()
}

fn issue_numbers(runs: &[Value]) -> Vec<u64> {
    runs.iter().filter_map(|r| r["issue_number"].as_u64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_issues_webhook_starts_a_run_before_the_next_poll_and_a_tampered_one_gets_401() {
    let mut world = World::new(Setup::default()).await;
    // Nothing to do at the startup poll; the next poll is an hour away.
    assert!(world.github.close_issue(DEMO_REPO.0, DEMO_REPO.1, 1));
    let mut command = world.command("paid.toml");
    command
        .env("PAID_POLL_INTERVAL_MS", "3600000")
        .env("PAID_GITHUB_WEBHOOK_SECRET_ENV", "PAID_TEST_WEBHOOK_SECRET")
        .env("PAID_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    world.start_command(command).await;
    // Wait until the startup poll was answered: issues labeled from now on
    // are found by the next poll only.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !world.github.requests().iter().any(|r| r.method == "GET" && r.path.ends_with("/issues")) {
        assert!(Instant::now() < deadline, "no startup poll; log:\n{}", world.log());
        // not an assertion: the poll interval of a deadline-bounded wait
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(world.get("/api/v1/runs").await["data"].as_array().unwrap().is_empty());

    let issue = |n: u64| {
        world.github.add_issue(
            DEMO_REPO.0,
            DEMO_REPO.1,
            n,
            "add() returns the wrong result",
            "Running `sh test.sh` fails: `add 2 3` prints -1 instead of 5. Please fix add() in calc.sh.",
            ISSUE_AUTHOR,
            &["paid-build"],
        )
    };

    // A tampered body, and a body signed with another secret: 401, nothing happens.
    issue(3);
    let body = issues_event(3);
    let signed = paid_github::webhooks::sign(WEBHOOK_SECRET.as_bytes(), &body);
    let mut tampered = body.clone();
    let at = tampered.len() - 3;
    tampered[at] = b'X';
    let status = client()
        .post(format!("{}/webhooks/github", world.api()))
        .header("x-github-event", "issues")
        .header("x-github-delivery", "tampered-1")
        .header("x-hub-signature-256", signed)
        .body(tampered)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    assert_eq!(post_webhook(&world, "issues", &body, "another-secret-0123456789").await, 401);
    let unsigned = client()
        .post(format!("{}/webhooks/github", world.api()))
        .header("x-github-event", "issues")
        .header("x-github-delivery", "unsigned-1")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(unsigned, 401);
    let runs = world.get("/api/v1/runs").await["data"].as_array().cloned().unwrap();
    assert!(runs.is_empty(), "a rejected webhook started something: {runs:#?}");
    assert!(world.log().contains("missing or wrong signature"), "{}", world.log());

    // A signed `issues` event: the project is polled now, not in an hour.
    let sent = Instant::now();
    assert_eq!(post_webhook(&world, "issues", &body, WEBHOOK_SECRET).await, 202);
    let runs = world.wait_runs("a run started by the webhook", Duration::from_secs(20), |r| !r.is_empty()).await;
    assert_eq!(issue_numbers(&runs), vec![3], "{runs:#?}");
    // Verified deliveries reach the poller in order: had a rejected one got
    // through, it would have been acted on before this one.
    let log = world.log();
    let acted: Vec<&str> = log.lines().filter(|l| l.contains("webhook: acting now")).collect();
    assert_eq!(acted.len(), 1, "a rejected webhook was acted on: {acted:#?}");
    eprintln!("webhook delivery to a visible run: {:?} (next poll due in 1 h)", sent.elapsed());
    // The same signed body again, under a fresh delivery id (the id is not
    // signed) or the same one: a replay, acknowledged and not acted on.
    let redelivered = client()
        .post(format!("{}/webhooks/github", world.api()))
        .header("x-github-event", "issues")
        .header("x-github-delivery", "dup-1")
        .header("x-hub-signature-256", paid_github::webhooks::sign(WEBHOOK_SECRET.as_bytes(), &body))
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(redelivered, 200, "the signed body was already accepted");
    let again = client()
        .post(format!("{}/webhooks/github", world.api()))
        .header("x-github-event", "issues")
        .header("x-github-delivery", "dup-1")
        .header("x-hub-signature-256", paid_github::webhooks::sign(WEBHOOK_SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(again, 200, "a redelivery is acknowledged, not acted on twice");

    // A failing check on the run's PR, announced by a signed `check_run`
    // event: the daemon reads the PR's feedback now and queues a follow-up.
    let runs = world
        .wait_runs("the webhook's run to succeed", Duration::from_secs(120), |r| state_of(r) == ["succeeded"])
        .await;
    let prs = world.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1);
    assert_eq!(prs.len(), 1, "{prs:?}");
    world.github.add_check_run(DEMO_REPO.0, DEMO_REPO.1, prs[0].number, "ci/test", "failure", "CHECK-FAILED").unwrap();
    let check = serde_json::to_vec(&serde_json::json!({
        "action": "completed",
        "check_run": {
            "name": "ci/test",
            "completed_at": chrono::Utc::now().to_rfc3339(),
            "pull_requests": [{ "number": prs[0].number }],
        },
        "repository": { "name": DEMO_REPO.1, "owner": { "login": DEMO_REPO.0 } },
        "sender": { "login": "github-actions[bot]" },
    }))
    .unwrap();
    assert_eq!(post_webhook(&world, "check_run", &check, WEBHOOK_SECRET).await, 202);
    // The follow-up run gets its branch when a worker takes it up.
    let all = world
        .wait_runs("a follow-up run on a branch", Duration::from_secs(60), |r| {
            r.len() == 2 && r.iter().all(|run| !run["branch"].is_null())
        })
        .await;
    let follow = all.iter().find(|r| r["id"] != runs[0]["id"]).unwrap();
    assert_eq!(follow["issue_number"], 3);
    assert_eq!(follow["branch"], runs[0]["branch"], "the follow-up works on the PR's branch");

    let log = world.log();
    assert!(log.contains("webhook: acting now"), "{log}");
    assert!(!log.contains(WEBHOOK_SECRET), "the secret never reaches the log");
}

#[test]
fn images_build_works_and_draws_no_bars_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("paid-test/agent:{}", rand_hex());
    let paid = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_paid"));
        c.current_dir(dir.path()).arg("--config").arg(dir.path().join("absent.toml")).args(args);
        bounded(&mut c)
    };
    let no_bars = |out: &Output| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains('\r') && !err.contains('\u{1b}') && !err.contains("steps"), "a bar was drawn: {err:?}");
    };
    // Stdout and stderr are pipes here, not terminals.
    let out = paid(&["--json", "images", "build", "--tag", &tag]);
    no_bars(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert!(out.status.success(), "{v:#}");
    assert_eq!(v["data"]["image"], tag.as_str());
    assert!(v["data"]["steps"].as_u64().unwrap() >= 5, "{v:#}");
    let id = v["data"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"), "{v:#}");
    let inspect = Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &tag]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), id);

    // Text mode: a line on stdout, still no bar on a non-terminal stderr.
    let out = paid(&["images", "build", "--tag", &tag]);
    no_bars(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with(&format!("built {tag} (sha256:")), "{text}");
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_add_clone_makes_the_mirror_without_bars_off_a_terminal() {
    let mut w = World::new(Setup::default()).await;
    w.github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "x", "y", ISSUE_AUTHOR, &[]);
    w.github.add_issue("acme", "tools", 1, "x", "y", ISSUE_AUTHOR, &[]);
    w.start("paid.toml").await;
    let remote = w.remote.display().to_string();
    let out = w.paid(&[
        "--json",
        "project",
        "add",
        "acme/tools",
        "--clone-url",
        &remote,
        "--author",
        ISSUE_AUTHOR,
        "--agent",
        "test-agent",
        "--clone",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\r') && !err.contains('\u{1b}') && !err.contains("objects"), "a bar was drawn: {err:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v:#}");
    let mirror = &v["data"]["mirror"];
    // libgit2's local transport reports no transfer progress: no object count here.
    assert!(mirror["objects"].is_u64() && mirror["seconds"].is_number(), "{v:#}");
    let path = PathBuf::from(mirror["path"].as_str().unwrap());
    assert_eq!(path, w.path("data/workspaces/mirrors/acme/tools.git"));
    let heads = Command::new("git").arg("--git-dir").arg(&path).args(["branch", "-r"]).output().unwrap();
    assert!(String::from_utf8_lossy(&heads.stdout).contains("origin/main"), "{heads:?}");

    // Text mode on a project already cloned: a fetch, and the same line.
    let (ok, _) = w.paid_json(&["project", "remove", "acme/tools"]);
    assert!(ok);
    let out = w.paid(&[
        "project",
        "add",
        "acme/tools",
        "--clone-url",
        &remote,
        "--author",
        ISSUE_AUTHOR,
        "--agent",
        "test-agent",
        "--clone",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&format!("cloned into {}", path.display())), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).trim().is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(w.stop().success());
}

/// POSTs `body` to `/api/v1{path}`; the status and the JSON answer.
async fn api_post(world: &World, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
    let r =
        client().post(format!("{}/api/v1{path}", world.api())).bearer_auth(API_TOKEN).json(&body).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// The one error shape, with this code.
fn assert_error_shape(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v:#}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v:#}");
    assert!(v["error"]["details"].is_object(), "{v:#}");
    assert!(v["meta"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_picked_comparison_opens_the_pr_from_the_picked_candidates_branch() {
    // Each candidate fixes the bug and leaves its model behind, so the
    // branches differ and the PR shows whose branch it is.
    let script = format!("{FIXER_SCRIPT} && echo \"$PAID_MODEL\" > MODEL.txt");
    let mut w = World::new(Setup { agent_script: &script, ..Setup::default() }).await;
    // Not labeled: the run is triggered by hand.
    w.github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "add() returns the wrong result", "Fix add().", ISSUE_AUTHOR, &[]);
    w.start("paid.toml").await;
    let url = format!("{}/{}/{}/issues/1", w.github.base_url(), DEMO_REPO.0, DEMO_REPO.1);

    // Bad comparisons and unknown runs are refused in the one shape.
    let (status, v) =
        api_post(&w, "/runs", serde_json::json!({ "issue_url": url, "compare": { "models": ["solo"] } })).await;
    assert_eq!(status, 422, "{v:#}");
    assert_error_shape(&v, "invalid_input");
    let (status, v) = api_post(
        &w,
        "/runs",
        serde_json::json!({ "issue_url": url, "compare": { "models": ["a", "b"], "rule": "coin-flip" } }),
    )
    .await;
    assert_eq!(status, 422, "{v:#}");
    assert_eq!(v["error"]["details"]["field"], "compare.rule", "{v:#}");
    let unknown = uuid::Uuid::now_v7().to_string();
    let (status, v) = api_post(&w, &format!("/runs/{unknown}/pick"), serde_json::json!({ "candidate": "x" })).await;
    assert_eq!(status, 404, "{v:#}");
    assert_error_shape(&v, "not_found");
    let (ok, v) = w.paid_json(&["runs", "candidates", &unknown]);
    assert!(!ok && v["error"]["code"] == "not_found", "{v:#}");

    // Trigger a human-pick comparison of two scripted models via the CLI;
    // `--wait` returns once the run awaits the choice.
    let out = bounded(w.command("paid.toml").args([
        "--json",
        "run",
        &url,
        "--compare",
        "model-a,model-b",
        "--pick",
        "human",
        "--wait",
    ]));
    let waited: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert!(out.status.success(), "{waited:#}");
    assert_eq!(waited["data"]["run"]["state"], "awaiting_choice", "{waited:#}");
    assert_eq!(waited["data"]["candidates"].as_array().map(Vec::len), Some(2), "{waited:#}");
    let run_id = waited["data"]["run"]["id"].as_str().unwrap().to_string();
    w.wait_runs("the run to await a choice", Duration::from_secs(10), |r| state_of(r) == ["awaiting_choice"]).await;
    assert!(w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).is_empty(), "no PR before the pick");

    // The candidates, side by side.
    let (ok, listed) = w.paid_json(&["runs", "candidates", &run_id]);
    assert!(ok, "{listed:#}");
    assert_eq!(listed["data"]["awaiting_choice"], true, "{listed:#}");
    let candidates = listed["data"]["candidates"].as_array().unwrap();
    let names: Vec<&str> = candidates.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["c1-model-a", "c2-model-b"], "{listed:#}");
    for c in candidates {
        assert_eq!(c["verify_passed"], true, "{c:#}");
        assert!(c["error"].is_null(), "{c:#}");
        assert!(c["iterations"].as_u64().unwrap() >= 1, "{c:#}");
        assert!(c["files_changed"].as_u64().unwrap() >= 2, "calc.sh and MODEL.txt: {c:#}");
    }
    let picked_branch = candidates[1]["worktree"]["branch"].as_str().unwrap().to_string();
    assert_ne!(picked_branch, candidates[0]["worktree"]["branch"].as_str().unwrap());
    let out = w.paid(&["runs", "candidates", &run_id]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("c2-model-b") && table.contains("passed"), "{table}");
    let (ok, shown) = w.paid_json(&["runs", "show", &run_id]);
    assert!(ok && shown["data"]["candidates"].as_array().map(Vec::len) == Some(2), "{shown:#}");

    // An unknown candidate is 422; the run still waits.
    let (status, v) =
        api_post(&w, &format!("/runs/{run_id}/pick"), serde_json::json!({ "candidate": "c9-nope" })).await;
    assert_eq!(status, 422, "{v:#}");
    assert_error_shape(&v, "unknown_candidate");

    // Pick the second by its model through the CLI: its branch becomes the PR.
    let (ok, picked) = w.paid_json(&["runs", "pick", &run_id, "model-b"]);
    assert!(ok, "{picked:#}");
    assert_eq!(picked["data"]["id"], run_id.as_str(), "{picked:#}");
    w.wait_runs("the picked run to succeed", Duration::from_secs(120), |r| state_of(r) == ["succeeded"]).await;
    let prs = w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1);
    assert_eq!(prs.len(), 1, "{prs:?}");
    assert_eq!(prs[0].head, picked_branch, "{prs:?}");
    let model = Command::new("git")
        .arg("--git-dir")
        .arg(&w.remote)
        .args(["show", &format!("{picked_branch}:MODEL.txt")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&model.stdout).trim(), "model-b", "{model:?}");
    let losers = Command::new("git")
        .arg("--git-dir")
        .arg(&w.remote)
        .args(["branch", "--list", candidates[0]["worktree"]["branch"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(losers.stdout.is_empty(), "the loser was pushed: {losers:?}");
    let (ok, shown) = w.paid_json(&["runs", "show", &run_id]);
    assert!(ok && shown["data"]["run"]["branch"] == picked_branch.as_str(), "{shown:#}");

    // A run that is not awaiting a choice: 409, through the API and the CLI.
    let (status, v) =
        api_post(&w, &format!("/runs/{run_id}/pick"), serde_json::json!({ "candidate": "model-a" })).await;
    assert_eq!(status, 409, "{v:#}");
    assert_error_shape(&v, "not_awaiting_choice");
    assert_eq!(v["error"]["details"]["state"], "succeeded", "{v:#}");
    let (ok, v) = w.paid_json(&["runs", "pick", &run_id, "model-a"]);
    assert!(!ok && v["error"]["code"] == "not_awaiting_choice", "{v:#}");

    // A run awaiting a choice can be cancelled: every candidate is cleaned up.
    // (Issue 50: PRs share their numbers with issues on the fake.)
    w.github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 50, "subtract too", "Fix add().", ISSUE_AUTHOR, &[]);
    let url2 = format!("{}/{}/{}/issues/50", w.github.base_url(), DEMO_REPO.0, DEMO_REPO.1);
    let (ok, queued) = w.paid_json(&["run", &url2, "--compare", "model-a,model-b", "--pick", "human"]);
    assert!(ok, "{queued:#}");
    let second = queued["data"]["id"].as_str().unwrap().to_string();
    w.wait_runs("the second run to await a choice", Duration::from_secs(120), |r| {
        r.iter().any(|r| r["id"] == second.as_str() && r["state"] == "awaiting_choice")
    })
    .await;
    let out = bounded(w.command("paid.toml").args(["--json", "runs", "cancel", &second, "--wait"]));
    let cancelled: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(cancelled["data"]["run"]["state"], "cancelled", "{cancelled:#}");
    assert_eq!(w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1).len(), 1);

    assert!(w.stop().success());
    assert!(w.sandboxes().is_empty(), "sandboxes left: {:?}", w.sandboxes());
    assert!(w.worktrees().is_empty(), "worktrees left: {:?}", w.worktrees());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_compare_config_makes_polled_runs_comparisons_won_by_the_ranking() {
    // Both candidates pass; model-a also writes 20 needless lines, so the
    // default ranking (… cost, iterations, lines changed …) picks model-b.
    let script = format!(
        "{FIXER_SCRIPT} && echo \"$PAID_MODEL\" > MODEL.txt && if [ \"$PAID_MODEL\" = model-a ]; then seq 1 20 > EXTRA.txt; fi"
    );
    let extra = "[projects.compare]\nmodels = [\"model-a\", \"model-b\"]\nrule = \"best\"\n";
    let mut w = World::new(Setup { agent_script: &script, extra }).await;
    w.start("paid.toml").await;

    // The poller picks the labeled issue up as a comparison run.
    let runs =
        w.wait_runs("the comparison to succeed", Duration::from_secs(180), |r| state_of(r) == ["succeeded"]).await;
    let run_id = runs[0]["id"].as_str().unwrap().to_string();
    let (ok, listed) = w.paid_json(&["runs", "candidates", &run_id]);
    assert!(ok, "{listed:#}");
    assert_eq!(listed["data"]["awaiting_choice"], false);
    let candidates = listed["data"]["candidates"].as_array().unwrap();
    let names: Vec<&str> = candidates.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["c1-model-a", "c2-model-b"], "{listed:#}");
    let lines: Vec<u64> = candidates.iter().map(|c| c["lines_changed"].as_u64().unwrap()).collect();
    assert!(lines[0] > lines[1], "{lines:?}");
    let prs = w.github.pull_requests(DEMO_REPO.0, DEMO_REPO.1);
    assert_eq!(prs.len(), 1, "{prs:?}");
    assert_eq!(prs[0].head, candidates[1]["worktree"]["branch"].as_str().unwrap(), "{prs:?}");
    assert!(prs[0].body.contains("c2-model-b"), "the PR carries the table: {}", prs[0].body);
    // Picking after the fact is a conflict.
    let (ok, v) = w.paid_json(&["runs", "pick", &run_id, "model-a"]);
    assert!(!ok && v["error"]["code"] == "not_awaiting_choice", "{v:#}");
    assert!(w.stop().success());
}
