//! `paid.toml`: the daemon's configuration, with environment overrides.
//!
//! [`Config::load`] reads the file, applies the `PAID_…` environment
//! variables listed in [`ENV_OVERRIDES`], and checks everything before the
//! daemon starts anything. Every rejection is a [`ConfigError`] naming the
//! file, the key and the reason.
//!
//! Secrets are never inline: a forge token or provider key is named by the
//! environment variable that holds it (`token_env`, `key_env`) or by a file
//! (`token_file`, `key_file`), or stored encrypted in the database with
//! `paid token set`. An inline `token = "…"` is rejected.

use crate::compare::ToSpec as _;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paid_core::{ModelCandidate, RepoRef};
use paid_runtime_docker::DockerConfig;
use serde::Deserialize;

/// A rejected configuration: which file, which key, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration in {}: {key}: {reason}", file.display())]
pub struct ConfigError {
    /// The file (or `<environment>` for an environment variable).
    pub file: PathBuf,
    /// The key, dotted (`projects[0].repo`), or the environment variable.
    pub key: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl ConfigError {
    fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), key: key.into(), reason: reason.into() }
    }
}

/// The shortest poll interval (DESIGN §7): GitHub's rate limit is shared
/// with everything else the token does.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// How each environment variable maps onto a key of `paid.toml`.
///
/// Lists are comma-separated. `PAID_POLL_INTERVAL_MS` is for tests only: it
/// allows intervals below the 60 s minimum and wins over
/// `poll_interval_secs`.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("PAID_DATA_DIR", "data_dir"),
    ("PAID_POLL_INTERVAL_SECS", "poll_interval_secs"),
    ("PAID_WORKER_ID", "worker_id"),
    ("PAID_CONCURRENCY", "concurrency"),
    ("PAID_SHUTDOWN_GRACE_SECS", "shutdown_grace_secs"),
    ("PAID_STORE_URL", "store.url"),
    ("PAID_STORE_SCHEMA", "store.schema"),
    ("PAID_API_BIND", "api.bind"),
    ("PAID_API_TOKEN_ENV", "api.token_env"),
    ("PAID_API_TOKEN_FILE", "api.token_file"),
    ("PAID_API_MAX_BODY_BYTES", "api.max_body_bytes"),
    ("PAID_MASTER_KEY_ENV", "keys.master_key_env"),
    ("PAID_MASTER_KEY_FILE", "keys.master_key_file"),
    ("PAID_PREVIOUS_KEY_FILES", "keys.previous_key_files"),
    ("PAID_GITHUB_API_URL", "github.api_url"),
    ("PAID_GITHUB_TOKEN_ENV", "github.token_env"),
    ("PAID_GITHUB_TOKEN_FILE", "github.token_file"),
    ("PAID_GITHUB_WEBHOOK_SECRET_ENV", "github.webhook_secret_env"),
    ("PAID_GITHUB_WEBHOOK_SECRET_FILE", "github.webhook_secret_file"),
    ("PAID_DOCKER_ENDPOINT", "docker.endpoint"),
    ("PAID_DOCKER_ENDPOINTS", "docker.endpoints"),
    ("PAID_DOCKER_LABEL_PREFIX", "docker.label_prefix"),
    ("PAID_PROXY_BIND", "proxy.bind"),
    ("PAID_ENGINE_LEASE_SECS", "engine.lease_secs"),
    ("PAID_ENGINE_HEARTBEAT_MS", "engine.heartbeat_ms"),
    ("PAID_ENGINE_MAX_ITERATIONS", "engine.max_iterations"),
    ("PAID_ENGINE_AGENT_TIMEOUT_SECS", "engine.agent_timeout_secs"),
    ("PAID_REAPER_INTERVAL_SECS", "reaper.interval_secs"),
    ("PAID_REAPER_WORKTREE_MAX_AGE_SECS", "reaper.worktree_max_age_secs"),
    ("PAID_REAPER_UNKNOWN_SANDBOX_MAX_AGE_SECS", "reaper.unknown_sandbox_max_age_secs"),
    ("PAID_DISK_PATH", "disk.path"),
    ("PAID_DISK_INTERVAL_SECS", "disk.interval_secs"),
    ("PAID_DISK_WARNING_PERCENT", "disk.warning_percent"),
    ("PAID_DISK_CRITICAL_PERCENT", "disk.critical_percent"),
    ("PAID_DISK_EMERGENCY_PERCENT", "disk.emergency_percent"),
    ("PAID_DISK_LOG_RETENTION_DAYS", "disk.log_retention_days"),
    ("PAID_LOG_FORMAT", "log.format"),
    ("PAID_LOG_LEVEL", "log.level"),
];

/// The test-only override of the poll interval, in milliseconds.
pub const TEST_POLL_INTERVAL_ENV: &str = "PAID_POLL_INTERVAL_MS";

/// Keys that would hold a secret inline, and are refused.
const INLINE_SECRET_KEYS: &[&str] = &["token", "key", "api_key", "secret", "password", "master_key", "webhook_secret"];

/// The whole configuration, as loaded and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Where mirrors, worktrees and the default database live.
    pub data_dir: PathBuf,
    /// How often projects are polled.
    pub poll_interval: Duration,
    /// This daemon's lease owner name.
    pub worker_id: String,
    /// Runs driven at once.
    pub concurrency: usize,
    /// How long SIGTERM waits for current steps before exiting anyway.
    pub shutdown_grace: Duration,
    /// The store.
    pub store: StoreUrl,
    /// The PostgreSQL schema the store's tables live in (`store.schema`,
    /// default `public`), so several daemons can share one database.
    pub store_schema: Option<String>,
    /// The HTTP API.
    pub api: ApiConfig,
    /// The master key for secrets at rest.
    pub keys: KeysConfig,
    /// GitHub.
    pub github: GitHubSettings,
    /// The Docker runtime (passed to `paid_runtime_docker`).
    pub docker: DockerConfig,
    /// The metering proxy.
    pub proxy: ProxyConfig,
    /// Provider keys, by provider name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Engine settings.
    pub engine: EngineSettings,
    /// Agents declared here, by kind.
    pub agents: BTreeMap<String, AgentSpec>,
    /// The orphan sweeper.
    pub reaper: ReaperSettings,
    /// The disk guard.
    pub disk: DiskSettings,
    /// Logging.
    pub log: LogSettings,
    /// Projects declared here.
    pub projects: Vec<ProjectSpec>,
}

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            // Never print the password.
            StoreUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if at > s => write!(f, "{}://[redacted]{}", &url[..s], &url[at..]),
                _ => f.write_str(url),
            },
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Listen address.
    pub bind: SocketAddr,
    /// Environment variable holding the bearer token.
    pub token_env: String,
    /// File holding the bearer token (wins over `token_env`).
    pub token_file: Option<PathBuf>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

/// `[keys]`.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// Environment variable holding the current master key.
    pub master_key_env: String,
    /// File holding the current master key (wins over the variable).
    pub master_key_file: Option<PathBuf>,
    /// Older keys, still accepted for reading during a rotation.
    pub previous_key_files: Vec<PathBuf>,
}

/// `[github]`.
#[derive(Debug, Clone)]
pub struct GitHubSettings {
    /// API base URL.
    pub api_url: String,
    /// Environment variable holding the token.
    pub token_env: String,
    /// Whether `token_env` was set explicitly (then it must resolve).
    pub token_env_explicit: bool,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the webhook secret
    /// (`github.webhook_secret_env`). With it (or the file), `paid serve`
    /// takes GitHub webhooks at `POST /webhooks/github`.
    pub webhook_secret_env: Option<String>,
    /// File holding the webhook secret (`github.webhook_secret_file`; wins
    /// over the variable).
    pub webhook_secret_file: Option<PathBuf>,
}

/// `[proxy]`: the secrets + metering proxy of `paid-llm`, started when at
/// least one provider is configured.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where the proxy listens.
    pub bind: SocketAddr,
    /// How sandboxes reach it (default `http://<bind>`; with Docker's
    /// default bridge, use the host's bridge address and bind to it).
    pub sandbox_url: String,
}

/// `[providers.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Wire format: `anthropic`, `openai`, `gemini` or `compatible`
    /// (default: the provider's name).
    pub kind: String,
    /// Environment variable holding the key.
    pub key_env: Option<String>,
    /// File holding the key.
    pub key_file: Option<PathBuf>,
    /// API base URL override.
    pub base_url: Option<String>,
}

/// `[engine]`.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Lease length.
    pub lease: Duration,
    /// Heartbeat interval; also bounds how fast a cancel takes effect.
    pub heartbeat: Duration,
    /// Agent ⇄ verify iterations.
    pub max_iterations: u32,
    /// One agent iteration's time limit.
    pub agent_timeout: Duration,
    /// Models the selector may choose (the first is the default).
    pub models: Vec<ModelCandidate>,
    /// Commit author name.
    pub author_name: String,
    /// Commit author email.
    pub author_email: String,
}

/// `[agents.<kind>]`.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentSpec {
    /// `script = "…"`: a shell command run in the sandbox.
    Command {
        /// The script.
        script: String,
        /// Extra environment (never secrets).
        env: BTreeMap<String, String>,
    },
    /// `command = "…"` and the rest of a `paid_agents::PluginConfig`: a CLI plugin.
    Plugin(Box<paid_agents::PluginConfig>),
}

/// `[reaper]`.
#[derive(Debug, Clone)]
pub struct ReaperSettings {
    /// How often it runs.
    pub interval: Duration,
    /// Worktrees of no active run older than this are removed.
    pub worktree_max_age: Duration,
    /// Sandboxes whose run this store does not know are removed after this.
    pub unknown_sandbox_max_age: Duration,
}

/// `[disk]`.
#[derive(Debug, Clone)]
pub struct DiskSettings {
    /// The filesystem measured (default: `data_dir`).
    pub path: PathBuf,
    /// How often it is measured.
    pub interval: Duration,
    /// Routine cleanup from here (percent used).
    pub warning_percent: f64,
    /// Aggressive cleanup from here.
    pub critical_percent: f64,
    /// No new runs are claimed from here.
    pub emergency_percent: f64,
    /// Logs of runs that ended longer ago than this are deleted (default
    /// 30 days); shorter at the critical and emergency levels.
    pub log_retention: Duration,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `json` or `text`.
    pub json: bool,
    /// A `tracing` filter, e.g. `info,paid_core=debug`.
    pub level: String,
}

/// `[[projects]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectSpec {
    /// `owner/name`.
    pub repo: RepoRef,
    /// Clone URL (default `https://github.com/owner/name.git`).
    pub clone_url: String,
    /// Target branch.
    pub default_branch: String,
    /// Trigger labels.
    pub trigger_labels: Vec<String>,
    /// Trusted authors.
    pub allowed_authors: Vec<String>,
    /// Verify commands.
    pub verify: Vec<String>,
    /// Forbidden paths this project allows.
    pub allowed_paths: Vec<String>,
    /// Sandbox image.
    pub image: String,
    /// Agent kind.
    pub agent: String,
    /// Preferred model, if any (else the engine default).
    pub model: Option<String>,
    /// Per-run budget in USD.
    pub budget_usd_per_run: Option<f64>,
    /// Monthly budget in USD: no new runs once spent.
    pub budget_usd_per_month: Option<f64>,
    /// Runs at once.
    pub max_concurrent_runs: u32,
    /// `[projects.compare]`: every run of the project compares these
    /// models (wired with `EngineBuilder::compare`).
    pub compare: Option<paid_core::engine::CompareSpec>,
}

// ---- the file as written -------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    poll_interval_secs: Option<u64>,
    worker_id: Option<String>,
    concurrency: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    store: RawStore,
    api: RawApi,
    keys: RawKeys,
    github: RawGitHub,
    docker: Option<toml::Value>,
    proxy: RawProxy,
    providers: BTreeMap<String, RawProvider>,
    engine: RawEngine,
    agents: BTreeMap<String, toml::Value>,
    reaper: RawReaper,
    disk: RawDisk,
    log: RawLog,
    projects: Vec<RawProject>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    schema: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawApi {
    bind: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawKeys {
    master_key_env: Option<String>,
    master_key_file: Option<PathBuf>,
    previous_key_files: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawGitHub {
    api_url: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    webhook_secret_env: Option<String>,
    webhook_secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawProxy {
    bind: Option<String>,
    sandbox_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawProvider {
    kind: Option<String>,
    key_env: Option<String>,
    key_file: Option<PathBuf>,
    base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawEngine {
    lease_secs: Option<u64>,
    heartbeat_ms: Option<u64>,
    max_iterations: Option<u32>,
    agent_timeout_secs: Option<u64>,
    author_name: Option<String>,
    author_email: Option<String>,
    models: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    provider: String,
    model: String,
    #[serde(default)]
    context_window: Option<u64>,
    #[serde(default)]
    usd_per_mtok: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawReaper {
    interval_secs: Option<u64>,
    worktree_max_age_secs: Option<u64>,
    unknown_sandbox_max_age_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDisk {
    path: Option<PathBuf>,
    interval_secs: Option<u64>,
    warning_percent: Option<f64>,
    critical_percent: Option<f64>,
    emergency_percent: Option<f64>,
    log_retention_days: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawProject {
    repo: String,
    clone_url: Option<String>,
    default_branch: Option<String>,
    trigger_labels: Option<Vec<String>>,
    allowed_authors: Vec<String>,
    verify: Vec<String>,
    allowed_paths: Vec<String>,
    image: Option<String>,
    agent: Option<String>,
    model: Option<String>,
    budget_usd_per_run: Option<f64>,
    budget_usd_per_month: Option<f64>,
    max_concurrent_runs: Option<u32>,
    compare: Option<crate::compare::CompareRequest>,
}

impl Config {
    /// Reads `file`, applies the environment (`std::env::vars`) and checks
    /// everything.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("PAID_")).collect();
        Self::load_with_env(file, &env)
    }

    /// [`Config::load`] with an explicit environment, for tests.
    pub fn load_with_env(file: &Path, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigError::new(
                file,
                "(file)",
                format!("cannot read it: {e}; create one with `paid init --config {}`", file.display()),
            )
        })?;
        Self::parse(file, &text, env)
    }

    /// Parses `text` as if read from `file`.
    pub fn parse(file: &Path, text: &str, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
        reject_inline_secrets(file, &value)?;
        apply_env(file, &mut value, env)?;
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::new(file, if key == "." { "(top level)".to_string() } else { key }, e.into_inner().message())
        })?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        build(file, &base, raw, env)
    }
}

fn syntax_error(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let location = e
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {col}")
        })
        .unwrap_or_else(|| "(syntax)".into());
    ConfigError::new(file, location, format!("not valid TOML: {}", e.message().trim()))
}

fn reject_inline_secrets(file: &Path, table: &toml::Table) -> Result<(), ConfigError> {
    let check = |section: &str, t: &toml::Table| -> Result<(), ConfigError> {
        for k in INLINE_SECRET_KEYS {
            if t.contains_key(*k) {
                let (env_key, file_key) = if section.starts_with("providers") {
                    ("key_env", "key_file")
                } else if *k == "webhook_secret" {
                    ("webhook_secret_env", "webhook_secret_file")
                } else {
                    ("token_env", "token_file")
                };
                return Err(ConfigError::new(
                    file,
                    format!("{section}.{k}"),
                    format!(
                        "secrets are never written inline; name the environment variable that holds it \
                         ({section}.{env_key}), a file ({section}.{file_key}), or store it encrypted with \
                         `paid token set`"
                    ),
                ));
            }
        }
        Ok(())
    };
    for section in ["github", "api", "keys", "proxy", "store"] {
        if let Some(toml::Value::Table(t)) = table.get(section) {
            check(section, t)?;
        }
    }
    if let Some(toml::Value::Table(providers)) = table.get("providers") {
        for (name, v) in providers {
            if let toml::Value::Table(t) = v {
                check(&format!("providers.{name}"), t)?;
            }
        }
    }
    for k in INLINE_SECRET_KEYS {
        if table.contains_key(*k) {
            return Err(ConfigError::new(
                file,
                *k,
                "secrets are never written inline; see `paid init` for the options",
            ));
        }
    }
    Ok(())
}

/// Sets `key` (dotted) in `table` from the environment variable's text,
/// typed like the key's schema expects.
fn apply_env(file: &Path, table: &mut toml::Table, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (var, key) in ENV_OVERRIDES {
        let Some(text) = env.get(*var) else { continue };
        let bad = |reason: String| ConfigError::new(Path::new("<environment>"), *var, reason);
        let value =
            env_value(key, text).map_err(|r| bad(format!("{r} (it overrides `{key}` of {})", file.display())))?;
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        let mut t = &mut *table;
        for p in parts {
            let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = match entry {
                toml::Value::Table(inner) => inner,
                _ => return Err(bad(format!("`{p}` in {} is not a table", file.display()))),
            };
        }
        t.insert(last.to_string(), value);
    }
    Ok(())
}

fn env_value(key: &str, text: &str) -> Result<toml::Value, String> {
    let text = text.trim();
    let int = || text.parse::<i64>().map(toml::Value::Integer).map_err(|_| format!("{text:?} is not a whole number"));
    let float = || text.parse::<f64>().map(toml::Value::Float).map_err(|_| format!("{text:?} is not a number"));
    match key {
        "keys.previous_key_files" | "docker.endpoints" => Ok(toml::Value::Array(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| toml::Value::String(s.into())).collect(),
        )),
        k if k.ends_with("_percent") => float(),
        k if k.ends_with("_secs")
            || k.ends_with("_ms")
            || k.ends_with("_bytes")
            || k.ends_with("concurrency")
            || k.ends_with("max_iterations") =>
        {
            int()
        }
        _ => Ok(toml::Value::String(text.to_string())),
    }
}

fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

fn secs(v: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(v.unwrap_or(default))
}

fn build(file: &Path, base: &Path, raw: RawConfig, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let err = |key: &str, reason: String| ConfigError::new(file, key, reason);
    let data_dir = resolve(base, raw.data_dir.unwrap_or_else(|| PathBuf::from("paid-data")));

    let poll_interval = match env.get(TEST_POLL_INTERVAL_ENV) {
        Some(ms) => Duration::from_millis(ms.trim().parse().map_err(|_| {
            ConfigError::new(
                Path::new("<environment>"),
                TEST_POLL_INTERVAL_ENV,
                format!("{ms:?} is not a whole number of milliseconds"),
            )
        })?),
        None => {
            let secs = raw.poll_interval_secs.unwrap_or(60);
            if Duration::from_secs(secs) < MIN_POLL_INTERVAL {
                return Err(err(
                    "poll_interval_secs",
                    format!(
                        "{secs} is below the minimum of {} s (GitHub's rate limit is shared with everything the \
                         token does); {TEST_POLL_INTERVAL_ENV} exists for tests only",
                        MIN_POLL_INTERVAL.as_secs()
                    ),
                ));
            }
            Duration::from_secs(secs)
        }
    };

    let worker_id = raw.worker_id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        if host.is_empty() {
            format!("paid-{}", std::process::id())
        } else {
            format!("paid-{host}-{}", std::process::id())
        }
    });
    if worker_id.trim().is_empty() {
        return Err(err("worker_id", "must not be empty".into()));
    }
    let concurrency = raw.concurrency.unwrap_or(2);
    if concurrency == 0 || concurrency > 64 {
        return Err(err("concurrency", format!("{concurrency} is out of range; use 1 to 64")));
    }

    let store = match raw.store.url.as_deref() {
        None => StoreUrl::Sqlite(data_dir.join("paid.db")),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            StoreUrl::Postgres(url.into())
        }
        Some(url) if url.contains("://") && !url.starts_with("sqlite://") => {
            return Err(err(
                "store.url",
                format!("unsupported scheme in {url:?}; use a SQLite path (or sqlite://PATH) or postgres://…"),
            ));
        }
        Some(url) => {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            if path.trim().is_empty() {
                return Err(err("store.url", "the SQLite path is empty".into()));
            }
            StoreUrl::Sqlite(resolve(base, PathBuf::from(path)))
        }
    };
    if raw.store.schema.is_some() && matches!(store, StoreUrl::Sqlite(_)) {
        return Err(err(
            "store.schema",
            "a schema applies to a PostgreSQL store only (store.url = \"postgres://…\")".into(),
        ));
    }

    let parse_addr = |key: &str, s: &str| -> Result<SocketAddr, ConfigError> {
        s.parse().map_err(|e| err(key, format!("{s:?} is not an address like 127.0.0.1:8700: {e}")))
    };
    let api = ApiConfig {
        bind: parse_addr("api.bind", raw.api.bind.as_deref().unwrap_or("127.0.0.1:8700"))?,
        token_env: raw.api.token_env.unwrap_or_else(|| "PAID_API_TOKEN".into()),
        token_file: raw.api.token_file.map(|p| resolve(base, p)),
        max_body_bytes: raw.api.max_body_bytes.unwrap_or(64 * 1024),
    };
    if !env_name_ok(&api.token_env) {
        return Err(err("api.token_env", format!("{:?} is not an environment variable name", api.token_env)));
    }
    if api.max_body_bytes < 1024 {
        return Err(err("api.max_body_bytes", "must be at least 1024".into()));
    }

    let keys = KeysConfig {
        master_key_env: raw.keys.master_key_env.unwrap_or_else(|| "PAID_MASTER_KEY".into()),
        master_key_file: raw.keys.master_key_file.map(|p| resolve(base, p)),
        previous_key_files: raw.keys.previous_key_files.into_iter().map(|p| resolve(base, p)).collect(),
    };
    if !env_name_ok(&keys.master_key_env) {
        return Err(err(
            "keys.master_key_env",
            format!("{:?} is not an environment variable name", keys.master_key_env),
        ));
    }

    let github = GitHubSettings {
        api_url: raw
            .github
            .api_url
            .unwrap_or_else(|| paid_github::DEFAULT_BASE_URI.into())
            .trim_end_matches('/')
            .to_string(),
        token_env_explicit: raw.github.token_env.is_some(),
        token_env: raw.github.token_env.unwrap_or_else(|| "GITHUB_TOKEN".into()),
        token_file: raw.github.token_file.map(|p| resolve(base, p)),
        webhook_secret_env: raw.github.webhook_secret_env,
        webhook_secret_file: raw.github.webhook_secret_file.map(|p| resolve(base, p)),
    };
    if let Some(name) = &github.webhook_secret_env
        && !env_name_ok(name)
    {
        return Err(err("github.webhook_secret_env", format!("{name:?} is not an environment variable name")));
    }
    if !(github.api_url.starts_with("https://") || github.api_url.starts_with("http://")) {
        return Err(err("github.api_url", format!("{:?} is not an http(s) URL", github.api_url)));
    }
    if !env_name_ok(&github.token_env) {
        return Err(err("github.token_env", format!("{:?} is not an environment variable name", github.token_env)));
    }

    let docker: DockerConfig = match raw.docker {
        None => DockerConfig::default(),
        Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." { "docker".to_string() } else { format!("docker.{path}") };
            err(&key, e.into_inner().message().to_string())
        })?,
    };

    let proxy_bind = parse_addr("proxy.bind", raw.proxy.bind.as_deref().unwrap_or("127.0.0.1:8701"))?;
    let proxy = ProxyConfig {
        bind: proxy_bind,
        sandbox_url: raw
            .proxy
            .sandbox_url
            .unwrap_or_else(|| format!("http://{proxy_bind}"))
            .trim_end_matches('/')
            .to_string(),
    };

    let mut providers = BTreeMap::new();
    for (name, p) in raw.providers {
        let key = format!("providers.{name}");
        if let Some(v) = &p.key_env
            && !env_name_ok(v)
        {
            return Err(err(&format!("{key}.key_env"), format!("{v:?} is not an environment variable name")));
        }
        let kind = p.kind.unwrap_or_else(|| name.clone());
        if !["anthropic", "openai", "gemini", "compatible"].contains(&kind.as_str()) {
            return Err(err(
                &format!("{key}.kind"),
                format!("{kind:?} is not a provider kind (anthropic, openai, gemini, compatible)"),
            ));
        }
        if kind == "compatible" && p.base_url.is_none() {
            return Err(err(&format!("{key}.base_url"), "an OpenAI-compatible provider needs its base_url".into()));
        }
        providers.insert(
            name,
            ProviderConfig {
                kind,
                key_env: p.key_env,
                key_file: p.key_file.map(|f| resolve(base, f)),
                base_url: p.base_url,
            },
        );
    }

    let engine = EngineSettings {
        lease: secs(raw.engine.lease_secs, 60),
        heartbeat: Duration::from_millis(raw.engine.heartbeat_ms.unwrap_or(2_000)),
        max_iterations: raw.engine.max_iterations.unwrap_or(5),
        agent_timeout: secs(raw.engine.agent_timeout_secs, 1800),
        author_name: raw.engine.author_name.unwrap_or_else(|| "Paid".into()),
        author_email: raw.engine.author_email.unwrap_or_else(|| "paid@localhost".into()),
        models: raw
            .engine
            .models
            .into_iter()
            .map(|m| ModelCandidate {
                provider: m.provider,
                model: m.model,
                context_window: m.context_window,
                usd_per_mtok: m.usd_per_mtok,
            })
            .collect(),
    };
    if engine.max_iterations == 0 {
        return Err(err("engine.max_iterations", "must be at least 1".into()));
    }
    if engine.heartbeat < Duration::from_millis(100) || engine.heartbeat * 2 > engine.lease {
        return Err(err("engine.heartbeat_ms", "must be at least 100 ms and at most half of engine.lease_secs".into()));
    }

    let mut agents = BTreeMap::new();
    for (kind, v) in raw.agents {
        agents.insert(kind.clone(), agent_spec(file, &kind, v)?);
    }

    let reaper = ReaperSettings {
        interval: secs(raw.reaper.interval_secs, 300),
        worktree_max_age: secs(raw.reaper.worktree_max_age_secs, 24 * 3600),
        unknown_sandbox_max_age: secs(raw.reaper.unknown_sandbox_max_age_secs, 30 * 60),
    };
    if reaper.interval.is_zero() {
        return Err(err("reaper.interval_secs", "must be at least 1".into()));
    }

    let disk = DiskSettings {
        path: raw.disk.path.map(|p| resolve(base, p)).unwrap_or_else(|| data_dir.clone()),
        interval: secs(raw.disk.interval_secs, 300),
        warning_percent: raw.disk.warning_percent.unwrap_or(75.0),
        critical_percent: raw.disk.critical_percent.unwrap_or(85.0),
        emergency_percent: raw.disk.emergency_percent.unwrap_or(95.0),
        log_retention: match raw.disk.log_retention_days {
            None => Duration::from_secs(30 * 86_400),
            Some(d) if d.is_finite() && d > 0.0 && d <= 36_500.0 => Duration::from_secs_f64(d * 86_400.0),
            Some(d) => {
                return Err(err("disk.log_retention_days", format!("must be a number of days above 0 (got {d})")));
            }
        },
    };
    let (w, c, e) = (disk.warning_percent, disk.critical_percent, disk.emergency_percent);
    let pct = |v: f64| (0.0..=100.0).contains(&v);
    if !(pct(w) && pct(c) && pct(e) && w <= c && c <= e) {
        return Err(err(
            "disk.warning_percent",
            format!("thresholds must be percentages with warning ≤ critical ≤ emergency (got {w}, {c}, {e})"),
        ));
    }
    if disk.interval.is_zero() {
        return Err(err("disk.interval_secs", "must be at least 1".into()));
    }

    let log = LogSettings {
        json: match raw.log.format.as_deref().unwrap_or("json") {
            "json" => true,
            "text" => false,
            other => return Err(err("log.format", format!("{other:?} is neither \"json\" nor \"text\""))),
        },
        level: raw.log.level.unwrap_or_else(|| "info".into()),
    };

    let mut projects = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in raw.projects.into_iter().enumerate() {
        let key = |k: &str| format!("projects[{i}].{k}");
        let repo = RepoRef::parse(&p.repo)
            .map_err(|_| err(&key("repo"), format!("{:?} is not of the form owner/name", p.repo)))?;
        if !seen.insert(repo.to_string()) {
            return Err(err(&key("repo"), format!("{repo} is declared twice")));
        }
        let spec = ProjectSpec {
            clone_url: p.clone_url.unwrap_or_else(|| format!("https://github.com/{}/{}.git", repo.owner, repo.name)),
            repo,
            default_branch: p.default_branch.unwrap_or_else(|| "main".into()),
            trigger_labels: p.trigger_labels.unwrap_or_else(|| vec!["paid-build".into()]),
            allowed_authors: p.allowed_authors,
            verify: p.verify,
            allowed_paths: p.allowed_paths,
            image: p.image.unwrap_or_else(|| "paid/agent:bookworm".into()),
            agent: p.agent.unwrap_or_else(|| "claude-code".into()),
            model: p.model,
            budget_usd_per_run: p.budget_usd_per_run,
            budget_usd_per_month: p.budget_usd_per_month,
            max_concurrent_runs: p.max_concurrent_runs.unwrap_or(2),
            compare: match &p.compare {
                None => None,
                Some(c) => Some(c.to_spec().map_err(|e| err(&key(&format!("compare.{}", e.field)), e.reason))?),
            },
        };
        if spec.allowed_authors.is_empty() {
            return Err(err(
                &key("allowed_authors"),
                "is empty, so no issue could ever trigger a run; list the logins you trust".into(),
            ));
        }
        for (k, b) in
            [("budget_usd_per_run", spec.budget_usd_per_run), ("budget_usd_per_month", spec.budget_usd_per_month)]
        {
            if b.is_some_and(|b| !(b > 0.0 && b.is_finite())) {
                return Err(err(&key(k), "must be a positive number of US dollars".into()));
            }
        }
        if let Some(m) = &spec.model
            && !engine.models.is_empty()
            && !engine.models.iter().any(|c| &c.model == m)
        {
            return Err(err(&key("model"), format!("{m:?} is not one of engine.models")));
        }
        if let Some(c) = &spec.compare
            && !engine.models.is_empty()
            && let Some(m) = c.candidates.iter().find(|c| !engine.models.iter().any(|e| e.model == c.model))
        {
            return Err(err(&key("compare.models"), format!("{:?} is not one of engine.models", m.model)));
        }
        let project = spec.to_project(paid_core::ProjectId(uuid::Uuid::nil()), chrono::Utc::now());
        if let Err(paid_core::Error::InvalidInput { what, message }) = project.validate() {
            let field = what.strip_prefix("project.").unwrap_or(&what).to_string();
            return Err(err(&key(&field), message));
        }
        if let Err(e) = paid_core::policy::ForbiddenPaths::new(&spec.allowed_paths) {
            return Err(err(&key("allowed_paths"), e.to_string()));
        }
        projects.push(spec);
    }

    Ok(Config {
        file: file.to_path_buf(),
        data_dir,
        poll_interval,
        worker_id,
        concurrency,
        shutdown_grace: secs(raw.shutdown_grace_secs, 120),
        store,
        store_schema: raw.store.schema,
        api,
        keys,
        github,
        docker,
        proxy,
        providers,
        engine,
        agents,
        reaper,
        disk,
        log,
        projects,
    })
}

fn agent_spec(file: &Path, kind: &str, v: toml::Value) -> Result<AgentSpec, ConfigError> {
    let key = format!("agents.{kind}");
    let toml::Value::Table(mut t) = v else {
        return Err(ConfigError::new(file, key, "must be a table with `script` or `command`"));
    };
    if let Some(script) = t.remove("script") {
        let toml::Value::String(script) = script else {
            return Err(ConfigError::new(file, format!("{key}.script"), "must be a string"));
        };
        let env = match t.remove("env") {
            None => BTreeMap::new(),
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::new(file, format!("{key}.env"), e.message().to_string()))?,
        };
        if let Some(extra) = t.keys().next() {
            return Err(ConfigError::new(
                file,
                format!("{key}.{extra}"),
                "unknown key for a script agent (known: script, env)",
            ));
        }
        if script.trim().is_empty() {
            return Err(ConfigError::new(file, format!("{key}.script"), "must not be empty"));
        }
        return Ok(AgentSpec::Command { script, env });
    }
    if t.contains_key("command") {
        t.insert("kind".into(), toml::Value::String(kind.to_string()));
        let plugin: paid_agents::PluginConfig = serde_path_to_error::deserialize(toml::Value::Table(t))
            .map_err(|e| ConfigError::new(file, format!("{key}.{}", e.path()), e.into_inner().message().to_string()))?;
        return Ok(AgentSpec::Plugin(Box::new(plugin)));
    }
    Err(ConfigError::new(file, key, "needs `script` (a shell command run in the sandbox) or `command` (a CLI plugin)"))
}

impl ProjectSpec {
    /// The project as stored, under `id`.
    pub fn to_project(&self, id: paid_core::ProjectId, now: paid_core::Timestamp) -> paid_core::Project {
        let mut p = paid_core::Project::new(id, self.repo.clone(), self.clone_url.clone(), now);
        p.default_branch = self.default_branch.clone();
        p.trigger_labels = self.trigger_labels.clone();
        p.allowed_authors = self.allowed_authors.clone();
        p.verify = self.verify.clone();
        p.allowed_paths = self.allowed_paths.clone();
        p.image = self.image.clone();
        p.agent = self.agent.clone();
        p.max_concurrent_runs = self.max_concurrent_runs;
        p
    }
}

/// The commented example `paid init` writes.
pub const EXAMPLE: &str = include_str!("paid.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/paid/paid.toml"), text, &BTreeMap::new())
    }

    const MINIMAL: &str = r#"
[[projects]]
repo = "acme/widgets"
allowed_authors = ["alice"]
"#;

    #[test]
    fn the_example_parses() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(60));
        assert_eq!(c.projects.len(), 1);
    }

    #[test]
    fn defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.store, StoreUrl::Sqlite(PathBuf::from("/etc/paid/paid-data/paid.db")));
        assert_eq!(c.api.bind.to_string(), "127.0.0.1:8700");
        assert_eq!(c.projects[0].clone_url, "https://github.com/acme/widgets.git");
        assert_eq!(c.projects[0].trigger_labels, vec!["paid-build"]);
    }

    #[test]
    fn env_overrides_win_and_are_typed() {
        let env = BTreeMap::from([
            ("PAID_STORE_URL".to_string(), "/tmp/x.db".to_string()),
            ("PAID_POLL_INTERVAL_SECS".to_string(), "120".to_string()),
            ("PAID_DOCKER_ENDPOINTS".to_string(), "tcp://a:2375, tcp://b:2375".to_string()),
            ("PAID_DISK_EMERGENCY_PERCENT".to_string(), "99.5".to_string()),
        ]);
        let c = Config::parse(Path::new("/etc/paid/paid.toml"), MINIMAL, &env).unwrap();
        assert_eq!(c.store, StoreUrl::Sqlite(PathBuf::from("/tmp/x.db")));
        assert_eq!(c.poll_interval, Duration::from_secs(120));
        assert_eq!(c.docker.endpoints, vec!["tcp://a:2375", "tcp://b:2375"]);
        assert_eq!(c.disk.emergency_percent, 99.5);
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let env = BTreeMap::from([("PAID_POLL_INTERVAL_SECS".to_string(), "soon".to_string())]);
        let e = Config::parse(Path::new("/etc/paid/paid.toml"), MINIMAL, &env).unwrap_err();
        assert_eq!(e.key, "PAID_POLL_INTERVAL_SECS");
        assert!(e.reason.contains("not a whole number"), "{e}");
    }

    #[test]
    fn log_retention_defaults_to_30_days_and_must_be_positive() {
        assert_eq!(parse(MINIMAL).unwrap().disk.log_retention, Duration::from_secs(30 * 86_400));
        let c = parse(&format!("[disk]\nlog_retention_days = 7\n{MINIMAL}")).unwrap();
        assert_eq!(c.disk.log_retention, Duration::from_secs(7 * 86_400));
        let e = parse(&format!("[disk]\nlog_retention_days = 0\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "disk.log_retention_days");
    }

    #[test]
    fn poll_interval_minimum_and_the_test_override() {
        let e = parse(&format!("poll_interval_secs = 5\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "poll_interval_secs");
        assert!(e.reason.contains("minimum of 60 s"), "{e}");
        let env = BTreeMap::from([(TEST_POLL_INTERVAL_ENV.to_string(), "200".to_string())]);
        let c = Config::parse(Path::new("/x/paid.toml"), &format!("poll_interval_secs = 5\n{MINIMAL}"), &env).unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(200));
    }

    #[test]
    fn the_webhook_secret_is_named_never_inline() {
        let c = parse(&format!("[github]\nwebhook_secret_env = \"PAID_WEBHOOK_SECRET\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.github.webhook_secret_env.as_deref(), Some("PAID_WEBHOOK_SECRET"));
        assert_eq!(c.github.webhook_secret_file, None);
        let c = parse(&format!("[github]\nwebhook_secret_file = \"hook.secret\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.github.webhook_secret_file, Some(PathBuf::from("/etc/paid/hook.secret")));
        assert_eq!(parse(MINIMAL).unwrap().github.webhook_secret_env, None);
        let e = parse(&format!("[github]\nwebhook_secret = \"s3cret\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "github.webhook_secret");
        assert!(e.reason.contains("github.webhook_secret_env"), "{e}");
        let e = parse(&format!("[github]\nwebhook_secret_env = \"not a name\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "github.webhook_secret_env");
    }

    #[test]
    fn inline_secrets_are_refused_with_file_key_and_reason() {
        let e = parse(&format!("[github]\ntoken = \"ghp_x\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.file, PathBuf::from("/etc/paid/paid.toml"));
        assert_eq!(e.key, "github.token");
        assert!(e.reason.contains("never written inline"), "{e}");
        let e = parse(&format!("[providers.anthropic]\nkey = \"sk\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "providers.anthropic.key");
        assert!(e.reason.contains("key_env"), "{e}");
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        let e = parse(&format!("pol_interval_secs = 60\n{MINIMAL}")).unwrap_err();
        assert!(e.reason.contains("unknown field `pol_interval_secs`"), "{e}");
        let e = parse("[[projects]]\nrepo = \"acme/widgets\"\nallowed_authors = \"alice\"\n").unwrap_err();
        assert_eq!(e.key, "projects[0].allowed_authors");
        let e = parse("[[projects]]\nrepo = \"widgets\"\nallowed_authors = [\"a\"]\n").unwrap_err();
        assert_eq!(e.key, "projects[0].repo");
        let e = parse("[docker]\nendpont = \"x\"\n").unwrap_err();
        assert!(e.key.starts_with("docker"), "{e}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = parse("data_dir = \n").unwrap_err();
        assert!(e.key.starts_with("line 1"), "{e}");
        assert!(e.to_string().contains("/etc/paid/paid.toml"), "{e}");
    }

    #[test]
    fn agents_are_scripts_or_plugins() {
        let c = parse(&format!(
            "[agents.fixer]\nscript = \"true\"\n[agents.my-cli]\ncommand = \"my-cli {{{{ prompt_file }}}}\"\n{MINIMAL}"
        ))
        .unwrap();
        assert!(matches!(c.agents["fixer"], AgentSpec::Command { .. }));
        assert!(matches!(c.agents["my-cli"], AgentSpec::Plugin(_)));
        let e = parse(&format!("[agents.x]\nfoo = 1\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "agents.x");
    }

    #[test]
    fn postgres_urls_are_not_printed_with_passwords() {
        let c = parse(&format!("[store]\nurl = \"postgres://paid:hunter2@db/paid\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.store.to_string(), "postgres://[redacted]@db/paid");
    }

    #[test]
    fn project_comparisons_are_checked_with_file_key_and_reason() {
        let c =
            parse(&format!("{MINIMAL}[projects.compare]\nmodels = [\"m-a\", \"m-b\"]\nrule = \"human\"\n")).unwrap();
        let spec = c.projects[0].compare.as_ref().unwrap();
        assert_eq!(spec.names(), ["c1-m-a", "c2-m-b"]);
        assert_eq!(spec.rule, paid_core::engine::SelectionRule::Human);
        assert_eq!(parse(MINIMAL).unwrap().projects[0].compare, None);
        for (body, key, reason) in [
            ("models = [\"only-one\"]", "projects[0].compare.models", "2 to 8 models"),
            ("models = [\"a\", \"a\"]", "projects[0].compare.models", "listed twice"),
            ("models = [\"a\", \"b\"]\nrule = \"random\"", "projects[0].compare.rule", "neither"),
            ("models = [\"a\", \"b\"]\nranking = [\"speed\"]", "projects[0].compare.ranking", "unknown criterion"),
            ("models = [\"a\", \"b\"]\nrules = \"best\"", "projects[0].compare", "unknown field `rules`"),
            ("models = \"a,b\"", "projects[0].compare.models", "expected"),
        ] {
            let e = parse(&format!("{MINIMAL}[projects.compare]\n{body}\n")).unwrap_err();
            assert_eq!(e.file, PathBuf::from("/etc/paid/paid.toml"), "{e}");
            assert!(e.key.starts_with(key), "{body}: {e}");
            assert!(e.reason.contains(reason), "{body}: {e}");
        }
        let models = "[engine]\n[[engine.models]]\nprovider = \"anthropic\"\nmodel = \"m-a\"\n";
        let e = parse(&format!("{models}{MINIMAL}[projects.compare]\nmodels = [\"m-a\", \"m-z\"]\n")).unwrap_err();
        assert_eq!(e.key, "projects[0].compare.models");
        assert!(e.reason.contains("\"m-z\" is not one of engine.models"), "{e}");
    }

    #[test]
    fn a_store_schema_is_for_postgres_only() {
        let c = parse(&format!("[store]\nurl = \"postgres://db/paid\"\nschema = \"tenant_a\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.store_schema.as_deref(), Some("tenant_a"));
        assert_eq!(parse(MINIMAL).unwrap().store_schema, None);
        let e = parse(&format!("[store]\nurl = \"x.db\"\nschema = \"tenant_a\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "store.schema");
    }
}
