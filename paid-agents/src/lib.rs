//! Agents for Paid: implementations of [`paid_core::Agent`].
//!
//! ```
//! use std::sync::Arc;
//! use paid_agents::{CliPlugin, Invocation, PluginRegistry, builtin::ClaudeCode};
//!
//! // Every built-in CLI, plus one declared in configuration.
//! let mut registry = PluginRegistry::with_builtins();
//! registry
//!     .register_config(serde_json::from_str(r#"{
//!         "kind": "my-cli",
//!         "command": "my-cli --message-file {{ prompt_file|sh }}",
//!         "output": { "cost_usd": "Cost: \\$([\\d.]+)" }
//!     }"#).unwrap())
//!     .unwrap();
//! // The engine builder takes them by kind: `builder.agent(agent)` for each.
//! let agents = registry.agents();
//! assert!(agents.iter().any(|a| a.kind() == "my-cli"));
//!
//! // A plugin is description and parsing, testable without a sandbox.
//! let inv = Invocation { prompt_file: "/tmp/paid/prompt.md", model: Some("claude-sonnet-4-5"), instruction_file: None, iteration: 1 };
//! assert!(ClaudeCode.command(&inv).unwrap().starts_with("claude -p --output-format stream-json"));
//! ```
//!
//! # What is here
//!
//! - [`CliPlugin`]: describes one agent CLI: its command line, the
//!   environment pointing it at the metering proxy, its instruction file,
//!   and how to parse its output and classify its failures.
//!   [`CliAgent`] runs any plugin inside the run's sandbox.
//! - [`builtin`]: Claude Code, Codex, Gemini CLI, Aider, GitHub Copilot CLI,
//!   Cursor agent and OpenCode, each tested on recorded output samples.
//! - [`ConfigPlugin`]: a CLI declared in configuration (a minijinja command
//!   template, environment, and regular expressions for the output), no
//!   recompile.
//! - [`PluginRegistry`]: the agents a deployment offers, by kind, handed to
//!   the engine builder. A Rust plugin registers with
//!   [`PluginRegistry::register`]; `paid-agents/examples/custom_agent.rs`
//!   is a complete one (`cargo run -p paid-agents --example custom_agent`).
//! - [`ApiAgent`]: the built-in API-mode agent: an [`LlmProvider`](paid_core::LlmProvider)
//!   with tools that run inside the sandbox, paths confined to the worktree,
//!   turn, token and time limits, and loop detection.
//! - [`prompt`]: templates stored as data ([`PromptTemplates`]) and the
//!   [`InstructionFile`] writer. The task prompt itself is rendered by the
//!   engine ([`paid_core::engine::prompt`]).
//! - [`CommandAgent`]: a plain shell command as an agent.
//!
//! The engine runs the verify/fix loop around every agent: verify failures
//! come back as part of the next iteration's prompt.

mod api;
pub mod builtin;
pub mod classify;
mod cli_agent;
mod command;
mod config_plugin;
mod error;
mod plugin;
pub mod prompt;
mod registry;
mod sandbox_io;

pub use api::{ApiAgent, ApiConfig};
pub use cli_agent::{CliAgent, PROMPT_FILE, outcome};
pub use command::CommandAgent;
pub use config_plugin::{ConfigPlugin, FailureRule, OutputRules, PluginConfig};
pub use error::Error;
pub use plugin::{CliFailure, CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess, ProxyRoutes};
pub use prompt::{ApiSystemVars, InstructionFile, InstructionVars, PromptTemplates};
pub use registry::PluginRegistry;
pub use sandbox_io::shell_quote;
