//! `paid-worker`: one stateless worker of a cluster on a shared PostgreSQL
//! database.
//!
//! ```text
//! paid-worker --config paid.toml            # real backends, like `paid serve` minus the API
//! paid-worker --backends instant --database-url postgres://...   # feature `load-test`
//! ```
//!
//! With real backends it reads the same `paid.toml` as `paid serve` (its
//! `store.url` must be PostgreSQL) and runs the same wiring without the HTTP
//! API and the poller; `/health`, `/health/ready` and `/metrics` are served
//! on `api.bind`. See [`paid_server::worker`].

use std::process::ExitCode;

use clap::Parser;

use paid_examples::worker_cli::{self as worker_args, Backends, WorkerArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let args = WorkerArgs::parse();
    let result = match args.backends {
        Backends::Real => worker_args::run_real(&args).await,
        #[cfg(feature = "load-test")]
        Backends::Instant => {
            worker_args::init_logging(args.log_format);
            worker_args::run_instant(args).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paid-worker: {}", paid_server::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
