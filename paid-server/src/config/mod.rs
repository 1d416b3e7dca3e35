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

//!
//! | module | holds |
//! | --- | --- |
//! | this one | the checked [`Config`] and its sections |
//! | `raw` | the file as written (serde) |
//! | `env` | syntax errors, inline-secret refusal, environment overrides |
//! | `build` | checking the raw file into a [`Config`] |

mod build;
mod env;
mod raw;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paid_core::{ModelCandidate, RepoRef};
use paid_runtime_docker::DockerConfig;

use self::build::build;
use self::env::{apply_env, reject_inline_secrets, syntax_error};
use self::raw::RawConfig;

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
/// Lists are comma-separated. `PAID_POLL_INTERVAL_MS` is a test hook,
/// compiled in only with the `test-hooks` feature: it allows intervals below
/// the 60 s minimum (at least 1 ms) and wins over `poll_interval_secs`;
/// without the feature, setting it is a configuration error.
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
    ("PAID_API_METRICS_BIND", "api.metrics_bind"),
    ("PAID_API_METRICS_AUTH", "api.metrics_auth"),
    ("PAID_API_PUBLIC_URL", "api.public_url"),
    ("PAID_MASTER_KEY_ENV", "keys.master_key_env"),
    ("PAID_MASTER_KEY_FILE", "keys.master_key_file"),
    ("PAID_PREVIOUS_KEY_FILES", "keys.previous_key_files"),
    ("PAID_GITHUB_API_URL", "github.api_url"),
    ("PAID_GITHUB_TOKEN_ENV", "github.token_env"),
    ("PAID_GITHUB_TOKEN_FILE", "github.token_file"),
    ("PAID_GITHUB_WEBHOOK_SECRET_ENV", "github.webhook_secret_env"),
    ("PAID_GITHUB_WEBHOOK_SECRET_FILE", "github.webhook_secret_file"),
    ("PAID_GITHUB_WEBHOOK_MAX_BODY_BYTES", "github.webhook_max_body_bytes"),
    ("PAID_GITHUB_WEBHOOK_MAX_CONCURRENCY", "github.webhook_max_concurrency"),
    ("PAID_GITHUB_WEBHOOK_REPLAY_WINDOW_SECS", "github.webhook_replay_window_secs"),
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

/// The test-only override of the poll interval, in milliseconds (feature
/// `test-hooks`; refused without it).
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
    /// Where `/metrics` is served instead of on [`ApiConfig::bind`]
    /// (`api.metrics_bind`): a second listener serving only `/metrics`.
    /// Unset (the default), `/metrics` is on the API listener.
    pub metrics_bind: Option<SocketAddr>,
    /// Whether `/metrics` needs the API's bearer token (`api.metrics_auth`,
    /// default false: unauthenticated, like `/health`, on whichever
    /// listener serves it; the API binds loopback by default). On, the token
    /// must be configured on a `paid-worker` too.
    pub metrics_auth: bool,
    /// The URL the API is reached at (`api.public_url`, e.g.
    /// `https://paid.example.com`). Set, a request on the API listener
    /// whose `Host` names another host (or port) gets `421`; a `Host` that
    /// is an IP address (the CLI on `api.bind`, probes, a reverse proxy
    /// passing its upstream address) is accepted, since DNS rebinding
    /// always carries a name.
    pub public_url: Option<reqwest::Url>,
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
    /// Whether the forge has the sub-issues API (`github.sub_issues`,
    /// default true). Off (say, on a GitHub Enterprise Server without it),
    /// a plan links its sub-issues with a task list on the parent instead.
    pub sub_issues: bool,
    /// Largest webhook body (`github.webhook_max_body_bytes`, default 1 MiB,
    /// at most GitHub's 25 MiB): larger gets `413` before it is read.
    pub webhook_max_body_bytes: usize,
    /// Webhook deliveries handled at once (`github.webhook_max_concurrency`,
    /// default 16); more get `503` at once.
    pub webhook_max_concurrency: usize,
    /// How old a delivery may be (`github.webhook_replay_window_secs`,
    /// default one hour): older payloads are refused, and accepted ones are
    /// remembered in the store this long (see
    /// [`paid_github::webhooks`]'s replay protection).
    pub webhook_replay_window: Duration,
}

/// `[proxy]`: the secrets + metering proxy of `paid-llm`, started when at
/// least one provider is configured.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where the proxy listens.
    pub bind: SocketAddr,
    /// How sandboxes reach it. Default: with egress control (on unless
    /// `docker.egress = "off"`), the relay on each sandbox's own loopback,
    /// `http://127.0.0.1:3128` (`docker.egress.forwarder_port`); with
    /// egress off, `http://<bind>`.
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
    /// What a run's worktree may hold (`[engine.worktree_limits]`).
    pub worktree_limits: paid_core::WorktreeLimits,
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
    /// Trusted authors, by login (each pinned to its user id when first seen).
    pub allowed_authors: Vec<String>,
    /// Trusted authors, by GitHub's numeric user id.
    pub allowed_author_ids: Vec<u64>,
    /// Verify commands.
    pub verify: Vec<String>,
    /// Forbidden paths this project allows.
    pub allowed_paths: Vec<String>,
    /// Hosts besides the forge's that `clone_url` may name (cloned from
    /// without the forge token).
    pub allowed_clone_hosts: Vec<String>,
    /// A fork (`owner/name`) run branches are pushed to; PRs are opened
    /// from it.
    pub push_remote: Option<String>,
    /// The fork's URL (default: on the forge's host).
    pub push_url: Option<String>,
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

/// The commented example `paid init` writes.
pub const EXAMPLE: &str = include_str!("paid.example.toml");
