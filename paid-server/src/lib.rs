//! The reference deployment of Paid as a library: what `paid serve` and
//! `paid-worker` run, for embedders who want the same thing without copying
//! wiring.
//!
//! ```no_run
//! use paid_server::{Config, Server};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = Config::load(std::path::Path::new("paid.toml"))?;
//! let shutdown = CancellationToken::new();
//! Server::from_config(config).await?.run(shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! [`Server::builder`] swaps any port (store, runtime, forge, workspaces,
//! agents) and keeps the rest of the wiring.
//!
//! | module | holds |
//! | --- | --- |
//! | [`config`] | `paid.toml`, environment overrides, validation |
//! | [`server`] | [`Server`] and its builder: wiring the parts, shutdown |
//! | [`poller`] | polling projects and PR feedback, webhook nudges |
//! | [`stores`] | opening the configured store and its capabilities |
//! | [`api`] | the HTTP API, one module per resource, `/metrics`, health |
//! | [`compare`] | comparison runs as config and the API spell them |
//! | [`crypto`], [`vault`] | AES-256-GCM secrets at rest, key rotation |
//! | [`github`] | token checks (scopes, repository access) |
//! | [`forge_token`] | the forge token, replaced without a restart |
//! | [`ready`] | the ready file: bound addresses, written once listening |
//! | [`projects`] | declared projects, the per-project model selector |
//! | [`proxy`] | the metering proxy of `paid-llm` and per-run credentials |
//! | [`reaper`], [`disk`] | orphan cleanup and the disk guard |
//! | [`webhooks`] | GitHub webhooks nudging the poller |
//! | [`health`], [`logging`], [`doctor`] | readiness, JSON logs, `paid doctor` checks |
//! | [`worker`] | `paid-worker`: the same wiring without the HTTP API |

pub mod api;
pub mod compare;
pub mod config;
pub mod crypto;
pub mod disk;
pub mod doctor;
pub mod egress;
pub mod forge_token;
pub mod github;
pub mod health;
pub mod logging;
pub mod poller;
pub mod projects;
pub mod proxy;
pub mod ready;
pub mod reaper;
pub mod server;
pub mod stores;
#[cfg(test)]
mod test_server;
mod usage;
pub mod vault;
pub mod webhooks;
mod wiring;
pub mod worker;

pub use config::Config;
pub use server::{Server, ServerBuilder};

/// The error and its causes on one line, each cause once.
pub fn one_line(e: &anyhow::Error) -> String {
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
