//! A worker on the in-process instant backends (feature `load-test`): the
//! sandbox, workspaces, forge and agent finish at once and record each side
//! effect in the database. For load, crash and failover tests only.
//!
//! Each loops: claim the next run (with a lease), drive it to its end
//! (heartbeating the lease), repeat. When idle it waits on `LISTEN/NOTIFY`
//! and polls as a fallback. On `stop` it stops claiming, lets the current
//! step finish, releases the lease and returns; after `shutdown_grace` it
//! gives up on the step and releases its leases all the same.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use paid_core::engine::{Engine, EngineConfig, WorkerOptions};
use paid_core::testing::instant::InstantBackends;
use paid_core::{RunFilter, Store};
use paid_store_postgres::{PgStore, PgStoreOptions, Wake};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::health;
use paid_core::layers::RetryStore;

/// Settings of an instant-backend worker.
#[derive(Debug, Clone)]
pub struct InstantWorker {
    /// The database, `postgres://user:password@host:port/db`.
    pub database_url: String,
    /// The schema holding Paid's tables (created and migrated on start).
    pub schema: String,
    /// Connections in this worker's pool.
    pub pool_size: u32,
    /// This worker's lease owner name; unique per process.
    pub worker_id: String,
    /// Lease length in milliseconds: a dead worker's runs are taken over after this.
    pub lease_ms: u64,
    /// Heartbeat interval in milliseconds (default: a quarter of the lease).
    pub heartbeat_ms: Option<u64>,
    /// How often an idle worker looks for work without a notification, in milliseconds.
    pub poll_ms: u64,
    /// How long a store call keeps retrying while the database is unreachable, in milliseconds.
    pub db_patience_ms: u64,
    /// Where to serve `/health` and `/health/ready` (none when unset).
    pub health_addr: Option<SocketAddr>,
    /// On stop, how long to wait for the current step before releasing its lease anyway, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Ignore projects' `max_concurrent_runs` when claiming.
    pub no_project_limits: bool,
    /// Do not wait for each write's WAL flush (`synchronous_commit = off`).
    pub async_commit: bool,
    /// Where worktrees (empty directories) go.
    pub instant_dir: Option<PathBuf>,
    /// Make the agent take `ms` milliseconds on issue `n`: `(n, ms)`.
    pub instant_slow: Vec<(u64, u64)>,
    /// Where to write the bound health address once listening
    /// ([`crate::ready`]).
    pub ready_file: Option<PathBuf>,
}

/// Runs the worker until `stop` is cancelled.
pub async fn run_until(args: InstantWorker, stop: CancellationToken) -> anyhow::Result<()> {
    if args.lease_ms < 100 {
        bail!("--lease-ms must be at least 100 (got {})", args.lease_ms);
    }
    let worker_id = args.worker_id.clone();
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
    let dir = args.instant_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("paid-instant"));
    let mut backends = InstantBackends::recording(store.clone(), dir);
    for (issue, ms) in &args.instant_slow {
        backends = backends.slow_issue(*issue, Duration::from_millis(*ms));
    }
    let engine = backends.engine_builder().store(store.clone()).config(config).build()?;

    let draining = Arc::new(AtomicBool::new(false));
    // Health stays up while draining (readiness then says so), until the end.
    let health_stop = CancellationToken::new();
    let mut ready = crate::ready::Ready::this_process();
    let health = match args.health_addr {
        Some(addr) => {
            let state =
                health::HealthState { worker_id: worker_id.clone(), store: pg.clone(), draining: draining.clone() };
            let (bound, task) = health::serve(addr, state, health_stop.clone()).await?;
            info!(addr = %bound, "health endpoints listening");
            ready.health = Some(bound);
            Some(task)
        }
        None => None,
    };
    if let Some(path) = &args.ready_file {
        ready.write(path)?;
        info!(path = %path.display(), "ready file written");
    }

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
    match store.runs(&RunFilter::active()).await {
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
