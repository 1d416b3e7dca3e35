//! The [`CliPlugin`] trait: what Paid needs to know to run one agent CLI.
//!
//! A plugin is pure description and parsing: it builds a command line, names
//! the environment that points the CLI at the metering proxy, names the
//! instruction file the CLI reads, and turns the CLI's output into a
//! [`CliReport`]. [`CliAgent`](crate::CliAgent) does the running, so a plugin
//! has no I/O of its own and is tested on recorded output alone.

use std::collections::BTreeMap;

use paid_core::{ExecExit, FailureClass, Usage};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::classify;

/// What a plugin's command line is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invocation<'a> {
    /// Absolute path, inside the sandbox, of the file holding the task
    /// prompt. Commands read it (`"$(cat …)"` or a `--message-file` flag);
    /// the prompt itself never appears on the command line Paid logs.
    pub prompt_file: &'a str,
    /// The model the engine selected, if any. Quote it with
    /// [`shell_quote`](crate::shell_quote) before putting it in a command.
    pub model: Option<&'a str>,
    /// The instruction file Paid wrote for this run, relative to the
    /// worktree, if the plugin has one and it was written.
    pub instruction_file: Option<&'a str>,
    /// Iteration number, from 1.
    pub iteration: u32,
}

/// Where, inside the sandbox, the CLI reaches each provider API through the
/// metering proxy, with the run's token as its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyAccess<'a> {
    /// The proxy's base URL, as reachable from the sandbox.
    pub base_url: &'a str,
    /// The per-run token (the only credential a sandbox ever sees).
    pub token: &'a str,
    /// The proxy's route prefixes.
    pub routes: &'a ProxyRoutes,
}

impl ProxyAccess<'_> {
    /// The Anthropic Messages API base (clients append `/v1/messages`).
    pub fn anthropic_url(&self) -> String {
        join(self.base_url, &self.routes.anthropic)
    }

    /// The OpenAI API base, ending in `/v1` (clients append
    /// `/chat/completions` or `/responses`).
    pub fn openai_url(&self) -> String {
        join(self.base_url, &self.routes.openai)
    }

    /// The Gemini API base (clients append `/v1beta/models/…`).
    pub fn gemini_url(&self) -> String {
        join(self.base_url, &self.routes.gemini)
    }
}

fn join(base: &str, route: &str) -> String {
    let base = base.trim_end_matches('/');
    let route = route.trim_matches('/');
    if route.is_empty() { base.to_string() } else { format!("{base}/{route}") }
}

/// The metering proxy's route prefix per provider API, appended to
/// [`ProxyEndpoint::base_url`](paid_core::ProxyEndpoint::base_url).
///
/// The defaults follow one base URL serving every provider under its own
/// prefix: `/anthropic`, `/openai/v1`, `/gemini`. A proxy that routes
/// differently sets them (serde, every field optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyRoutes {
    /// Prefix of the Anthropic Messages API. Default `anthropic`.
    pub anthropic: String,
    /// Prefix of the OpenAI API, including its version. Default `openai/v1`.
    pub openai: String,
    /// Prefix of the Gemini API. Default `gemini`.
    pub gemini: String,
}

impl Default for ProxyRoutes {
    fn default() -> Self {
        Self { anthropic: "anthropic".into(), openai: "openai/v1".into(), gemini: "gemini".into() }
    }
}

/// What a CLI printed, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CliOutput<'a> {
    /// Standard output (its last [`SandboxSession::TAIL_BYTES`](paid_core::engine::SandboxSession::TAIL_BYTES)).
    pub stdout: &'a str,
    /// Standard error (likewise).
    pub stderr: &'a str,
    /// How the command ended.
    pub exit: ExecExit,
}

/// A failure the CLI reported, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliFailure {
    /// For retry and reporting.
    pub class: FailureClass,
    /// The CLI's own words, shortened.
    pub message: String,
}

/// What a plugin read from a CLI's output. Every field is optional: CLIs
/// differ in what they report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CliReport {
    /// The CLI's final answer: what it did.
    pub summary: Option<String>,
    /// Tokens it reported, summed over its requests.
    pub usage: Option<Usage>,
    /// Cost in micro-USD it reported.
    pub cost_micros: Option<i64>,
    /// A failure it reported, even with exit code 0.
    pub failure: Option<CliFailure>,
}

/// One agent CLI, described for [`CliAgent`](crate::CliAgent).
///
/// Implement [`kind`](CliPlugin::kind), [`command`](CliPlugin::command),
/// [`proxy_env`](CliPlugin::proxy_env) and [`parse`](CliPlugin::parse); the
/// rest have defaults. `paid-agents/examples/custom_agent.rs` is a complete
/// plugin in a few dozen lines.
pub trait CliPlugin: Send + Sync + 'static {
    /// The kind projects name (`claude-code`, `aider`, ...).
    fn kind(&self) -> &str;

    /// The `sh -c` script that runs the CLI in the worktree. It reads the
    /// prompt from [`Invocation::prompt_file`].
    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error>;

    /// The program [`command`](CliPlugin::command) runs, which must be on
    /// the sandbox image's `PATH` (`paid doctor` checks). Default: none
    /// named.
    fn executable(&self) -> Option<&str> {
        None
    }

    /// Environment that points the CLI at the metering proxy, with the run
    /// token as its API key (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`, ...).
    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String>;

    /// Environment the CLI always gets (telemetry and update checks off,
    /// ...). Never secrets. Default: none.
    fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// The instruction file the CLI reads from the worktree root
    /// (`CLAUDE.md`, `AGENTS.md`, ...), if any. Default: none.
    fn instruction_file(&self) -> Option<&str> {
        None
    }

    /// Reads the CLI's output.
    fn parse(&self, out: &CliOutput<'_>) -> CliReport;

    /// Classifies a failure from its text, for a failed exit the parser did
    /// not explain. Default: [`classify::from_text`].
    fn classify(&self, text: &str) -> FailureClass {
        classify::from_text(text)
    }
}

impl std::fmt::Debug for dyn CliPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliPlugin").field("kind", &self.kind()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_join_base_and_route() {
        let routes = ProxyRoutes::default();
        let p = ProxyAccess { base_url: "http://proxy:8080/", token: "t", routes: &routes };
        assert_eq!(p.anthropic_url(), "http://proxy:8080/anthropic");
        assert_eq!(p.openai_url(), "http://proxy:8080/openai/v1");
        assert_eq!(p.gemini_url(), "http://proxy:8080/gemini");
        let flat = ProxyRoutes { anthropic: String::new(), openai: "/v1/".into(), gemini: "g".into() };
        let p = ProxyAccess { base_url: "http://p", token: "t", routes: &flat };
        assert_eq!(p.anthropic_url(), "http://p");
        assert_eq!(p.openai_url(), "http://p/v1");
    }
}
