//! [`Server`]: the daemon `paid serve` runs, and, without its HTTP API and
//! poller, what `paid-worker` runs.
//!
//! [`Server::from_config`] checks everything that can be checked before
//! anything starts (the configuration, the API token, the master key: every
//! stored secret must decrypt; the store, the Docker engine, the agents the
//! projects name) and wires the parts; [`Server::run`] starts:
//!
//! - the **poller** ([`crate::poller`]), unless [`ServerBuilder::poller`]
//!   turned it off;
//! - **workers** (`concurrency` of them), which claim runs and drive them
//!   with the engine; they claim nothing while the disk guard reports an
//!   emergency;
//! - the **HTTP API** with `/metrics` and the health endpoints (only the
//!   health endpoints and `/metrics` with [`ServerBuilder::api`] off), and
//!   with `api.metrics_bind`, `/metrics` alone on a listener of its own;
//! - the **reaper**, the **disk guard** and the forge token reload.
//!
//! When `shutdown` is cancelled the workers stop claiming, the current step
//! of each run finishes (up to `shutdown_grace`), and leases are released,
//! so a restarted server (or another worker) resumes the runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use paid_core::engine::{Engine, WorkerOptions};
use paid_core::metrics::Metrics;
use paid_core::{Agent, Forge, SandboxRuntime, Store, Workspaces};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::disk::{DiskGuard, FsProbe, StatvfsProbe};
use crate::forge_token::{ForgeToken, RELOAD_EVERY};
use crate::poller::Poller;
use crate::reaper::{Pressure, Reaper};
use crate::stores::OpenedStore;
use crate::webhooks::Nudge;

/// Builds a [`Server`]; every port not given is wired from the
/// configuration, exactly as `paid serve` does.
pub struct ServerBuilder {
    pub(crate) config: Config,
    pub(crate) probe: Arc<dyn FsProbe>,
    pub(crate) store: Option<OpenedStore>,
    pub(crate) runtime: Option<Arc<dyn SandboxRuntime>>,
    pub(crate) forge: Option<Arc<dyn Forge>>,
    pub(crate) workspaces: Option<Arc<dyn Workspaces>>,
    pub(crate) agents: Option<Vec<Arc<dyn Agent>>>,
    pub(crate) api: bool,
    pub(crate) poller: bool,
    pub(crate) ready_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config.file)
            .field("api", &self.api)
            .field("poller", &self.poller)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// A builder on `config`, with the HTTP API and the poller on.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            probe: Arc::new(StatvfsProbe),
            store: None,
            runtime: None,
            forge: None,
            workspaces: None,
            agents: None,
            api: true,
            poller: true,
            ready_file: None,
        }
    }

    /// Uses this store instead of opening `store.url`. Give its secrets
    /// and learning capabilities with [`ServerBuilder::opened_store`].
    pub fn store(self, store: Arc<dyn Store>) -> Self {
        self.opened_store(OpenedStore {
            store,
            secrets: None,
            no_secrets_reason: "this store was given without a secrets capability".into(),
            file: None,
            learning: None,
        })
    }

    /// Uses this store, with its capabilities.
    pub fn opened_store(mut self, store: OpenedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses this sandbox runtime instead of the Docker engine of `[docker]`.
    pub fn runtime(mut self, runtime: Arc<dyn SandboxRuntime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Uses this forge instead of GitHub at `github.api_url`.
    pub fn forge(mut self, forge: Arc<dyn Forge>) -> Self {
        self.forge = Some(forge);
        self
    }

    /// Uses these workspaces instead of git2 worktrees under `data_dir`.
    pub fn workspaces(mut self, workspaces: Arc<dyn Workspaces>) -> Self {
        self.workspaces = Some(workspaces);
        self
    }

    /// Uses these agents instead of the built-in plugins plus `[agents.*]`.
    pub fn agents(mut self, agents: Vec<Arc<dyn Agent>>) -> Self {
        self.agents = Some(agents);
        self
    }

    /// Serves the `/api/v1` API and webhooks (on by default). Off, the
    /// listener serves only `/health`, `/health/ready` and `/metrics`.
    pub fn api(mut self, on: bool) -> Self {
        self.api = on;
        self
    }

    /// Polls projects and PR feedback (on by default). A cluster's
    /// `paid-worker`s leave polling to the `paid serve` nodes.
    pub fn poller(mut self, on: bool) -> Self {
        self.poller = on;
        self
    }

    /// Once every listener is bound, writes their addresses to `path` as
    /// JSON, atomically ([`crate::ready`]): with port 0 in `api.bind`,
    /// `api.metrics_bind` or `proxy.bind`, this is where they ended up.
    pub fn ready_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ready_file = Some(path.into());
        self
    }

    /// Measures the disk through `probe` instead of `statvfs` (tests).
    pub fn disk_probe(mut self, probe: Arc<dyn FsProbe>) -> Self {
        self.probe = probe;
        self
    }

    /// Checks everything and wires the parts; binds the listener. Nothing
    /// runs until [`Server::run`].
    pub async fn build(self) -> anyhow::Result<Server> {
        crate::wiring::build(self).await
    }
}

/// A wired server, ready to [`run`](Server::run).
pub struct Server {
    pub(crate) config: Config,
    pub(crate) engine: Engine,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) addr: SocketAddr,
    pub(crate) app: axum::Router,
    pub(crate) metrics_listener: Option<crate::api::MetricsListener>,
    pub(crate) nudges: Option<tokio::sync::mpsc::Receiver<Nudge>>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) disk: Arc<DiskGuard>,
    pub(crate) reaper: Arc<Reaper>,
    pub(crate) token_source: Arc<ForgeToken>,
    pub(crate) proxy: Option<crate::proxy::StartedProxy>,
    pub(crate) poller: bool,
    pub(crate) api: bool,
    pub(crate) ready_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Server {
    /// Wires everything from `config`, as `paid serve` does.
    pub async fn from_config(config: Config) -> anyhow::Result<Self> {
        ServerBuilder::new(config).build().await
    }

    /// A builder, to swap ports or turn parts off.
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder::new(config)
    }

    /// Where the HTTP listener is bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` has its own listener (`api.metrics_bind`), if it has.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|m| m.addr)
    }

    /// The engine the workers drive.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The metrics every part records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metering proxy's address, when providers are configured.
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy.as_ref().map(|p| p.server.addr())
    }

    /// Runs until `shutdown` is cancelled, then stops gracefully: workers
    /// finish their current step (up to `shutdown_grace`) and release their
    /// leases; the warm pool is drained and the listener closed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Server {
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
            api,
            ready_file,
        } = self;
        let ready = crate::ready::Ready {
            api: api.then_some(addr),
            health: Some(addr),
            metrics: Some(metrics_listener.as_ref().map_or(addr, |m| m.addr)),
            proxy: proxy.as_ref().map(|p| p.server.addr()),
            ..crate::ready::Ready::this_process()
        };
        // Measure once and sweep leftovers before claiming anything.
        disk.tick(Some(&reaper)).await;
        match reaper.sweep(Pressure::Routine).await {
            Ok(r) if !r.sandboxes.is_empty() || !r.worktrees.is_empty() => {
                info!(sandboxes = r.sandboxes.len(), worktrees = r.worktrees.len(), "startup sweep removed leftovers")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "startup sweep failed"),
        }
        let server_shutdown = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { server_shutdown.cancelled().await }).await
        });
        let metrics_server = metrics_listener.map(|m| {
            let stop = shutdown.clone();
            info!(listen = %m.addr, "/metrics listening on its own address");
            tokio::spawn(async move {
                axum::serve(m.listener, m.app).with_graceful_shutdown(async move { stop.cancelled().await }).await
            })
        });
        let mut workers = Vec::new();
        for _ in 0..config.concurrency {
            workers.push(tokio::spawn(worker_loop(engine.clone(), shutdown.clone(), wake.clone(), disk.clone())));
        }
        let mut background = Vec::new();
        if poller {
            let p = Poller {
                engine: engine.clone(),
                store: store.clone(),
                disk: disk.clone(),
                wake,
                owner: config.worker_id.clone(),
                lease: config.poll_interval,
            };
            background.push(tokio::spawn(p.run(config.poll_interval, nudges, shutdown.clone())));
        }
        background.push(tokio::spawn(periodic(config.reaper.interval, shutdown.clone(), {
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
        })));
        background.push(tokio::spawn(periodic(config.disk.interval, shutdown.clone(), {
            let (disk, reaper) = (disk.clone(), reaper.clone());
            move || {
                let (disk, reaper) = (disk.clone(), reaper.clone());
                async move {
                    disk.tick(Some(&reaper)).await;
                }
            }
        })));
        background.push(tokio::spawn(periodic(RELOAD_EVERY, shutdown.clone(), {
            move || {
                let token_source = token_source.clone();
                async move {
                    if let Err(e) = token_source.reload().await {
                        warn!(error = %e, "cannot re-read the GitHub token; keeping the current one");
                    }
                }
            }
        })));
        background.push(tokio::spawn(crate::usage::usage_metrics(
            engine.clone(),
            store.clone(),
            metrics,
            shutdown.clone(),
        )));
        info!(
            listen = %addr,
            store = %config.store,
            worker_id = %config.worker_id,
            concurrency = config.concurrency,
            poll_interval_ms = config.poll_interval.as_millis() as u64,
            poller,
            "paid serving"
        );
        // Every listener was bound in `build`; the HTTP servers are spawned.
        if let Some(path) = &ready_file {
            if let Err(e) = ready.write(path) {
                shutdown.cancel();
                return Err(e);
            }
            info!(path = %path.display(), "ready file written");
        }

        shutdown.cancelled().await;
        let grace = config.shutdown_grace;
        match tokio::time::timeout(grace, futures::future::join_all(workers)).await {
            Ok(_) => info!("workers stopped; leases released"),
            Err(_) => warn!(
                grace_secs = grace.as_secs(),
                "steps still running after the grace period; exiting, their leases will expire"
            ),
        }
        for b in &background {
            b.abort();
        }
        if let Err(e) = reaper.shutdown().await {
            warn!(error = %e, "cannot drain the sandbox runtime");
        }
        if let Some(p) = proxy {
            p.server.shutdown().await;
        }
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server error"),
            Ok(_) => {}
            Err(_) => warn!("HTTP server did not stop in time"),
        }
        if let Some(m) = metrics_server {
            match tokio::time::timeout(Duration::from_secs(5), m).await {
                Ok(Ok(Err(e))) => warn!(error = %e, "metrics listener error"),
                Ok(_) => {}
                Err(_) => warn!("metrics listener did not stop in time"),
            }
        }
        info!("paid stopped");
        Ok(())
    }
}

/// Runs a server until SIGTERM or SIGINT; a second signal exits at once.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    serve_with(Server::builder(config)).await
}

/// [`serve`] with a builder (e.g. `paid-worker` turns the API and poller off).
pub async fn serve_with(builder: ServerBuilder) -> anyhow::Result<()> {
    let server = builder.build().await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    server.run(shutdown).await
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
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
    tracing::error!("second signal: exiting now; leases of runs in progress expire and another worker resumes them");
    std::process::exit(130);
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
