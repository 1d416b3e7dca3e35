//! `paid`: the reference deployment binary.
//!
//! `paid demo [--dir DIR]` runs one labeled issue through the whole pipeline
//! on this machine and prints the pull request it opened.
//!
//! `paid init`, `paid serve`, `paid doctor` and the commands that talk to a
//! running daemon (`project`, `token`, `run`, `runs`, `prompts`, `costs`)
//! are in [`paid_examples::cli`].

#[cfg(feature = "demo")]
use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(feature = "demo")]
use std::sync::Arc;

use clap::{Parser, Subcommand};
#[cfg(feature = "demo")]
use paid_core::RunState;
use paid_examples::cli::{self, Command, Global};

#[derive(Parser)]
#[command(name = "paid", version, about = "Labeled issues in, pull requests out.")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole pipeline locally: SQLite, local Docker, a bare git remote,
    /// a fake GitHub with one labeled issue, and a scripted agent.
    #[cfg(feature = "demo")]
    Demo {
        /// Working directory (created; reused runs start fresh in it).
        #[arg(long, default_value = "paid-demo")]
        dir: PathBuf,
    },
    #[command(flatten)]
    Daemon(Command),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        #[cfg(feature = "demo")]
        Cmd::Demo { dir } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            demo(dir).await
        }
        Cmd::Daemon(command) => cli::run(cli.global, command).await,
    }
}

#[cfg(feature = "demo")]
async fn demo(dir: PathBuf) -> ExitCode {
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        eprintln!("error: cannot clear {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let say: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|line: &str| println!("{line}"));
    match paid_examples::demo::run(&dir, say).await {
        Ok(report) if report.run.state == RunState::Succeeded => {
            println!();
            println!("Done. Pull request: {}", report.pr_url.as_deref().unwrap_or("-"));
            println!("  branch {} pushed to {}", report.branch.as_deref().unwrap_or("-"), report.remote.display());
            println!(
                "  inspect it: git -C {} log --stat {}",
                report.remote.display(),
                report.branch.as_deref().unwrap_or("")
            );
            println!(
                "  run journal and logs: sqlite3 {} 'select step, status, error from steps'",
                report.db_path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            let why = report.run.failure.map(|f| format!("{}: {}", f.code, f.message)).unwrap_or_default();
            eprintln!("error: the run ended {}: {why}", report.run.state);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
#[cfg(feature = "demo")]
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if !line.contains(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}
