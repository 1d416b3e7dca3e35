//! The `paid` command line: every subcommand but `demo`, one module per
//! subcommand group.
//!
//! `init`, `serve`, `doctor` and `images` work locally ([`local`],
//! [`images`]); everything else talks to the server's HTTP API through the
//! typed [`ApiClient`] (`--api-url`, default from `paid.toml`'s `api.bind`,
//! with the bearer token from `--token-file`, `PAID_API_TOKEN` or
//! `paid.toml`). With `--json` each command prints one JSON document: the
//! API's envelope, `{"data": …, "meta": …}` on success and
//! `{"error": {"code", "message", "details"}, "meta": …}` on failure.

pub mod costs;
pub mod images;
pub mod local;
pub mod mirror;
pub mod project;
pub mod prompts;
pub mod runs;
pub mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use paid_api::{ApiClient, ClientError, Envelope, ErrorBody, ErrorEnvelope, Meta};
use paid_server::config::{Config, ConfigError};
use secrecy::SecretString;
use serde::Serialize;

pub use self::images::ImagesCmd;
pub use self::project::{AddProject, ProjectCmd};
pub use self::prompts::PromptsCmd;
pub use self::runs::RunsCmd;
pub use self::token::TokenCmd;

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The configuration file.
    #[arg(long, global = true, env = "PAID_CONFIG", default_value = "paid.toml")]
    pub config: PathBuf,
    /// The daemon's API (default: from the config's api.bind).
    #[arg(long, global = true, env = "PAID_API_URL")]
    pub api_url: Option<String>,
    /// A file holding the API token (default: PAID_API_TOKEN, then the config).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

/// The subcommands besides `demo`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented paid.toml, a random API token and a master key.
    Init {
        /// Overwrite an existing paid.toml.
        #[arg(long)]
        force: bool,
    },
    /// Run the daemon: poller, workers, HTTP API, reaper, disk guard.
    Serve {
        /// Once every listener is bound, write their addresses here as JSON, atomically
        /// (`{"pid", "api", "health", "metrics", "proxy"}`, `null` when absent): with port 0
        /// in `api.bind`, `api.metrics_bind` or `proxy.bind`, this says where they are.
        #[arg(long, env = "PAID_READY_FILE")]
        ready_file: Option<PathBuf>,
    },
    /// Check Docker, images, the store, keys, the forge token and the proxy.
    Doctor,
    /// Sandbox images.
    #[command(subcommand)]
    Images(ImagesCmd),
    /// Projects.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Forge tokens and provider keys, encrypted in the database.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Queue a run for an issue now (an issue URL or owner/repo#N).
    Run {
        /// The issue.
        issue: String,
        /// Wait for the run to end, showing its progress.
        #[arg(long)]
        wait: bool,
        /// Compare these models (comma-separated, 2 to 8) in parallel
        /// sandboxes; one winner becomes the PR.
        #[arg(long, value_delimiter = ',')]
        compare: Vec<String>,
        /// How the winner of --compare is chosen: `best` (by --rank) or
        /// `human` (the run waits for `paid runs pick`).
        #[arg(long, requires = "compare", value_parser = ["best", "human"])]
        pick: Option<String>,
        /// Ranking criteria for `--pick best`, most important first
        /// (verify_passed, cost, iterations, lines_changed, files_changed,
        /// duration).
        #[arg(long, requires = "compare", value_delimiter = ',')]
        rank: Vec<String>,
    },
    /// Runs.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Prompt versions (learning).
    #[command(subcommand)]
    Prompts(PromptsCmd),
    /// Cost per project and model, by day and month.
    Costs {
        /// Only this project (owner/repo).
        #[arg(long)]
        project: Option<String>,
    },
}

/// Prints and returns exit codes in one style.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Print JSON documents instead of text.
    pub json: bool,
}

impl Out {
    /// Prints a success: the whole envelope with `--json`, else `human(data)`.
    pub fn success<T: Serialize>(&self, envelope: &Envelope<T>, human: impl FnOnce(&T)) -> ExitCode {
        if self.json {
            println!("{}", serde_json::to_string_pretty(envelope).unwrap_or_default());
        } else {
            human(&envelope.data);
        }
        ExitCode::SUCCESS
    }

    /// A success made here, not by the server.
    pub fn local<T: Serialize>(&self, data: T, human: impl FnOnce(&T)) -> ExitCode {
        let meta = Meta { timestamp: Some(chrono::Utc::now()), ..Meta::default() };
        self.success(&Envelope { data, meta }, human)
    }

    /// Prints a failed call.
    pub fn fail(&self, e: &ClientError) -> ExitCode {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&e.envelope()).unwrap_or_default());
        } else {
            eprintln!("error: {e}");
        }
        ExitCode::FAILURE
    }

    /// Prints an error in the API's shape with `code`, and exits `exit`.
    pub fn fail_msg(&self, code: &str, message: &str, exit: u8) -> ExitCode {
        self.fail_with(code, message, serde_json::json!({}), exit)
    }

    fn fail_with(&self, code: &str, message: &str, details: serde_json::Value, exit: u8) -> ExitCode {
        if self.json {
            let e = ErrorEnvelope {
                error: ErrorBody { code: code.into(), message: message.into(), details },
                meta: Meta::default(),
            };
            println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
        } else {
            eprintln!("error: {message}");
        }
        ExitCode::from(exit)
    }

    /// Prints an invalid configuration (exit 2).
    pub fn config_error(&self, e: &ConfigError) -> ExitCode {
        let details = serde_json::json!({ "file": e.file, "key": e.key, "reason": e.reason });
        self.fail_with("invalid_config", &e.to_string(), details, 2)
    }
}

/// Runs a subcommand.
pub async fn run(global: Global, command: Command) -> ExitCode {
    let out = Out { json: global.json };
    match command {
        Command::Init { force } => local::init(&global, force, out),
        Command::Serve { ready_file } => local::serve(&global, ready_file.as_deref(), out).await,
        Command::Doctor => {
            init_cli_logging();
            local::doctor(&global.config, out.json).await
        }
        Command::Images(cmd) => {
            init_cli_logging();
            images::images(&global, cmd, out).await
        }
        other => {
            init_cli_logging();
            let client = match client(&global) {
                Ok(c) => c,
                Err(Err(e)) => return out.config_error(&e),
                Err(Ok(message)) => return out.fail_msg("usage", &message, 2),
            };
            remote(client, other, &global, out).await
        }
    }
}

/// Logging for the CLI: warnings on stderr unless `RUST_LOG` says more.
pub fn init_cli_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn remote(client: ApiClient, command: Command, global: &Global, out: Out) -> ExitCode {
    let result = match command {
        Command::Project(cmd) => project::project(&client, cmd, global, out).await,
        Command::Token(cmd) => token::token(&client, cmd, out).await,
        Command::Run { issue, wait, compare, pick, rank } => {
            let compare = (!compare.is_empty()).then_some(paid_api::CompareRequest {
                models: compare,
                rule: pick,
                ranking: rank,
            });
            runs::trigger(&client, &issue, wait, compare, out).await
        }
        Command::Runs(cmd) => runs::runs(&client, cmd, out).await,
        Command::Prompts(cmd) => prompts::prompts(&client, cmd, out).await,
        Command::Costs { project } => costs::costs(&client, project, out).await,
        Command::Init { .. } | Command::Serve { .. } | Command::Doctor | Command::Images(_) => Ok(ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| out.fail(&e))
}

/// The API client from flags, environment and config.
fn client(global: &Global) -> Result<ApiClient, Result<String, ConfigError>> {
    let config = if global.config.exists() { Some(Config::load(&global.config).map_err(Err)?) } else { None };
    let base = match (&global.api_url, &config) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => {
            let mut addr = c.api.bind;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
        (None, None) => {
            return Err(Ok(format!("no --api-url and no {}; pass --api-url or --config", global.config.display())));
        }
    };
    let token = if let Some(f) = &global.token_file {
        Some(read_trimmed(f).map_err(|e| Ok(format!("cannot read {}: {e}", f.display())))?)
    } else if let Ok(t) = std::env::var("PAID_API_TOKEN") {
        Some(SecretString::from(t.trim().to_string()))
    } else if let Some(c) = &config {
        match &c.api.token_file {
            Some(f) => {
                Some(read_trimmed(f).map_err(|e| Ok(format!("cannot read api.token_file {}: {e}", f.display())))?)
            }
            None => std::env::var(&c.api.token_env).ok().map(|t| SecretString::from(t.trim().to_string())),
        }
    } else {
        None
    };
    ApiClient::new(&base, token).map_err(|e| Ok(e.to_string()))
}

fn read_trimmed(path: &Path) -> std::io::Result<SecretString> {
    Ok(SecretString::from(std::fs::read_to_string(path)?.trim().to_string()))
}

/// An error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    paid_server::one_line(e)
}
