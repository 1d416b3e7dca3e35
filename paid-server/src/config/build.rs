//! Checking the file as written (plus the environment) into a [`Config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paid_core::{ModelCandidate, RepoRef};
use paid_runtime_docker::DockerConfig;

use super::env::{env_name_ok, resolve, secs};
use super::raw::*;
use super::*;
use crate::compare::ToSpec as _;

pub(super) fn build(
    file: &Path,
    base: &Path,
    raw: RawConfig,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    let err = |key: &str, reason: String| ConfigError::new(file, key, reason);
    let data_dir = resolve(base, raw.data_dir.unwrap_or_else(|| PathBuf::from("paid-data")));

    let poll_interval = match env.get(TEST_POLL_INTERVAL_ENV) {
        Some(ms) => test_poll_interval(ms)?,
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
        metrics_bind: match raw.api.metrics_bind.as_deref() {
            Some(s) => Some(parse_addr("api.metrics_bind", s)?),
            None => None,
        },
        metrics_auth: raw.api.metrics_auth.unwrap_or(false),
        public_url: match raw.api.public_url.as_deref() {
            Some(s) => Some(public_url(s).map_err(|reason| err("api.public_url", reason))?),
            None => None,
        },
    };
    if api.metrics_bind.is_some_and(|m| m == api.bind && m.port() != 0) {
        return Err(err(
            "api.metrics_bind",
            format!("{} is api.bind already; give /metrics its own address", api.bind),
        ));
    }
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
        sub_issues: raw.github.sub_issues.unwrap_or(true),
        webhook_max_body_bytes: raw.github.webhook_max_body_bytes.unwrap_or(1024 * 1024),
        webhook_max_concurrency: raw.github.webhook_max_concurrency.unwrap_or(16),
        webhook_replay_window: secs(raw.github.webhook_replay_window_secs, 3600),
    };
    if !(1024..=25 * 1024 * 1024).contains(&github.webhook_max_body_bytes) {
        return Err(err(
            "github.webhook_max_body_bytes",
            format!("{} is out of range; use 1024 to 26214400 (GitHub's 25 MiB cap)", github.webhook_max_body_bytes),
        ));
    }
    if !(1..=1024).contains(&github.webhook_max_concurrency) {
        return Err(err(
            "github.webhook_max_concurrency",
            format!("{} is out of range; use 1 to 1024", github.webhook_max_concurrency),
        ));
    }
    if !(60..=7 * 86_400).contains(&github.webhook_replay_window.as_secs()) {
        return Err(err(
            "github.webhook_replay_window_secs",
            format!("{} is out of range; use 60 to 604800 (7 days)", github.webhook_replay_window.as_secs()),
        ));
    }
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
            .unwrap_or_else(|| match &docker.egress {
                // With egress control (the default) every sandbox reaches the
                // proxy on its own loopback, through its relay and the
                // forwarder.
                Some(e) => format!("http://127.0.0.1:{}", e.forwarder_port),
                None => format!("http://{proxy_bind}"),
            })
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
        worktree_limits: raw.engine.worktree_limits.unwrap_or_default(),
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
    if let Err(e) = engine.worktree_limits.validate() {
        return Err(err("engine.worktree_limits", e.to_string()));
    }
    if engine.max_iterations == 0 {
        return Err(err("engine.max_iterations", "must be at least 1".into()));
    }
    for (i, m) in engine.models.iter().enumerate() {
        if let Err(paid_core::Error::InvalidInput { message, .. }) = paid_core::validate_model_name(&m.model) {
            return Err(err(&format!("engine.models[{i}].model"), message));
        }
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

    // Clone URLs must be on the forge's web host (the one the token goes to).
    let forge =
        paid_github::WebOrigin::from_api_base(&github.api_url).map_err(|e| err("github.api_url", e.to_string()))?;
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
            clone_url: p.clone_url.unwrap_or_else(|| forge.clone_url(&repo)),
            repo,
            default_branch: p.default_branch.unwrap_or_else(|| "main".into()),
            trigger_labels: p.trigger_labels.unwrap_or_else(|| vec!["paid-build".into()]),
            allowed_authors: p.allowed_authors,
            allowed_author_ids: p.allowed_author_ids,
            verify: p.verify,
            allowed_paths: p.allowed_paths,
            allowed_clone_hosts: p.allowed_clone_hosts,
            push_remote: p.push_remote,
            push_url: p.push_url,
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
        if spec.allowed_authors.is_empty() && spec.allowed_author_ids.is_empty() {
            return Err(err(
                &key("allowed_authors"),
                "is empty (and so is allowed_author_ids), so no issue could ever trigger a run; list the logins \
                 (or user ids) you trust"
                    .into(),
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
        if let Err(paid_core::Error::InvalidInput { what, message }) =
            project.validate_clone_url(forge.host()).and_then(|()| project.validate())
        {
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

pub(super) fn agent_spec(file: &Path, kind: &str, v: toml::Value) -> Result<AgentSpec, ConfigError> {
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
        p.allowed_author_ids = self.allowed_author_ids.clone();
        p.verify = self.verify.clone();
        p.allowed_paths = self.allowed_paths.clone();
        p.image = self.image.clone();
        p.agent = self.agent.clone();
        p.max_concurrent_runs = self.max_concurrent_runs;
        p.settings = paid_core::ProjectSettings {
            model: self.model.clone(),
            budget_usd_per_run: self.budget_usd_per_run,
            budget_usd_per_month: self.budget_usd_per_month,
            allowed_clone_hosts: self.allowed_clone_hosts.clone(),
            push_remote: self.push_remote.clone(),
            push_url: self.push_url.clone(),
        };
        p
    }
}

/// `api.public_url`: an http(s) URL with a host and no credentials; only its
/// host and port are used (the `Host` check).
fn public_url(s: &str) -> Result<reqwest::Url, String> {
    let url =
        reqwest::Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL like https://paid.example.com: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} is not an http(s) URL with a host, like https://paid.example.com"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(url)
}

/// `PAID_POLL_INTERVAL_MS`: a test hook, compiled in only with the
/// `test-hooks` feature (never in a production build); at least 1 ms.
#[cfg(feature = "test-hooks")]
fn test_poll_interval(ms: &str) -> Result<Duration, ConfigError> {
    let err = |reason: String| ConfigError::new(Path::new("<environment>"), TEST_POLL_INTERVAL_ENV, reason);
    match ms.trim().parse::<u64>() {
        Ok(0) => Err(err("0 is not an interval: at least 1 ms".into())),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => Err(err(format!("{ms:?} is not a whole number of milliseconds"))),
    }
}

/// Without the `test-hooks` feature the test hook is refused, never
/// silently ignored nor obeyed.
#[cfg(not(feature = "test-hooks"))]
fn test_poll_interval(_ms: &str) -> Result<Duration, ConfigError> {
    Err(ConfigError::new(
        Path::new("<environment>"),
        TEST_POLL_INTERVAL_ENV,
        format!(
            "is a test hook this build does not have (feature test-hooks); unset it and use poll_interval_secs \
             (at least {} s)",
            MIN_POLL_INTERVAL.as_secs()
        ),
    ))
}
