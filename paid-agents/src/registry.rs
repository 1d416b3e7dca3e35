//! [`PluginRegistry`]: every agent a deployment offers, by kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use paid_core::Agent;

use crate::Error;
use crate::builtin;
use crate::cli_agent::CliAgent;
use crate::config_plugin::{ConfigPlugin, PluginConfig};
use crate::plugin::{CliPlugin, ProxyRoutes};
use crate::prompt::PromptTemplates;

#[derive(Clone)]
enum Entry {
    Plugin(Arc<dyn CliPlugin>),
    Agent(Arc<dyn Agent>),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Plugin(p) => f.debug_tuple("Plugin").field(&p.kind()).finish(),
            Entry::Agent(a) => f.debug_tuple("Agent").field(&a.kind()).finish(),
        }
    }
}

/// The agents a deployment offers: built-in CLI plugins, Rust plugins
/// registered at engine build time, plugins declared in configuration, and
/// whole [`Agent`]s (such as the [`ApiAgent`](crate::ApiAgent)).
///
/// The engine registers agents by [`Agent::kind`], and a project names the
/// kind it uses; [`agents`](PluginRegistry::agents) hands every entry to
/// the engine builder, each CLI plugin wrapped in a [`CliAgent`] that shares
/// the registry's templates and proxy routes.
///
/// ```
/// use std::sync::Arc;
/// use paid_agents::{PluginConfig, PluginRegistry};
///
/// let mut registry = PluginRegistry::with_builtins();
/// let config: PluginConfig = serde_json::from_str(r#"{
///     "kind": "my-cli",
///     "command": "my-cli --prompt-file {{ prompt_file|sh }}"
/// }"#).unwrap();
/// registry.register_config(config).unwrap();
/// assert!(registry.kinds().contains(&"claude-code"));
/// assert!(registry.agent("my-cli").is_some());
///
/// // Then: for agent in registry.agents() { builder = builder.agent(agent); }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PluginRegistry {
    entries: BTreeMap<String, Entry>,
    templates: PromptTemplates,
    routes: ProxyRoutes,
}

impl PluginRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding every [built-in plugin](builtin::all).
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        for plugin in builtin::all() {
            registry.entries.insert(plugin.kind().to_string(), Entry::Plugin(plugin));
        }
        registry
    }

    /// Uses `templates` for the instruction files of every CLI agent.
    pub fn with_templates(mut self, templates: PromptTemplates) -> Self {
        self.templates = templates;
        self
    }

    /// Uses the proxy's `routes` for every CLI agent.
    pub fn with_routes(mut self, routes: ProxyRoutes) -> Self {
        self.routes = routes;
        self
    }

    /// Registers a CLI plugin.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateKind`] when the kind is taken; use
    /// [`replace`](PluginRegistry::replace) to override a built-in.
    pub fn register(&mut self, plugin: Arc<dyn CliPlugin>) -> Result<&mut Self, Error> {
        let kind = self.free_kind(plugin.kind())?;
        self.entries.insert(kind, Entry::Plugin(plugin));
        Ok(self)
    }

    /// Registers a CLI plugin declared in configuration.
    ///
    /// # Errors
    ///
    /// As [`ConfigPlugin::new`], and [`Error::DuplicateKind`].
    pub fn register_config(&mut self, config: PluginConfig) -> Result<&mut Self, Error> {
        self.register(Arc::new(ConfigPlugin::new(config)?))
    }

    /// Registers a whole agent (for example an [`ApiAgent`](crate::ApiAgent)).
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateKind`] when the kind is taken.
    pub fn register_agent(&mut self, agent: Arc<dyn Agent>) -> Result<&mut Self, Error> {
        let kind = self.free_kind(agent.kind())?;
        self.entries.insert(kind, Entry::Agent(agent));
        Ok(self)
    }

    /// Registers a CLI plugin, replacing any entry of its kind.
    pub fn replace(&mut self, plugin: Arc<dyn CliPlugin>) -> &mut Self {
        self.entries.insert(plugin.kind().to_string(), Entry::Plugin(plugin));
        self
    }

    fn free_kind(&self, kind: &str) -> Result<String, Error> {
        if kind.trim().is_empty() {
            return Err(Error::Config { field: "kind", message: "must not be empty".into() });
        }
        if self.entries.contains_key(kind) {
            return Err(Error::DuplicateKind { kind: kind.to_string() });
        }
        Ok(kind.to_string())
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The CLI plugin of `kind`, if `kind` is one.
    pub fn plugin(&self, kind: &str) -> Option<Arc<dyn CliPlugin>> {
        match self.entries.get(kind)? {
            Entry::Plugin(p) => Some(p.clone()),
            Entry::Agent(_) => None,
        }
    }

    /// The agent of `kind`: a [`CliAgent`] for a plugin.
    pub fn agent(&self, kind: &str) -> Option<Arc<dyn Agent>> {
        self.entries.get(kind).map(|e| self.to_agent(e))
    }

    /// Every agent, for [`EngineBuilder::agent`](paid_core::engine::EngineBuilder::agent).
    pub fn agents(&self) -> Vec<Arc<dyn Agent>> {
        self.entries.values().map(|e| self.to_agent(e)).collect()
    }

    fn to_agent(&self, entry: &Entry) -> Arc<dyn Agent> {
        match entry {
            Entry::Plugin(p) => Arc::new(
                CliAgent::new(p.clone()).with_templates(self.templates.clone()).with_routes(self.routes.clone()),
            ),
            Entry::Agent(a) => a.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommandAgent;

    #[test]
    fn builtins_are_all_there_and_kinds_do_not_clash() {
        let mut r = PluginRegistry::with_builtins();
        assert_eq!(r.kinds(), vec!["aider", "claude-code", "codex", "copilot", "cursor", "gemini", "opencode"]);
        let err = r.register(Arc::new(builtin::Aider)).unwrap_err();
        assert!(matches!(err, Error::DuplicateKind { ref kind } if kind == "aider"), "{err}");
        r.replace(Arc::new(builtin::Aider));
        r.register_agent(Arc::new(CommandAgent::new("sh-fixer", "true").unwrap())).unwrap();
        assert!(r.plugin("sh-fixer").is_none());
        assert_eq!(r.agent("sh-fixer").unwrap().kind(), "sh-fixer");
        assert_eq!(r.agent("codex").unwrap().kind(), "codex");
        assert_eq!(r.agents().len(), 8);
        assert!(r.agent("nope").is_none());
    }
}
