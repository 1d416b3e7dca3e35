//! Embedding the reference deployment: [`paid_server::Server`] wired from `paid.toml` exactly as
//! `paid serve` wires it (store, Docker, GitHub, poller, workers, HTTP API, reaper), with one port
//! swapped through [`Server::builder`]: the agents. The server offers the configured agents (the
//! built-in CLI plugins and `[agents.*]`) plus `changelog`, an [`Agent`] written here that needs no
//! model: it appends the issue's title to `CHANGELOG.md`, and the engine verifies, pushes and opens
//! the PR as for any agent.
//!
//! Run it:
//!
//! ```sh
//! cargo run -p paid-examples --bin paid -- init   # writes paid.toml, paid-api-token, paid-master.key
//! # in paid.toml, give a [[projects]] entry `agent = "changelog"`
//! GITHUB_TOKEN=ghp_... cargo run -p paid-examples --example server -- paid.toml
//! ```
//!
//! Ctrl-C stops claiming runs, lets current steps finish and releases leases.
//! `tests/embedding.rs` runs [`build`] against the fake GitHub.
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use paid_core::{Agent, AgentContext, AgentExit, AgentOutcome, ExecExit, ExecRequest, FailureClass};
use paid_server::{Config, Server};
use tokio_util::sync::CancellationToken;

/// An agent that adds `- <issue title> (#<number>)` to `CHANGELOG.md`.
#[derive(Debug)]
pub struct ChangelogAgent;

#[async_trait]
impl Agent for ChangelogAgent {
    fn kind(&self) -> &str {
        "changelog"
    }

    async fn run(&self, ctx: AgentContext<'_>) -> paid_core::Result<AgentOutcome> {
        // Everything the agent does goes through the run's sandbox, in the worktree. The title
        // reaches the command through the environment, never spliced into the script.
        let mut req = ExecRequest::shell(r#"printf -- '- %s (#%s)\n' "$TITLE" "$NUMBER" >> CHANGELOG.md"#)
            .with_cancel(ctx.cancel.clone());
        req.env.insert("TITLE".into(), ctx.issue.title.clone());
        req.env.insert("NUMBER".into(), ctx.issue.number.to_string());
        let out = ctx.sandbox.exec(req).await?;
        let exit = match out.exit {
            ExecExit::Code(0) => AgentExit::Completed,
            ExecExit::Cancelled | ExecExit::TimedOut => {
                AgentExit::Failed { class: FailureClass::Transient, message: format!("stopped: {:?}", out.exit) }
            }
            other => AgentExit::Failed {
                class: FailureClass::Permanent,
                message: format!("writing CHANGELOG.md ended with {other:?}: {}", out.stderr.trim()),
            },
        };
        let summary = format!("Added #{} to CHANGELOG.md.", ctx.issue.number);
        Ok(AgentOutcome { exit, summary, usage: None, cost_micros: None })
    }
}

/// The server `paid serve` would build from `config`, with [`ChangelogAgent`] added to its agents.
/// Every other port (store, runtime, forge, workspaces) is wired from the configuration.
pub async fn build(config: Config) -> anyhow::Result<Server> {
    let mut agents = paid_server::stores::agents(&config)?; // built-ins + [agents.*]
    agents.push(Arc::new(ChangelogAgent));
    Server::builder(config).agents(agents).build().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "paid.toml".into()));
    let config = Config::load(&file)?;
    paid_server::logging::init(&config.log);
    let server = build(config).await?;
    println!("serving on http://{}; Ctrl-C stops", server.addr());
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        }
    });
    server.run(shutdown).await
}
