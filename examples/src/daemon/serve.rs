//! `paid serve`: the daemon.
//!
//! It wires the library's parts from `paid.toml` and runs, until SIGTERM or
//! SIGINT:
//!
//! - the **poller**, which polls every project at the configured interval
//!   and then reads the feedback on its pull requests (`Engine::follow_up`),
//!   and acts on one project at once when a GitHub webhook nudges it
//!   (`webhooks`, mounted at `/webhooks/github` when a secret is configured);
//! - **workers** (`concurrency` of them), which claim runs and drive them
//!   with the engine, under a span carrying `trace_id`, `run_id` and
//!   `project_id`; they claim nothing while the disk guard reports an
//!   emergency;
//! - the **HTTP API** with `/metrics` and the health endpoints;
//! - the **reaper** and the **disk guard**.
//!
//! On SIGTERM the workers stop claiming, the current step of each run
//! finishes, and leases are released, so a restarted daemon (or another
//! worker) resumes the runs from their journals. A second signal exits at
//! once.
//!
//! Everything that can be checked is checked before anything starts: the
//! configuration, the API token, the master key (every stored secret must
//! decrypt), the store, the Docker engine, the agents projects name.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use paid_agents::{CommandAgent, PluginRegistry};
use paid_core::engine::{Engine, EngineConfig, EngineEvent, StepTimeouts, WorkerOptions};
use paid_core::metrics::{Metrics, ModelLabels, TokenLabels};
use paid_core::{Clock, FixedSelector, RunFilter, SecretStore, Store, SystemClock};
use paid_github::{GitHubConfig, GitWorkspaces, GitWorkspacesConfig};
use paid_runtime_docker::DockerRuntime;
use prometheus_client::registry::Registry;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use super::api::{self, ApiState};
use super::config::{AgentSpec, Config, ConfigError, StoreUrl};
use super::disk::{DiskGuard, DiskPaths, FsProbe, StatvfsProbe};
use super::forge_token::{ForgeToken, RELOAD_EVERY, ReloadingForge};
use super::health::Readiness;
use super::projects::{ProjectDirectory, ProjectSelector, load_api_extras, sync_declared};
use super::reaper::{Pressure, Reaper};
use super::vault::{Vault, load_keyring};
use super::webhooks::Nudge;

/// An opened store, with what else it can do.
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Its secrets capability, if it has one.
    pub secrets: Option<Arc<dyn SecretStore>>,
    /// Why it has none.
    pub no_secrets_reason: String,
    /// The database file, for SQLite.
    pub file: Option<std::path::PathBuf>,
    /// Its learning capability (prompts, experiments), if it has one.
    pub learning: Option<Arc<dyn paid_core::ports::learning::LearningStore>>,
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore").field("file", &self.file).finish_non_exhaustive()
    }
}

/// Opens the configured store; `schema` (PostgreSQL only) defaults to `public`.
pub async fn open_store(url: &StoreUrl, schema: Option<&str>) -> anyhow::Result<OpenedStore> {
    match url {
        StoreUrl::Sqlite(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let p = path.clone();
            let store = tokio::task::spawn_blocking(move || paid_store_sqlite::SqliteStore::open(&p)).await??;
            let store = Arc::new(store);
            Ok(OpenedStore {
                store: store.clone(),
                secrets: Some(store.clone()),
                no_secrets_reason: String::new(),
                file: Some(path.clone()),
                learning: Some(store),
            })
        }
        StoreUrl::Postgres(url) => {
            let mut options = paid_store_postgres::PgStoreOptions::new(url.as_str());
            if let Some(schema) = schema {
                options = options.schema(schema);
            }
            let store = paid_store_postgres::PgStore::connect_with(options)
                .await
                .with_context(|| format!("connecting to {}", StoreUrl::Postgres(url.clone())))?;
            let store = Arc::new(store);
            Ok(OpenedStore {
                store: store.clone(),
                secrets: Some(store.clone()),
                no_secrets_reason: String::new(),
                file: None,
                learning: Some(store),
            })
        }
    }
}

/// Reads the API bearer token the configuration names.
pub fn api_token(config: &Config) -> Result<SecretString, ConfigError> {
    let err = |key: &str, reason: String| ConfigError { file: config.file.clone(), key: key.into(), reason };
    let token = match &config.api.token_file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| err("api.token_file", format!("cannot read {}: {e}", f.display())))?
            .trim()
            .to_string(),
        None => std::env::var(&config.api.token_env).map_err(|_| {
            err(
                "api.token_env",
                format!(
                    "environment variable {} is not set; set it, or set api.token_file (`paid init` writes one)",
                    config.api.token_env
                ),
            )
        })?,
    };
    if token.trim().len() < 16 {
        let key = if config.api.token_file.is_some() { "api.token_file" } else { "api.token_env" };
        return Err(err(key, "the API token is shorter than 16 characters".into()));
    }
    Ok(SecretString::from(token.trim().to_string()))
}

/// The forge token: stored (`paid token set github`), else the file, else
/// the environment variable.
pub async fn forge_token(config: &Config, vault: &Vault) -> anyhow::Result<Option<SecretString>> {
    let err = |key: &str, reason: String| ConfigError { file: config.file.clone(), key: key.into(), reason };
    if let Some(t) = vault.get("github").await.context("reading the stored GitHub token")? {
        return Ok(Some(t));
    }
    if let Some(f) = &config.github.token_file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| err("github.token_file", format!("cannot read {}: {e}", f.display())))?;
        return Ok(Some(SecretString::from(t.trim().to_string())));
    }
    match std::env::var(&config.github.token_env) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(SecretString::from(t.trim().to_string()))),
        _ if config.github.token_env_explicit => Err(err(
            "github.token_env",
            format!(
                "environment variable {} is not set (and no token is stored with `paid token set github`)",
                config.github.token_env
            ),
        )
        .into()),
        _ => Ok(None),
    }
}

/// The agents: the built-in CLIs plus those `paid.toml` declares.
pub fn agents(config: &Config) -> anyhow::Result<Vec<Arc<dyn paid_core::Agent>>> {
    let mut registry = PluginRegistry::with_builtins();
    for (kind, spec) in &config.agents {
        let bad = |e: paid_agents::Error| ConfigError {
            file: config.file.clone(),
            key: format!("agents.{kind}"),
            reason: e.to_string(),
        };
        match spec {
            AgentSpec::Command { script, env } => {
                let mut agent = CommandAgent::new(kind.clone(), script.clone()).map_err(bad)?;
                for (k, v) in env {
                    agent = agent.env(k.clone(), v.clone());
                }
                registry.register_agent(Arc::new(agent)).map_err(bad)?;
            }
            AgentSpec::Plugin(p) => {
                registry.register_config((**p).clone()).map_err(bad)?;
            }
        }
    }
    Ok(registry.agents())
}

/// Runs the daemon until a signal, then shuts down gracefully.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(config, shutdown.clone()).await?;
    tokio::spawn(signals(shutdown.clone()));
    daemon.wait().await
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping claims, finishing current steps, releasing leases"),
        _ = int.recv() => info!("SIGINT: stopping claims, finishing current steps, releasing leases"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    error!("second signal: exiting now; leases of runs in progress expire and another worker resumes them");
    std::process::exit(130);
}

/// A started daemon.
pub struct Daemon {
    shutdown: CancellationToken,
    grace: Duration,
    workers: Vec<tokio::task::JoinHandle<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Where the API listens.
    pub addr: std::net::SocketAddr,
    proxy: Option<super::proxy::StartedProxy>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Daemon {
    /// Checks everything and starts every task. Nothing is started when a
    /// check fails.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        Self::start_with(config, shutdown, Arc::new(StatvfsProbe)).await
    }

    /// [`Daemon::start`] with another filesystem probe for the disk guard.
    pub async fn start_with(
        config: Config,
        shutdown: CancellationToken,
        probe: Arc<dyn FsProbe>,
    ) -> anyhow::Result<Self> {
        let cfg_err = |key: &str, reason: String| ConfigError { file: config.file.clone(), key: key.into(), reason };
        let token = api_token(&config)?;
        let webhook_secret = super::webhooks::secret(&config)?;
        let keyring = load_keyring(&config.keys).map_err(|e| {
            let key =
                if config.keys.master_key_file.is_some() { "keys.master_key_file" } else { "keys.master_key_env" };
            cfg_err(key, e.to_string())
        })?;
        for (name, p) in &config.providers {
            if let Some(f) = &p.key_file
                && let Err(e) = std::fs::metadata(f)
            {
                return Err(cfg_err(
                    &format!("providers.{name}.key_file"),
                    format!("cannot read {}: {e}", f.display()),
                )
                .into());
            }
        }
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);

        let opened = open_store(&config.store, config.store_schema.as_deref()).await?;
        let store = opened.store.clone();
        let vault =
            Arc::new(Vault::new(opened.secrets.clone(), opened.no_secrets_reason.clone(), keyring, clock.clone()));
        let n = vault.verify_all().await.context("cannot read the stored secrets with the configured master key")?;
        if n > 0 {
            info!(
                secrets = n,
                key_id = vault.key_id().await.unwrap_or_default(),
                "stored secrets decrypt with the configured key"
            );
        }
        let forge_token = forge_token(&config, &vault).await?;
        if forge_token.is_none() {
            warn!("no GitHub token: set {} or store one with `paid token set github`", config.github.token_env);
        }

        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);

        let docker = DockerRuntime::connect(config.docker.clone()).await.context("connecting to the Docker engine")?;
        let gh =
            GitHubConfig::new().base_uri(config.github.api_url.clone()).metrics(metrics.clone()).token_id("github");
        // The forge and the workspaces pick up a new token without a restart.
        let token_source = Arc::new(ForgeToken::new(config.clone(), vault.clone(), forge_token.clone()));
        let forge = Arc::new(ReloadingForge::new(gh, token_source.clone())?);
        let mut wc = GitWorkspacesConfig::new(config.data_dir.join("workspaces")).metrics(metrics.clone());
        if let Some(t) = &forge_token {
            wc = wc.token(t.clone());
        }
        let workspaces = Arc::new(GitWorkspaces::new(wc));
        token_source.on_change({
            let workspaces = workspaces.clone();
            move |t| workspaces.set_token(t)
        });

        let agents = agents(&config)?;
        let kinds: BTreeSet<String> = agents.iter().map(|a| a.kind().to_string()).collect();
        for (i, p) in config.projects.iter().enumerate() {
            if !kinds.contains(&p.agent) {
                return Err(cfg_err(
                    &format!("projects[{i}].agent"),
                    format!("no agent {:?}; known: {}", p.agent, kinds.iter().cloned().collect::<Vec<_>>().join(", ")),
                )
                .into());
            }
        }
        let directory: Arc<ProjectDirectory> = Arc::new(sync_declared(&store, &config.projects, clock.as_ref()).await?);
        load_api_extras(store.as_ref(), &directory).await?;
        for p in store.projects().await? {
            if !kinds.contains(&p.agent) {
                warn!(project = %p.repo, agent = %p.agent, "project names an agent this daemon does not have; its runs will fail");
            }
        }

        let default = config
            .engine
            .models
            .first()
            .map(|m| FixedSelector { provider: m.provider.clone(), model: m.model.clone() })
            .unwrap_or(FixedSelector { provider: "scripted".into(), model: "none".into() });
        let engine_config = EngineConfig {
            worker_id: config.worker_id.clone(),
            lease: config.engine.lease,
            heartbeat_interval: config.engine.heartbeat,
            max_iterations: config.engine.max_iterations,
            timeouts: StepTimeouts { agent: config.engine.agent_timeout, ..StepTimeouts::default() },
            author_name: config.engine.author_name.clone(),
            author_email: config.engine.author_email.clone(),
            models: config.engine.models.clone(),
            ..EngineConfig::default()
        };
        let mut builder = Engine::builder()
            .store(store.clone())
            .runtime(Arc::new(docker.clone()))
            .forge(forge.clone())
            .workspaces(workspaces.clone())
            .selector(Arc::new(ProjectSelector::new(store.clone(), directory.clone(), default)))
            .metrics(metrics.clone())
            .clock(clock.clone())
            .config(engine_config);
        for a in agents {
            builder = builder.agent(a);
        }
        for p in config.projects.iter().filter(|p| p.compare.is_some()) {
            let repo = p.repo.to_string();
            let stored = super::projects::by_repo(store.as_ref(), &repo).await?;
            if let (Some(project), Some(spec)) = (stored, p.compare.clone()) {
                info!(project = %repo, candidates = spec.candidates.len(), "every run of this project is a comparison");
                builder = builder.compare(project.id, spec);
            }
        }
        let proxy = super::proxy::start(&config, store.clone(), &vault, metrics.clone()).await?;
        match &proxy {
            Some(p) => {
                info!(addr = %p.server.addr(), sandbox_url = %config.proxy.sandbox_url, "metering proxy listening");
                let capped = super::proxy::register_budgets(&p.proxy, store.as_ref(), &directory).await?;
                info!(projects = capped, "per-project budgets registered with the proxy");
                builder = builder.credentials(p.credentials.clone());
            }
            None => info!("no providers configured: the metering proxy is not started; agents get no proxy endpoint"),
        }
        let engine = builder.build()?;

        let http = super::github::http_client()?;
        let readiness = Arc::new(
            Readiness::new(
                store.clone(),
                Some(docker.clone()),
                http.clone(),
                config.github.api_url.clone(),
                forge_token.clone(),
            )
            .token_source(token_source.clone()),
        );
        let reaper = Arc::new(Reaper::new(
            store.clone(),
            workspaces.clone(),
            Arc::new(docker.clone()),
            Some(docker.clone()),
            config.reaper.clone(),
            metrics.clone(),
        ));
        let disk = Arc::new(DiskGuard::new(
            config.disk.clone(),
            probe,
            DiskPaths {
                repos: workspaces.root().join("mirrors"),
                worktrees: workspaces.root().join("worktrees"),
                database: opened.file.clone(),
            },
            Some(docker.clone()),
            metrics.clone(),
            store.clone(),
        ));
        // Measure once before claiming anything.
        disk.tick(Some(&reaper)).await;
        match reaper.sweep(Pressure::Routine).await {
            Ok(r) if !r.sandboxes.is_empty() || !r.worktrees.is_empty() => {
                info!(sandboxes = r.sandboxes.len(), worktrees = r.worktrees.len(), "startup sweep removed leftovers")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "startup sweep failed"),
        }

        let wake = Arc::new(Notify::new());
        let state = Arc::new(ApiState {
            store: store.clone(),
            engine: engine.clone(),
            vault: vault.clone(),
            registry: Arc::new(registry),
            token_digest: api::digest(token.expose_secret()),
            wake: wake.clone(),
            readiness,
            projects: directory.clone(),
            disk: disk.clone(),
            github: (http, config.github.api_url.clone()),
            agent_kinds: kinds.iter().cloned().collect(),
            max_body_bytes: config.api.max_body_bytes,
            worker_id: config.worker_id.clone(),
            learning: opened.learning.clone(),
            proxy: proxy.as_ref().map(|p| p.proxy.clone()),
            forge_token: token_source.clone(),
        });
        let listener = tokio::net::TcpListener::bind(config.api.bind)
            .await
            .map_err(|e| cfg_err("api.bind", format!("cannot listen on {}: {e}", config.api.bind)))?;
        let addr = listener.local_addr()?;
        let app = api::router(state);
        // GitHub webhooks, outside `/api` (GitHub signs; it sends no bearer token).
        let (app, nudges) = match webhook_secret {
            Some(secret) => {
                let (receiver, nudges) = super::webhooks::start(secret, store.clone());
                info!(path = super::webhooks::PATH, "GitHub webhooks accepted");
                (app.nest(super::webhooks::PATH, receiver.router()), Some(nudges))
            }
            None => (app, None),
        };
        let server_shutdown = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { server_shutdown.cancelled().await }).await
        });

        let mut workers = Vec::new();
        for _ in 0..config.concurrency {
            workers.push(tokio::spawn(worker_loop(engine.clone(), shutdown.clone(), wake.clone(), disk.clone())));
        }
        let mut background = vec![
            tokio::spawn(
                Poller {
                    engine: engine.clone(),
                    store: store.clone(),
                    directory,
                    disk: disk.clone(),
                    wake: wake.clone(),
                }
                .run(config.poll_interval, nudges, shutdown.clone()),
            ),
            tokio::spawn(periodic(config.reaper.interval, shutdown.clone(), {
                let (reaper, disk) = (reaper.clone(), disk.clone());
                move || {
                    let (reaper, disk) = (reaper.clone(), disk.clone());
                    async move {
                        if let Err(e) = reaper.sweep(Pressure::Routine).await {
                            warn!(error = %e, "reaper sweep failed");
                        }
                        if let Err(e) = disk.prune_logs().await {
                            warn!(error = %e, "cannot prune old logs");
                        }
                    }
                }
            })),
            tokio::spawn(periodic(config.disk.interval, shutdown.clone(), {
                let (disk, reaper) = (disk.clone(), reaper.clone());
                move || {
                    let (disk, reaper) = (disk.clone(), reaper.clone());
                    async move {
                        disk.tick(Some(&reaper)).await;
                    }
                }
            })),
        ];
        background.push(tokio::spawn(periodic(RELOAD_EVERY, shutdown.clone(), {
            let token_source = token_source.clone();
            move || {
                let token_source = token_source.clone();
                async move {
                    if let Err(e) = token_source.reload().await {
                        warn!(error = %e, "cannot re-read the GitHub token; keeping the current one");
                    }
                }
            }
        })));
        background.push(tokio::spawn(usage_metrics(engine.clone(), store.clone(), metrics, shutdown.clone())));
        info!(
            api = %addr,
            store = %config.store,
            worker_id = %config.worker_id,
            concurrency = config.concurrency,
            poll_interval_ms = config.poll_interval.as_millis() as u64,
            "paid serving"
        );
        Ok(Self { shutdown, grace: config.shutdown_grace, workers, background, server, addr, proxy })
    }

    /// Waits for shutdown, then for the workers (up to the grace period)
    /// and the API server.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        let workers = futures::future::join_all(self.workers);
        match tokio::time::timeout(self.grace, workers).await {
            Ok(_) => info!("workers stopped; leases released"),
            Err(_) => warn!(
                grace_secs = self.grace.as_secs(),
                "steps still running after the grace period; exiting, their leases will expire"
            ),
        }
        for b in &self.background {
            b.abort();
        }
        if let Some(p) = self.proxy {
            p.server.shutdown().await;
        }
        match tokio::time::timeout(Duration::from_secs(5), self.server).await {
            Ok(Ok(Err(e))) => warn!(error = %e, "API server error"),
            Ok(_) => {}
            Err(_) => warn!("API server did not stop in time"),
        }
        info!("paid stopped");
        Ok(())
    }
}

async fn worker_loop(engine: Engine, shutdown: CancellationToken, wake: Arc<Notify>, disk: Arc<DiskGuard>) {
    let opts = WorkerOptions {
        idle_wait: Duration::from_millis(500),
        wake: Some(wake),
        accepting: Some(Arc::new(move || disk.accepting_runs())),
    };
    if let Err(e) = engine.run_until_shutdown(shutdown, opts).await {
        warn!(error = %e, "worker loop stopped");
    }
}

/// Polls every project on the interval (issues, then the feedback on its
/// pull requests), and one project at once when a webhook nudges. One task,
/// so a nudge never races a scheduled poll.
struct Poller {
    engine: Engine,
    store: Arc<dyn Store>,
    directory: Arc<ProjectDirectory>,
    disk: Arc<DiskGuard>,
    wake: Arc<Notify>,
}

impl Poller {
    async fn run(self, every: Duration, mut nudges: Option<mpsc::Receiver<Nudge>>, shutdown: CancellationToken) {
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {
                    self.cycle(&shutdown).await;
                    next = tokio::time::Instant::now() + every;
                }
                Some(nudge) = next_nudge(&mut nudges) => self.nudged(nudge).await,
            }
        }
    }

    async fn cycle(&self, shutdown: &CancellationToken) {
        if !self.disk.accepting_runs() {
            return;
        }
        let projects = match self.store.projects().await {
            Ok(p) => p,
            Err(e) => return warn!(error = %e, "cannot list projects"),
        };
        for p in projects {
            if shutdown.is_cancelled() {
                return;
            }
            if self.admits(&p).await {
                self.poll(&p).await;
                self.follow_up(&p).await;
            }
        }
    }

    async fn nudged(&self, nudge: Nudge) {
        let id = match nudge {
            Nudge::Poll(id) | Nudge::FollowUp(id) => id,
        };
        let project = match self.store.project(id).await {
            Ok(p) => p,
            Err(e) => return warn!(project_id = %id, error = %e, "webhook: cannot read the project"),
        };
        if !self.disk.accepting_runs() || !self.admits(&project).await {
            return;
        }
        match nudge {
            Nudge::Poll(_) => self.poll(&project).await,
            Nudge::FollowUp(_) => self.follow_up(&project).await,
        }
    }

    /// Whether the project's monthly budget leaves room for new runs.
    async fn admits(&self, p: &paid_core::Project) -> bool {
        if let Some(limit) = self.directory.extras(p.id).budget_usd_per_month
            && let Ok(spent) = month_spend(self.store.as_ref(), p.id).await
            && spent >= limit
        {
            warn!(project = %p.repo, spent, limit, "monthly budget spent; not polling this project");
            return false;
        }
        true
    }

    async fn poll(&self, p: &paid_core::Project) {
        let span = tracing::info_span!("poll", project_id = %p.id, trace_id = %uuid::Uuid::now_v7().simple());
        match self.engine.poll_project(p.id).instrument(span).await {
            Ok(r) if !r.queued.is_empty() => {
                info!(project = %p.repo, queued = r.queued.len(), "queued runs");
                self.wake.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => warn!(project = %p.repo, error = %e, "poll failed"),
        }
    }

    /// PR feedback: failing checks, trusted reviews, merged/closed, votes.
    async fn follow_up(&self, p: &paid_core::Project) {
        let span = tracing::info_span!("follow_up", project_id = %p.id, trace_id = %uuid::Uuid::now_v7().simple());
        match self.engine.follow_up(p.id).instrument(span).await {
            Ok(r) => {
                for (pr, e) in &r.errors {
                    warn!(project = %p.repo, pr, error = %e, "cannot read pull request feedback");
                }
                if !r.queued.is_empty() {
                    info!(project = %p.repo, queued = r.queued.len(), "queued follow-up runs");
                    self.wake.notify_waiters();
                }
            }
            Err(e) => warn!(project = %p.repo, error = %e, "follow-up failed"),
        }
    }
}

async fn next_nudge(nudges: &mut Option<mpsc::Receiver<Nudge>>) -> Option<Nudge> {
    match nudges {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn month_spend(store: &dyn Store, project: paid_core::ProjectId) -> paid_core::Result<f64> {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    let mut micros = 0i64;
    for run in store.runs(&RunFilter { project_id: Some(project), ..Default::default() }).await? {
        for u in store.usage(run.id).await? {
            if u.at.year() == now.year() && u.at.month() == now.month() {
                micros += u.cost_micros.unwrap_or(0);
            }
        }
    }
    Ok(micros as f64 / 1e6)
}

async fn periodic<F, Fut>(every: Duration, shutdown: CancellationToken, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        f().await;
    }
}

/// Adds the usage agents reported for each ended run to the token and cost
/// counters (the metering proxy records what passes through it).
async fn usage_metrics(engine: Engine, store: Arc<dyn Store>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut events = engine.subscribe();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.recv() => e,
        };
        let (run_id, to) = match event {
            Ok(EngineEvent::Transition { run_id, to, .. }) => (run_id, to),
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        if !to.is_terminal() {
            continue;
        }
        let (Ok(run), Ok(usage)) = (store.run(run_id).await, store.usage(run_id).await) else { continue };
        let project_id = run.project_id.to_string();
        // The proxy counts what it meters itself; only what agents reported
        // (provider `agent:<kind>`) is added here.
        for u in usage.into_iter().filter(|u| u.provider.starts_with("agent:")) {
            for (direction, n) in [
                ("input", u.usage.input),
                ("cache_read", u.usage.cache_read),
                ("cache_write", u.usage.cache_write),
                ("output", u.usage.output),
                ("reasoning", u.usage.reasoning),
            ] {
                if n > 0 {
                    metrics
                        .tokens_used_total
                        .get_or_create(&TokenLabels {
                            project_id: project_id.clone(),
                            model: u.model.clone(),
                            direction: direction.into(),
                        })
                        .inc_by(n);
                }
            }
            if let Some(m) = u.cost_micros {
                metrics
                    .cost_cents_total
                    .get_or_create(&ModelLabels { project_id: project_id.clone(), model: u.model.clone() })
                    .inc_by(m as f64 / 10_000.0);
            }
        }
    }
}
