//! `paid-worker`: one stateless worker of a cluster on a shared PostgreSQL
//! database. See [`paid_examples::worker`].

use std::process::ExitCode;

use clap::Parser;
use paid_examples::worker::{WorkerArgs, init_logging, run};

#[tokio::main]
async fn main() -> ExitCode {
    let args = WorkerArgs::parse();
    init_logging(args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paid-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
