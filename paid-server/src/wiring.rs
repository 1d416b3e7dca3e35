//! Wiring the parts from the configuration (and whatever ports a
//! [`ServerBuilder`] was given) into a [`Server`].

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context as _;
use paid_core::engine::{Engine, EngineConfig, StepTimeouts};
use paid_core::metrics::Metrics;
use paid_core::{Clock, FixedSelector, SandboxRuntime, SystemClock, Workspaces};
use paid_github::{GitHubConfig, GitHubForge, GitWorkspaces, GitWorkspacesConfig};
use paid_runtime_docker::DockerRuntime;
use prometheus_client::registry::Registry;
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::api::{self, ApiState};
use crate::config::ConfigError;
use crate::disk::{DiskGuard, DiskPaths};
use crate::forge_token::ForgeToken;
use crate::health::Readiness;
use crate::projects::{ProjectDirectory, ProjectSelector, sync_declared};
use crate::reaper::Reaper;
use crate::server::{Server, ServerBuilder};
use crate::stores::{agents, api_token, forge_token, open_store};
use crate::vault::{Vault, load_keyring};

pub(crate) async fn build(b: ServerBuilder) -> anyhow::Result<Server> {
    let ServerBuilder {
        config,
        probe,
        store,
        runtime,
        forge,
        workspaces,
        agents: given_agents,
        api: with_api,
        poller,
        ready_file,
    } = b;
    let cfg_err = |key: &str, reason: String| ConfigError { file: config.file.clone(), key: key.into(), reason };
    // `/metrics` behind the token needs it on a worker without the API too.
    let token = if with_api || config.api.metrics_auth { Some(api_token(&config)?) } else { None };
    let webhook_secret = if with_api { crate::webhooks::secret(&config)? } else { None };
    let keyring = load_keyring(&config.keys).map_err(|e| {
        let key = if config.keys.master_key_file.is_some() { "keys.master_key_file" } else { "keys.master_key_env" };
        cfg_err(key, e.to_string())
    })?;
    for (name, p) in &config.providers {
        if let Some(f) = &p.key_file
            && let Err(e) = std::fs::metadata(f)
        {
            return Err(
                cfg_err(&format!("providers.{name}.key_file"), format!("cannot read {}: {e}", f.display())).into()
            );
        }
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let opened = match store {
        Some(s) => s,
        None => open_store(&config.store, config.store_schema.as_deref()).await?,
    };
    let store = opened.store.clone();
    let vault = Arc::new(Vault::new(opened.secrets.clone(), opened.no_secrets_reason.clone(), keyring, clock.clone()));
    let n = vault.verify_all().await.context("cannot read the stored secrets with the configured master key")?;
    if n > 0 {
        info!(
            secrets = n,
            key_id = vault.key_id().await.unwrap_or_default(),
            "stored secrets decrypt with the configured key"
        );
    }
    let first_token = forge_token(&config, &vault).await?;
    if first_token.is_none() && forge.is_none() {
        warn!("no GitHub token: set {} or store one with `paid token set github`", config.github.token_env);
    }

    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);

    // The metering proxy first: with egress control, sandboxes reach it
    // through the forwarder, which needs its port.
    let mut proxy = crate::proxy::start(&config, store.clone(), &vault, metrics.clone()).await?;
    // The Docker engine, unless another runtime was given.
    let (runtime, docker): (Arc<dyn SandboxRuntime>, Option<DockerRuntime>) = match runtime {
        Some(r) => (r, None),
        None => {
            let docker_config = crate::egress::docker_config(&config, proxy.as_ref().map(|p| p.server.addr().port()));
            let docker = crate::egress::connect(docker_config, proxy.as_mut())
                .await
                .context("connecting to the Docker engine")?
                .with_metrics(metrics.clone());
            (Arc::new(docker.clone()), Some(docker))
        }
    };
    // The forge and the workspaces read the token on each request, so a
    // newly stored one is used without a restart.
    let token_source = Arc::new(ForgeToken::new(config.clone(), vault.clone(), first_token.clone()));
    let forge_given = forge.is_some();
    let forge: Arc<dyn paid_core::Forge> = match forge {
        Some(f) => f,
        None => {
            let gh = GitHubConfig::new()
                .base_uri(config.github.api_url.clone())
                .metrics(metrics.clone())
                .token_id("github")
                .token_source(Arc::new(token_source.shared()))
                .capabilities(paid_github::Capabilities::new().sub_issues(config.github.sub_issues));
            Arc::new(GitHubForge::new(gh)?)
        }
    };
    let workspaces_root = config.data_dir.join("workspaces");
    let workspaces: Arc<dyn Workspaces> = match workspaces {
        Some(w) => w,
        None => {
            let wc = GitWorkspacesConfig::new(workspaces_root.clone())
                .metrics(metrics.clone())
                .token_source(Arc::new(token_source.shared()))
                // The token goes to git only on the API's web host.
                .forge_origin(paid_github::WebOrigin::from_api_base(&config.github.api_url)?);
            Arc::new(GitWorkspaces::new(wc))
        }
    };

    let agents = match given_agents {
        Some(a) => a,
        None => agents(&config)?,
    };
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
    for p in store.projects().await? {
        if !kinds.contains(&p.agent) {
            warn!(project = %p.repo, agent = %p.agent, "project names an agent this server does not have; its runs will fail");
        }
    }

    let default =
        config.engine.models.first().map(|m| FixedSelector { provider: m.provider.clone(), model: m.model.clone() });
    let engine_config = EngineConfig {
        worker_id: config.worker_id.clone(),
        lease: config.engine.lease,
        heartbeat_interval: config.engine.heartbeat,
        max_iterations: config.engine.max_iterations,
        timeouts: StepTimeouts { agent: config.engine.agent_timeout, ..StepTimeouts::default() },
        author_name: config.engine.author_name.clone(),
        author_email: config.engine.author_email.clone(),
        models: config.engine.models.clone(),
        worktree_limits: config.engine.worktree_limits,
        ..EngineConfig::default()
    };
    let mut builder = Engine::builder()
        .store(store.clone())
        .runtime(runtime.clone())
        .forge(forge)
        .workspaces(workspaces.clone())
        .selector(Arc::new(ProjectSelector::new(store.clone(), default)))
        .metrics(metrics.clone())
        .clock(clock.clone())
        .config(engine_config);
    for a in agents {
        builder = builder.agent(a);
    }
    for p in config.projects.iter().filter(|p| p.compare.is_some()) {
        let repo = p.repo.to_string();
        let stored = crate::projects::by_repo(store.as_ref(), &repo).await?;
        if let (Some(project), Some(spec)) = (stored, p.compare.clone()) {
            info!(project = %repo, candidates = spec.candidates.len(), "every run of this project is a comparison");
            builder = builder.compare(project.id, spec);
        }
    }
    match &proxy {
        Some(p) => {
            info!(addr = %p.server.addr(), sandbox_url = %config.proxy.sandbox_url, "metering proxy listening");
            let capped = crate::proxy::register_budgets(&p.proxy, store.as_ref()).await?;
            info!(projects = capped, "per-project budgets registered with the proxy");
            builder = builder.credentials(p.credentials.clone());
        }
        None => info!("no providers configured: the metering proxy is not started; agents get no proxy endpoint"),
    }
    let engine = builder.build()?;

    let readiness = Arc::new(Readiness::new(
        store.clone(),
        docker.clone(),
        config.github.api_url.clone(),
        token_source.clone(),
        forge_given,
    ));
    let reaper = Arc::new(Reaper::new(engine.clone(), docker.clone(), config.reaper.clone()));
    let disk = Arc::new(DiskGuard::new(
        config.disk.clone(),
        probe,
        DiskPaths {
            repos: workspaces_root.join("mirrors"),
            worktrees: workspaces_root.join("worktrees"),
            database: opened.file.clone(),
        },
        docker.clone(),
        metrics.clone(),
        store.clone(),
    ));

    let wake = Arc::new(Notify::new());
    let registry = Arc::new(registry);
    let state = Arc::new(ApiState {
        store: store.clone(),
        engine: engine.clone(),
        vault: vault.clone(),
        registry: registry.clone(),
        token_digest: token.as_ref().map(|t| api::digest(t.expose_secret())),
        wake: wake.clone(),
        readiness,
        projects: directory.clone(),
        disk: disk.clone(),
        github_api: config.github.api_url.clone(),
        agent_kinds: kinds.iter().cloned().collect(),
        max_body_bytes: config.api.max_body_bytes,
        worker_id: config.worker_id.clone(),
        learning: opened.learning.clone(),
        proxy: proxy.as_ref().map(|p| p.proxy.clone()),
        forge_token: token_source.clone(),
        api: config.api.clone(),
        data_dir: config.data_dir.clone(),
    });
    let listener = tokio::net::TcpListener::bind(config.api.bind)
        .await
        .map_err(|e| cfg_err("api.bind", format!("cannot listen on {}: {e}", config.api.bind)))?;
    let addr = listener.local_addr()?;
    let metrics_listener = api::MetricsListener::bind(&state).await.map_err(|e| {
        cfg_err("api.metrics_bind", format!("cannot listen on {}: {e}", config.api.metrics_bind.unwrap_or(addr)))
    })?;
    let app = if with_api { api::router(state) } else { api::health_router(state) };
    // GitHub webhooks, outside `/api` (GitHub signs; it sends no bearer token).
    let (app, nudges) = match webhook_secret {
        Some(secret) => {
            let (routes, nudges) = crate::webhooks::start(secret, store.clone(), clock.clone(), &config.github);
            info!(path = crate::webhooks::PATH, "GitHub webhooks accepted");
            (app.nest(crate::webhooks::PATH, routes), Some(nudges))
        }
        None => (app, None),
    };
    Ok(Server {
        config,
        engine,
        store,
        metrics,

        listener,
        addr,
        app,
        metrics_listener,
        nudges,
        wake,
        disk,
        reaper,
        token_source,
        proxy,
        poller,
        api: with_api,
        ready_file,
    })
}
