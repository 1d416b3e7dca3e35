//! `paid prompts …`: the learning data.

use std::process::ExitCode;

use clap::Subcommand;
use paid_api::{ApiClient, ClientError};

use super::Out;

/// `paid prompts …`.
#[derive(Debug, Subcommand)]
pub enum PromptsCmd {
    /// List prompts.
    List,
    /// Show a prompt's versions.
    Show {
        /// Prompt slug.
        slug: String,
    },
}

/// Runs `paid prompts …`.
pub async fn prompts(client: &ApiClient, cmd: PromptsCmd, out: Out) -> Result<ExitCode, ClientError> {
    match cmd {
        PromptsCmd::List => Ok(out.success(&client.prompts().await?, |prompts| {
            for p in prompts {
                println!("{}", serde_json::to_string(p).unwrap_or_default());
            }
        })),
        PromptsCmd::Show { slug } => Ok(out.success(&client.prompt(&slug).await?, |d| {
            println!("{}", serde_json::to_string_pretty(d).unwrap_or_default());
        })),
    }
}
