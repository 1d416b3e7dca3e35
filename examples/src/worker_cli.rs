//! The command line of `paid-worker` (see `src/bin/paid-worker.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Which ports the worker's engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backends {
    /// Docker, GitHub, the metering proxy and the agents, wired from
    /// `--config` exactly as `paid serve` wires them.
    Real,
    /// In-process sandbox, workspaces, forge and agent that finish at once
    /// and record every side effect in the database (for load, crash and
    /// failover tests). Needs the `load-test` feature.
    #[cfg(feature = "load-test")]
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
    /// The configuration file (real backends): the same `paid.toml` as `paid serve`.
    #[arg(long, env = "PAID_CONFIG", default_value = "paid.toml")]
    pub config: std::path::PathBuf,
    /// The database, `postgres://user:password@host:port/db` (instant backends;
    /// real backends read `store.url`, which `PAID_STORE_URL` overrides).
    #[arg(help_heading = "Instant backends (feature load-test)", long, env = "PAID_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The schema holding Paid's tables (created and migrated on start).
    #[arg(
        help_heading = "Instant backends (feature load-test)",
        long,
        env = "PAID_DATABASE_SCHEMA",
        default_value = "public"
    )]
    pub schema: String,
    /// Connections in this worker's pool.
    #[arg(help_heading = "Instant backends (feature load-test)", long, default_value_t = 8)]
    pub pool_size: u32,
    /// This worker's lease owner name (default: `<hostname>-<pid>`); unique per process.
    #[arg(long, env = "PAID_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Lease length in milliseconds: a dead worker's runs are taken over after this.
    #[arg(help_heading = "Instant backends (feature load-test)", long, default_value_t = 60_000)]
    pub lease_ms: u64,
    /// Heartbeat interval in milliseconds (default: a quarter of the lease).
    #[arg(help_heading = "Instant backends (feature load-test)", long)]
    pub heartbeat_ms: Option<u64>,
    /// How often an idle worker looks for work without a notification, in milliseconds.
    #[arg(help_heading = "Instant backends (feature load-test)", long, default_value_t = 5_000)]
    pub poll_ms: u64,
    /// How long a store call keeps retrying while the database is unreachable, in milliseconds.
    #[arg(help_heading = "Instant backends (feature load-test)", long, default_value_t = 60_000)]
    pub db_patience_ms: u64,
    /// Where to serve `/health` and `/health/ready` (none when unset).
    #[arg(long, env = "PAID_HEALTH_ADDR")]
    pub health_addr: Option<SocketAddr>,
    /// On SIGTERM, how long to wait for the current step before releasing its lease anyway, in milliseconds.
    #[arg(help_heading = "Instant backends (feature load-test)", long, default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,
    /// Ignore projects' `max_concurrent_runs` when claiming.
    #[arg(help_heading = "Instant backends (feature load-test)", long)]
    pub no_project_limits: bool,
    /// Do not wait for each write's WAL flush (`synchronous_commit = off`): much less latency on
    /// slow disks; a database *crash* may lose the last writes (see `PgStoreOptions::synchronous_commit`).
    #[arg(help_heading = "Instant backends (feature load-test)", long)]
    pub async_commit: bool,
    /// The ports the engine uses.
    #[arg(long, value_enum, default_value = "real")]
    pub backends: Backends,
    /// Once every listener is bound, write their addresses here as JSON, atomically
    /// (`{"pid", "api", "health", "metrics", "proxy"}`, `null` when absent): with port 0 in
    /// `api.bind`/`--health-addr`, `proxy.bind`, `api.metrics_bind`, this says where they are.
    #[arg(long, env = "PAID_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Instant backends: where worktrees (empty directories) go.
    #[cfg(feature = "load-test")]
    #[arg(help_heading = "Instant backends (feature load-test)", long, env = "PAID_INSTANT_DIR")]
    pub instant_dir: Option<PathBuf>,
    #[cfg(feature = "load-test")]
    /// Instant backends: make the agent take MS milliseconds on issue N (`N=MS`; repeatable,
    /// or comma-separated in the environment).
    #[arg(help_heading = "Instant backends (feature load-test)", long = "instant-slow-issue", env = "PAID_INSTANT_SLOW", value_delimiter = ',', value_parser = parse_slow)]
    pub instant_slow: Vec<(u64, u64)>,
    /// Log as JSON lines (default) or text.
    #[arg(help_heading = "Instant backends (feature load-test)", long, default_value = "json")]
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

#[cfg(feature = "load-test")]
fn parse_slow(s: &str) -> Result<(u64, u64), String> {
    let (issue, ms) = s.split_once('=').ok_or_else(|| format!("{s:?} is not ISSUE=MILLISECONDS"))?;
    let issue = issue.trim().parse().map_err(|e| format!("issue in {s:?}: {e}"))?;
    let ms = ms.trim().parse().map_err(|e| format!("milliseconds in {s:?}: {e}"))?;
    Ok((issue, ms))
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

/// Real backends: `paid serve`'s wiring from `--config`, without the HTTP
/// API and the poller, until SIGTERM or SIGINT. Logging, leases, the pool
/// and the shutdown grace come from `paid.toml`, as for `paid serve`; the
/// instant-backend flags do not apply.
pub async fn run_real(args: &WorkerArgs) -> anyhow::Result<()> {
    let mut config = paid_server::Config::load(&args.config)?;
    paid_server::logging::init(&config.log);
    if !matches!(config.store, paid_server::config::StoreUrl::Postgres(_)) {
        anyhow::bail!(
            "{}: store.url is {}; paid-worker shares a PostgreSQL database with `paid serve` (set store.url or PAID_STORE_URL to postgres://...)",
            args.config.display(),
            config.store
        );
    }
    if let Some(id) = &args.worker_id {
        config.worker_id = id.clone();
    }
    if let Some(addr) = args.health_addr {
        config.api.bind = addr;
    }
    let mut builder = paid_server::Server::builder(config).api(false).poller(false);
    if let Some(path) = &args.ready_file {
        builder = builder.ready_file(path);
    }
    paid_server::server::serve_with(builder).await
}

/// Instant backends (feature `load-test`), until SIGTERM or Ctrl-C.
#[cfg(feature = "load-test")]
pub async fn run_instant(args: WorkerArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use paid_server::worker::instant::{InstantWorker, run_until};
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let stop = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing the current step, then exiting"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: finishing the current step, then exiting"),
            }
            stop.cancel();
        });
    }
    let database_url = args
        .database_url
        .clone()
        .context("--database-url (or PAID_DATABASE_URL) is required with --backends instant")?;
    let settings = InstantWorker {
        database_url,
        schema: args.schema,
        pool_size: args.pool_size,
        worker_id: args.worker_id.unwrap_or_else(paid_server::worker::default_worker_id),
        lease_ms: args.lease_ms,
        heartbeat_ms: args.heartbeat_ms,
        poll_ms: args.poll_ms,
        db_patience_ms: args.db_patience_ms,
        health_addr: args.health_addr,
        shutdown_grace_ms: args.shutdown_grace_ms,
        no_project_limits: args.no_project_limits,
        async_commit: args.async_commit,
        instant_dir: args.instant_dir,
        instant_slow: args.instant_slow,
        ready_file: args.ready_file,
    };
    run_until(settings, stop).await
}
