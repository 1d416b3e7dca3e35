//! `paid serve` on PostgreSQL: tokens set with `paid token set` are stored
//! encrypted in the database (ciphertext only, in the daemon's own schema),
//! read back with the master key, and decrypted by the daemon when it starts
//! again; the learning API serves prompts from the same schema. The real binary, the fake GitHub server, Docker (the daemon checks
//! it at start) and PostgreSQL (`PAID_TEST_DATABASE_URL`, else
//! `scripts/provision-postgres`) are required: this test fails, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paid_core::ports::learning::LearningStore;
use paid_core::testing::learning;
use paid_core::{Clock, SecretStore, SystemClock};
use paid_examples::demo::{DEMO_REPO, create_sample_remote_in};
use paid_github::fake::FakeGitHub;
use paid_server::crypto::{Keyring, MasterKey};
use paid_server::vault::Vault;
use paid_store_postgres::{PgStore, PgStoreOptions, testing};
use secrecy::ExposeSecret;
use serde_json::Value;

const API_TOKEN: &str = "test-api-token-0123456789abcdef";
const GH: &str = "ghp_PGsecretVALUE0123456789abcdef";
const OPENAI: &str = "sk-test-PGopenaiSECRET-987654321";

/// A daemon on a fresh PostgreSQL schema, its directory and its forge.
struct World {
    dir: tempfile::TempDir,
    port: u16,
    schema: String,
    daemon: Option<Child>,
    _github: FakeGitHub,
}

impl World {
    async fn new() -> Self {
        testing::sweep_stale_schemas().await;
        let dir = tempfile::tempdir().unwrap();
        let remote = create_sample_remote_in(dir.path()).unwrap();
        let github = FakeGitHub::start().await.unwrap();
        // No run is wanted: the issue carries no trigger label.
        github.add_issue(DEMO_REPO.0, DEMO_REPO.1, 1, "x", "y", "demo-user", &[]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let schema = testing::fresh_schema_name();
        std::fs::write(dir.path().join("api-token"), API_TOKEN).unwrap();
        paid_server::vault::write_new_key(&dir.path().join("master.key")).unwrap();
        let config = format!(
            r#"
data_dir = "data"
worker_id = "pg-test-worker"
concurrency = 1

[store]
url = "{url}"
schema = "{schema}"

[api]
bind = "127.0.0.1:{port}"
token_file = "api-token"

[keys]
master_key_file = "master.key"

[github]
api_url = "{github}"
token_env = "PAID_TEST_GITHUB_TOKEN"

[docker]
label_prefix = "pg{short}"

[log]
format = "json"
level = "info"

[agents.test-agent]
script = "true"

[[projects]]
repo = "{owner}/{name}"
clone_url = "{remote}"
allowed_authors = ["demo-user"]
agent = "test-agent"
"#,
            url = testing::database_url(),
            github = github.base_url(),
            short = &schema[schema.len() - 12..],
            owner = DEMO_REPO.0,
            name = DEMO_REPO.1,
            remote = remote.display(),
        );
        std::fs::write(dir.path().join("paid.toml"), config).unwrap();
        Self { dir, port, schema, daemon: None, _github: github }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_paid"));
        for (k, _) in std::env::vars() {
            if k.starts_with("PAID_") {
                c.env_remove(k);
            }
        }
        c.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.path("paid.toml"))
            .env("PAID_TEST_GITHUB_TOKEN", "gh-test-token");
        c
    }

    /// Runs `paid --json ARGS` (stdin from `input`), bounded, and parses it.
    fn paid_json(&self, args: &[&str], input: &[u8]) -> Value {
        let mut cmd = self.command();
        cmd.arg("--json").args(args);
        let out = bounded(&mut cmd, input);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "paid {args:?}: stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(out.status.success(), "paid {args:?} failed: {v:#}\nlog:\n{}", self.log());
        v
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// Starts `paid serve` and waits (at most 60 s) until /health answers.
    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path("daemon.log")).unwrap();
        let child = self.command().arg("serve").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.daemon = Some(child);
        let http = paid_api::client::http_client().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("paid serve exited with {status}; log:\n{}", self.log());
            }
            let health = http.get(format!("http://127.0.0.1:{}/health", self.port)).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "paid serve did not answer /health in 60 s; log:\n{}", self.log());
            // not an assertion: the poll interval of a deadline-bounded wait
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then waits (at most 60 s) for a clean exit.
    fn stop(&mut self) {
        let mut child = self.daemon.take().expect("a running daemon");
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "paid serve exited with {status}; log:\n{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "paid serve did not stop after SIGTERM; log:\n{}", self.log());
            // not an assertion: the poll interval of a deadline-bounded wait
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on the API, which must answer 2xx with JSON.
    async fn get(&self, path: &str) -> Value {
        let http = paid_api::client::http_client().unwrap();
        let r = http.get(format!("http://127.0.0.1:{}{path}", self.port)).bearer_auth(API_TOKEN).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// A store on the daemon's schema, to look at the tables directly.
    async fn store(&self) -> PgStore {
        PgStore::connect_with(PgStoreOptions::new(testing::database_url()).schema(&self.schema).max_connections(2))
            .await
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command that must end by itself within 60 s, feeding it `input`.
fn bounded(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every row of every table in `schema`, as text (`bytea` shows as hex).
async fn dump(store: &PgStore, schema: &str) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name",
    )
    .bind(schema)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "secrets"), "no secrets table in {schema}: {tables:?}");
    let mut text = String::new();
    for table in tables {
        // Both names are plain lowercase identifiers.
        let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {schema}.{table} t");
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(store.pool()).await.unwrap();
        text.push_str(&rows);
        text.push('\n');
    }
    text
}

fn vault(store: &PgStore, key: &Path) -> Vault {
    let keyring = Keyring::new(MasterKey::from_file(key).unwrap(), Vec::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Vault::new(Some(Arc::new(store.clone()) as Arc<dyn SecretStore>), "", Some(keyring), clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_tokens_are_stored_as_ciphertext_only_and_prompts_are_served() {
    let mut w = World::new().await;
    w.start().await;

    std::fs::write(w.path("gh-token"), format!("{GH}\n")).unwrap();
    let set = w.paid_json(&["token", "set", "github", "--from-file", w.path("gh-token").to_str().unwrap()], b"");
    assert_eq!(set["data"]["validation"]["login"], "paid-bot", "validated against the forge: {set:#}");
    std::fs::remove_file(w.path("gh-token")).unwrap();
    w.paid_json(&["token", "set", "provider.openai"], OPENAI.as_bytes());

    let list = w.paid_json(&["token", "list"], b"");
    let key_id = list["data"]["master_key_id"].as_str().unwrap().to_string();
    let listed: Vec<(&str, &str)> = list["data"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["key_id"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, vec![("github", key_id.as_str()), ("provider.openai", key_id.as_str())], "{list:#}");
    assert!(!list.to_string().contains(GH) && !list.to_string().contains(OPENAI), "{list:#}");

    // The table holds ciphertext under the master key's id, and no row of
    // any table in the daemon's schema holds a plaintext.
    let store = w.store().await;
    let rows: Vec<(String, String, Vec<u8>, i64)> =
        sqlx::query_as("SELECT name, key_id, ciphertext, version FROM secrets ORDER BY name")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for ((name, stored_key, ciphertext, version), plain) in rows.iter().zip([GH, OPENAI]) {
        assert_eq!((stored_key.as_str(), *version), (key_id.as_str(), 1), "{name}");
        assert!(ciphertext.len() > plain.len(), "{name}: {} bytes of ciphertext", ciphertext.len());
        assert!(!contains(ciphertext, plain.as_bytes()), "{name}: the plaintext is in the ciphertext");
    }
    let all = dump(&store, &w.schema).await;
    assert!(all.contains(&hex(&rows[0].2)), "the dump covers the secrets table: {all}");
    for plain in [GH, OPENAI] {
        assert!(!all.contains(plain) && !all.contains(&hex(plain.as_bytes())), "{plain} readable in the database");
    }
    assert!(!w.log().contains(GH) && !w.log().contains(OPENAI), "a secret reached the log");

    // Read back: the master key decrypts them; another key does not.
    let read = vault(&store, &w.path("master.key"));
    assert_eq!(read.get("github").await.unwrap().unwrap().expose_secret(), GH);
    assert_eq!(read.get("provider.openai").await.unwrap().unwrap().expose_secret(), OPENAI);
    paid_server::vault::write_new_key(&w.path("other.key")).unwrap();
    assert!(vault(&store, &w.path("other.key")).get("github").await.is_err(), "decrypted with the wrong key");

    // The learning API reads the same schema: a prompt written here is served.
    store.put_prompt(&learning::prompt("task", 0)).await.unwrap();
    let v1 = learning::version("task", 1, None);
    store.create_version(&v1).await.unwrap();
    let shown = w.get("/api/v1/prompts/task").await;
    assert_eq!(shown["data"]["prompt"]["slug"], "task", "{shown:#}");
    assert_eq!(shown["data"]["versions"][0]["template"], v1.template.as_str(), "{shown:#}");
    let experiments = w.get("/api/v1/experiments").await;
    assert_eq!(experiments["data"], serde_json::json!([]), "{experiments:#}");

    // The daemon, started again, decrypts every stored secret before serving.
    w.stop();
    w.start().await;
    assert!(w.log().contains("stored secrets decrypt with the configured key"), "{}", w.log());
    w.stop();

    store.drop_schema().await.unwrap();
}
