//! `paid-worker`: one stateless worker of a cluster sharing one PostgreSQL
//! database.
//!
//! Run as many as you like, on any number of machines, against one database
//! URL. Each loops: claim the next run (with a lease), drive it to its end
//! (heartbeating the lease), repeat. When idle it waits on `LISTEN/NOTIFY`
//! and polls as a fallback. A worker that dies loses its leases when they
//! expire, and another resumes its runs from their journals.
//!
//! On SIGTERM (or Ctrl-C) it stops claiming, lets the current step finish,
//! releases the lease and exits 0; after `--shutdown-grace` it gives up on
//! the step, releases its leases and exits all the same.
//!
//! ```text
//! paid-worker --database-url postgres://paid@db/paid --health-addr 0.0.0.0:9090 --backends instant
//! ```
//!
//! Backends: `instant` (in-process runtime, workspaces, forge and agent that
//! record each side effect in the database; for load and failure tests).
//! Docker and GitHub backends are wired by the `paid` daemon.

pub mod health;
pub mod retry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use paid_core::engine::{Engine, EngineConfig, WorkerOptions};
use paid_core::testing::instant::InstantBackends;
use paid_core::{RunFilter, Store};
use paid_store_postgres::{PgStore, PgStoreOptions, Wake};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::retry::RetryStore;

/// Which ports the worker's engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backends {
    /// In-process sandbox, workspaces, forge and agent that finish at once
    /// and record every side effect in the database (for load, crash and
    /// failover tests).
    Instant,
}

/// Command-line settings of `paid-worker`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "paid-worker",
    version,
    about = "A stateless Paid worker on a shared PostgreSQL database",
    args_override_self = true
)]
pub struct WorkerArgs {
    /// The database, `postgres://user:password@host:port/db`.
    #[arg(long, env = "PAID_DATABASE_URL")]
    pub database_url: String,
    /// The schema holding Paid's tables (created and migrated on start).
    #[arg(long, env = "PAID_DATABASE_SCHEMA", default_value = "public")]
    pub schema: String,
    /// Connections in this worker's pool.
    #[arg(long, default_value_t = 8)]
    pub pool_size: u32,
    /// This worker's lease owner name (default: `<hostname>-<pid>`); unique per process.
    #[arg(long, env = "PAID_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Lease length in milliseconds: a dead worker's runs are taken over after this.
    #[arg(long, default_value_t = 60_000)]
    pub lease_ms: u64,
    /// Heartbeat interval in milliseconds (default: a quarter of the lease).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// How often an idle worker looks for work without a notification, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub poll_ms: u64,
    /// How long a store call keeps retrying while the database is unreachable, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub db_patience_ms: u64,
    /// Where to serve `/health` and `/health/ready` (none when unset).
    #[arg(long, env = "PAID_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,
    /// On SIGTERM, how long to wait for the current step before releasing its lease anyway, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,
    /// Ignore projects' `max_concurrent_runs` when claiming.
    #[arg(long)]
    pub no_project_limits: bool,
    /// Do not wait for each write's WAL flush (`synchronous_commit = off`): much less latency on
    /// slow disks; a database *crash* may lose the last writes (see `PgStoreOptions::synchronous_commit`).
    #[arg(long)]
    pub async_commit: bool,
    /// The ports the engine uses.
    #[arg(long, value_enum, default_value = "instant")]
    pub backends: Backends,
    /// Instant backends: where worktrees (empty directories) go.
    #[arg(long, env = "PAID_INSTANT_DIR")]
    pub instant_dir: Option<PathBuf>,
    /// Instant backends: make the agent take MS milliseconds on issue N (`N=MS`; repeatable,
    /// or comma-separated in the environment).
    #[arg(long = "instant-slow-issue", env = "PAID_INSTANT_SLOW", value_delimiter = ',', value_parser = parse_slow)]
    pub instant_slow: Vec<(u64, u64)>,
    /// Log as JSON lines (default) or text.
    #[arg(long, default_value = "json")]
    pub log_format: LogFormat,
}

/// How the worker logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

fn parse_slow(s: &str) -> Result<(u64, u64), String> {
    let (issue, ms) = s.split_once('=').ok_or_else(|| format!("{s:?} is not ISSUE=MILLISECONDS"))?;
    let issue = issue.trim().parse().map_err(|e| format!("issue in {s:?}: {e}"))?;
    let ms = ms.trim().parse().map_err(|e| format!("milliseconds in {s:?}: {e}"))?;
    Ok((issue, ms))
}

impl WorkerArgs {
    /// The lease owner name.
    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
            let host = if host.is_empty() { "worker".to_string() } else { host };
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Sets up logging to stderr.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialization (tests) keeps the first.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the worker until SIGTERM or Ctrl-C.
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: finishing the current step, then exiting"),
                _ = tokio::signal::ctrl_c() => info!("interrupted: finishing the current step, then exiting"),
            }
            stop.cancel();
        });
    }
    run_until(args, stop).await
}

/// Runs the worker until `stop` is cancelled.
pub async fn run_until(args: WorkerArgs, stop: CancellationToken) -> anyhow::Result<()> {
    if args.lease_ms < 100 {
        bail!("--lease-ms must be at least 100 (got {})", args.lease_ms);
    }
    let worker_id = args.worker_id();
    let options = PgStoreOptions::new(&args.database_url)
        .schema(&args.schema)
        .max_connections(args.pool_size.max(2))
        .acquire_timeout(Duration::from_secs(5))
        .application_name(format!("paid-worker {worker_id}"))
        .project_limits(!args.no_project_limits)
        .synchronous_commit(!args.async_commit);
    let pg = connect(options, &stop).await?;
    let store: Arc<dyn Store> =
        Arc::new(RetryStore::new(Arc::new(pg.clone()), Duration::from_millis(args.db_patience_ms)));

    let lease = Duration::from_millis(args.lease_ms);
    let config = EngineConfig {
        worker_id: worker_id.clone(),
        lease,
        heartbeat_interval: args.heartbeat_ms.map(Duration::from_millis).unwrap_or(lease / 4),
        ..EngineConfig::default()
    };
    let engine = match args.backends {
        Backends::Instant => {
            let dir = args.instant_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("paid-instant"));
            let mut backends = InstantBackends::recording(store.clone(), dir);
            for (issue, ms) in &args.instant_slow {
                backends = backends.slow_issue(*issue, Duration::from_millis(*ms));
            }
            backends.engine_builder().store(store.clone()).config(config).build()?
        }
    };

    let draining = Arc::new(AtomicBool::new(false));
    // Health stays up while draining (readiness then says so), until the end.
    let health_stop = CancellationToken::new();
    let health = match args.health_addr {
        Some(addr) => {
            let state =
                health::HealthState { worker_id: worker_id.clone(), store: pg.clone(), draining: draining.clone() };
            let (bound, task) = health::serve(addr, state, health_stop.clone()).await?;
            info!(addr = %bound, "health endpoints listening");
            Some(task)
        }
        None => None,
    };

    let wake = Arc::new(Notify::new());
    let forwarder = forward_wakeups(pg.clone(), wake.clone(), stop.clone());
    info!(worker_id = %worker_id, schema = %args.schema, lease_ms = args.lease_ms, "worker started");

    let shutdown = CancellationToken::new();
    let mut work = tokio::spawn({
        let (engine, shutdown, wake) = (engine.clone(), shutdown.clone(), wake.clone());
        let poll = Duration::from_millis(args.poll_ms);
        async move {
            let opts = WorkerOptions { wake: Some(wake), ..WorkerOptions::polling(poll) };
            engine.run_until_shutdown(shutdown, opts).await
        }
    });
    let finished = tokio::select! {
        done = &mut work => Some(done),
        () = stop.cancelled() => None,
    };
    draining.store(true, Ordering::SeqCst);
    shutdown.cancel();
    let finished = match finished {
        Some(done) => done,
        None => {
            let grace = Duration::from_millis(args.shutdown_grace_ms);
            match tokio::time::timeout(grace, &mut work).await {
                Ok(done) => done,
                Err(_) => {
                    warn!(?grace, "the current step did not finish in time; releasing its lease");
                    work.abort();
                    let _ = work.await;
                    release_all(&engine, &worker_id).await;
                    Ok(Ok(0))
                }
            }
        }
    };
    forwarder.abort();
    let runs = finished.context("the worker loop panicked")??;
    info!(worker_id = %worker_id, finished_runs = runs, "worker stopped");
    if let Some(task) = health {
        health_stop.cancel();
        let _ = task.await;
    }
    pg.close().await;
    Ok(())
}

/// Connects, retrying while the database is not up yet (until `stop`).
async fn connect(options: PgStoreOptions, stop: &CancellationToken) -> anyhow::Result<PgStore> {
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match PgStore::connect_with(options.clone()).await {
            Ok(store) => return Ok(store),
            Err(e) if e.is_retryable() && attempt < 30 => {
                warn!(error = %e, attempt, "database not reachable yet; retrying");
                tokio::select! {
                    () = stop.cancelled() => bail!("stopped while connecting to the database"),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e).context("connecting to the database"),
        }
    }
    bail!("unreachable")
}

/// Turns the store's NOTIFY wake-ups into permits on `wake` (a permit
/// given while the worker is busy is taken by its next idle wait).
fn forward_wakeups(store: PgStore, wake: Arc<Notify>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener = loop {
            match store.work_listener().await {
                Ok(l) => break l,
                Err(e) => {
                    warn!(error = %e, "cannot LISTEN for work yet; polling meanwhile");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                woke = listener.wait(Duration::from_secs(3600)) => {
                    if woke == Wake::Notified {
                        wake.notify_one();
                    }
                }
            }
        }
    })
}

/// Releases every lease this worker still holds (after an aborted step).
async fn release_all(engine: &Engine, worker_id: &str) {
    let store = engine.store();
    match store.runs(&RunFilter { active_only: true, ..RunFilter::default() }).await {
        Ok(runs) => {
            for run in runs.iter().filter(|r| r.lease_owner.as_deref() == Some(worker_id)) {
                match store.release(run.id, worker_id).await {
                    Ok(()) => info!(run_id = %run.id, state = %run.state, "released lease"),
                    Err(e) => warn!(run_id = %run.id, error = %e, "could not release lease; it will expire"),
                }
            }
        }
        Err(e) => warn!(error = %e, "could not list runs to release leases; they will expire"),
    }
}
