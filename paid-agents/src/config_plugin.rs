//! [`ConfigPlugin`]: an agent CLI declared in configuration, no recompile.

use std::collections::BTreeMap;

use minijinja::context;
use paid_core::{FailureClass, Usage};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::builtin::json;
use crate::plugin::{CliFailure, CliOutput, CliPlugin, CliReport, Invocation, ProxyAccess};
use crate::prompt::environment;
use crate::{Error, classify};

/// A CLI plugin as configuration (serde; unknown keys are refused).
///
/// Templates are [minijinja](https://docs.rs/minijinja); the filter `sh`
/// quotes a value for the shell.
///
/// - `command` sees `prompt_file`, `model` (or none), `instruction_file`
///   (or none) and `iteration`.
/// - `proxy_env` values see `proxy` with `base_url`, `token`,
///   `anthropic_url`, `openai_url` and `gemini_url`; they are set only when
///   the engine has a proxy. `env` values are set as they are.
/// - `output` holds regular expressions ([`OutputRules`]).
///
/// ```
/// use paid_agents::{CliPlugin, ConfigPlugin, Invocation, PluginConfig};
///
/// let config: PluginConfig = serde_json::from_value(serde_json::json!({
///     "kind": "my-cli",
///     "command": "my-cli --prompt-file {{ prompt_file|sh }}{% if model %} --model {{ model|sh }}{% endif %}",
///     "proxy_env": { "OPENAI_BASE_URL": "{{ proxy.openai_url }}", "OPENAI_API_KEY": "{{ proxy.token }}" },
///     "instruction_file": "AGENTS.md",
///     "output": {
///         "summary": "(?m)^Summary: (?P<summary>.*)$",
///         "input_tokens": "(?m)^input: (\\d+)",
///         "cost_usd": "cost \\$([\\d.]+)",
///         "failures": [{ "class": "rate_limited", "pattern": "(?i)slow down" }]
///     }
/// }))
/// .unwrap();
/// let plugin = ConfigPlugin::new(config).unwrap();
/// let inv = Invocation { prompt_file: "/tmp/paid/prompt.md", model: Some("gpt-5"), instruction_file: None, iteration: 1 };
/// assert_eq!(plugin.command(&inv).unwrap(), "my-cli --prompt-file '/tmp/paid/prompt.md' --model 'gpt-5'");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The kind projects name.
    pub kind: String,
    /// The `sh -c` script, a template.
    pub command: String,
    /// Environment set as is (never secrets).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment pointing the CLI at the proxy, templates over `proxy`.
    #[serde(default)]
    pub proxy_env: BTreeMap<String, String>,
    /// The instruction file the CLI reads from the worktree root.
    #[serde(default)]
    pub instruction_file: Option<String>,
    /// How to read the output.
    #[serde(default)]
    pub output: OutputRules,
}

/// Regular expressions ([`regex`](https://docs.rs/regex) syntax) over the
/// CLI's stdout, then its stderr.
///
/// A value is taken from the capture group named `n` (`summary` for the
/// summary), else group 1, else the whole match. Token counts may be
/// written `1,024`, `1.2k` or `3M`, and are summed over all matches; the
/// summary and cost come from the last match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputRules {
    /// The final summary. Without it: the last 4,000 characters of stdout.
    pub summary: Option<String>,
    /// Uncached input tokens.
    pub input_tokens: Option<String>,
    /// Output tokens.
    pub output_tokens: Option<String>,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: Option<String>,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: Option<String>,
    /// Reasoning tokens.
    pub reasoning_tokens: Option<String>,
    /// Cost in US dollars.
    pub cost_usd: Option<String>,
    /// Failures, first match wins. A match means the CLI failed, even with
    /// exit code 0; the rules also classify a non-zero exit.
    pub failures: Vec<FailureRule>,
}

/// One failure pattern and its class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRule {
    /// `rate_limited`, `auth`, `quota`, `transient` or `permanent`.
    pub class: FailureClass,
    /// The regular expression.
    pub pattern: String,
}

#[derive(Debug, Clone)]
struct Compiled {
    summary: Option<Regex>,
    tokens: [Option<Regex>; 5],
    cost: Option<Regex>,
    failures: Vec<(FailureClass, Regex)>,
}

/// A [`CliPlugin`] built from a [`PluginConfig`]: every template and regular
/// expression is checked once, at construction.
#[derive(Debug, Clone)]
pub struct ConfigPlugin {
    config: PluginConfig,
    compiled: Compiled,
}

impl ConfigPlugin {
    /// Checks `config` and builds the plugin.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty kind or command or a bad instruction
    /// file name, [`Error::Template`] for a template that does not parse,
    /// [`Error::Regex`] naming the rule that does not compile.
    pub fn new(config: PluginConfig) -> Result<Self, Error> {
        if config.kind.trim().is_empty() {
            return Err(Error::Config { field: "kind", message: "must not be empty".into() });
        }
        if config.command.trim().is_empty() {
            return Err(Error::Config {
                field: "command",
                message: format!("plugin {}: must not be empty", config.kind),
            });
        }
        if let Some(f) = &config.instruction_file
            && (f.is_empty() || f.contains('/') || f == "." || f == "..")
        {
            return Err(Error::Config {
                field: "instruction_file",
                message: format!("plugin {}: {f:?} must be a plain file name in the worktree root", config.kind),
            });
        }
        let env = environment();
        let name = |what: &str| format!("plugin {} {what}", config.kind);
        env.template_from_str(&config.command)
            .map_err(|e| Error::Template { name: name("command"), message: format!("{e:#}") })?;
        for (key, value) in &config.proxy_env {
            env.template_from_str(value)
                .map_err(|e| Error::Template { name: name(&format!("proxy_env.{key}")), message: format!("{e:#}") })?;
        }
        let rules = &config.output;
        let compile = |rule: &str, pattern: &Option<String>| -> Result<Option<Regex>, Error> {
            pattern
                .as_deref()
                .map(|p| {
                    Regex::new(p).map_err(|e| Error::Regex {
                        plugin: config.kind.clone(),
                        rule: format!("output.{rule}"),
                        message: e.to_string(),
                    })
                })
                .transpose()
        };
        let compiled = Compiled {
            summary: compile("summary", &rules.summary)?,
            tokens: [
                compile("input_tokens", &rules.input_tokens)?,
                compile("output_tokens", &rules.output_tokens)?,
                compile("cache_read_tokens", &rules.cache_read_tokens)?,
                compile("cache_write_tokens", &rules.cache_write_tokens)?,
                compile("reasoning_tokens", &rules.reasoning_tokens)?,
            ],
            cost: compile("cost_usd", &rules.cost_usd)?,
            failures: rules
                .failures
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    Ok((
                        rule.class,
                        compile(&format!("failures[{i}]"), &Some(rule.pattern.clone()))?.ok_or_else(|| {
                            Error::Config { field: "output.failures", message: "empty pattern".into() }
                        })?,
                    ))
                })
                .collect::<Result<_, Error>>()?,
        };
        Ok(Self { config, compiled })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    fn render(&self, what: &str, source: &str, ctx: minijinja::Value) -> Result<String, Error> {
        environment().render_str(source, ctx).map_err(|e| Error::Template {
            name: format!("plugin {} {what}", self.config.kind),
            message: format!("{e:#}"),
        })
    }
}

/// The value a rule captured: group `name`, else group 1, else the match.
fn captured<'t>(caps: &regex::Captures<'t>, name: &str) -> &'t str {
    caps.name(name).or_else(|| caps.get(1)).or_else(|| caps.get(0)).map(|m| m.as_str()).unwrap_or_default()
}

impl CliPlugin for ConfigPlugin {
    fn kind(&self) -> &str {
        &self.config.kind
    }

    fn command(&self, inv: &Invocation<'_>) -> Result<String, Error> {
        self.render(
            "command",
            &self.config.command,
            context! {
                prompt_file => inv.prompt_file,
                model => inv.model,
                instruction_file => inv.instruction_file,
                iteration => inv.iteration,
            },
        )
    }

    fn proxy_env(&self, proxy: &ProxyAccess<'_>) -> BTreeMap<String, String> {
        let ctx = context! {
            proxy => context! {
                base_url => proxy.base_url,
                token => proxy.token,
                anthropic_url => proxy.anthropic_url(),
                openai_url => proxy.openai_url(),
                gemini_url => proxy.gemini_url(),
            },
        };
        self.config
            .proxy_env
            .iter()
            .filter_map(|(key, value)| match self.render(&format!("proxy_env.{key}"), value, ctx.clone()) {
                Ok(v) => Some((key.clone(), v)),
                Err(e) => {
                    tracing::warn!(plugin = %self.config.kind, error = %e, "proxy environment variable skipped");
                    None
                }
            })
            .collect()
    }

    fn env(&self) -> BTreeMap<String, String> {
        self.config.env.clone()
    }

    fn instruction_file(&self) -> Option<&str> {
        self.config.instruction_file.as_deref()
    }

    fn parse(&self, out: &CliOutput<'_>) -> CliReport {
        let text = format!("{}\n{}", out.stdout, out.stderr);
        let c = &self.compiled;
        let sum = |re: &Option<Regex>| -> Option<u64> {
            let re = re.as_ref()?;
            let mut found = None;
            for caps in re.captures_iter(&text) {
                *found.get_or_insert(0) += json::count(captured(&caps, "n"));
            }
            found
        };
        let counts: Vec<Option<u64>> = c.tokens.iter().map(sum).collect();
        let usage = counts.iter().any(Option::is_some).then(|| Usage {
            input: counts[0].unwrap_or(0),
            output: counts[1].unwrap_or(0),
            cache_read: counts[2].unwrap_or(0),
            cache_write: counts[3].unwrap_or(0),
            reasoning: counts[4].unwrap_or(0),
        });
        let cost_micros = c.cost.as_ref().and_then(|re| {
            let caps = re.captures_iter(&text).last()?;
            captured(&caps, "n").trim().parse::<f64>().ok().and_then(json::usd_micros)
        });
        let summary = match &c.summary {
            Some(re) => re.captures_iter(out.stdout).last().map(|caps| captured(&caps, "summary").trim().to_string()),
            None => json::summary(out.stdout),
        };
        let failure = c.failures.iter().find_map(|(class, re)| {
            re.find(&text).map(|m| CliFailure { class: *class, message: line_of(&text, m.start()) })
        });
        CliReport { summary, usage, cost_micros, failure }
    }

    fn classify(&self, text: &str) -> FailureClass {
        self.compiled
            .failures
            .iter()
            .find(|(_, re)| re.is_match(text))
            .map(|(class, _)| *class)
            .unwrap_or_else(|| classify::from_text(text))
    }
}

/// The whole line around byte `at`, shortened.
fn line_of(text: &str, at: usize) -> String {
    let start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text[at..].find('\n').map(|i| at + i).unwrap_or(text.len());
    classify::excerpt(&text[start..end], json::MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use paid_core::ExecExit;
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::ProxyRoutes;

    fn plugin(output: serde_json::Value) -> Result<ConfigPlugin, Error> {
        let config: PluginConfig = serde_json::from_value(serde_json::json!({
            "kind": "toy",
            "command": "toy {{ prompt_file|sh }}",
            "proxy_env": { "TOY_URL": "{{ proxy.openai_url }}", "TOY_KEY": "{{ proxy.token }}" },
            "output": output,
        }))
        .unwrap();
        ConfigPlugin::new(config)
    }

    #[test]
    fn rules_read_usage_cost_summary_and_failures() {
        let p = plugin(serde_json::json!({
            "summary": "(?m)^DONE: (?P<summary>.+)$",
            "input_tokens": "in=(?P<n>[\\d.,]+[kM]?)",
            "output_tokens": "out=(\\d+)",
            "cost_usd": "\\$([\\d.]+)",
            "failures": [{ "class": "quota", "pattern": "(?i)out of credit" }],
        }))
        .unwrap();
        let out = CliOutput {
            stdout: "step in=1.5k out=20 $0.01\nstep in=500 out=30 $0.03\nDONE: fixed it\n",
            stderr: "",
            exit: ExecExit::Code(0),
        };
        assert_eq!(
            p.parse(&out),
            CliReport {
                summary: Some("fixed it".into()),
                usage: Some(Usage { input: 2_000, output: 50, ..Usage::default() }),
                cost_micros: Some(30_000),
                failure: None,
            }
        );
        let out =
            CliOutput { stdout: "working\n", stderr: "fatal: Out of credit for today\n", exit: ExecExit::Code(0) };
        let report = p.parse(&out);
        assert_eq!(
            report.failure,
            Some(CliFailure { class: FailureClass::Quota, message: "fatal: Out of credit for today".into() })
        );
        assert_eq!(p.classify("429 slow down"), FailureClass::RateLimited);
    }

    #[test]
    fn proxy_env_renders_from_the_access() {
        let p = plugin(serde_json::json!({})).unwrap();
        let routes = ProxyRoutes::default();
        let env = p.proxy_env(&ProxyAccess { base_url: "http://proxy:9", token: "tok", routes: &routes });
        assert_eq!(env["TOY_URL"], "http://proxy:9/openai/v1");
        assert_eq!(env["TOY_KEY"], "tok");
    }

    #[test]
    fn bad_config_names_the_rule() {
        let err = plugin(serde_json::json!({ "cost_usd": "([" })).unwrap_err();
        assert!(err.to_string().starts_with("plugin toy: output rule output.cost_usd is not a valid"), "{err}");
        let err = plugin(serde_json::json!({ "failures": [{ "class": "auth", "pattern": "(" }] })).unwrap_err();
        assert!(err.to_string().contains("output.failures[0]"), "{err}");
        let bad: Result<PluginConfig, _> =
            serde_json::from_value(serde_json::json!({ "kind": "x", "command": "y", "comand": "typo" }));
        assert!(bad.unwrap_err().to_string().contains("unknown field `comand`"));
        let cfg = PluginConfig {
            kind: "x".into(),
            command: "{% if %}".into(),
            env: BTreeMap::new(),
            proxy_env: BTreeMap::new(),
            instruction_file: None,
            output: OutputRules::default(),
        };
        assert!(ConfigPlugin::new(cfg).unwrap_err().to_string().contains("plugin x command"));
    }
}
