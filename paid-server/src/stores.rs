//! Opening the configured store, with the capabilities it has (secrets,
//! learning), and reading the secrets the configuration names.

use std::sync::Arc;

use anyhow::Context as _;
use paid_agents::{CommandAgent, PluginRegistry};
use paid_core::layers::RetryStore;
use paid_core::{SecretStore, Store};
use secrecy::SecretString;

use crate::config::{AgentSpec, Config, ConfigError, StoreUrl};
use crate::vault::Vault;

/// An opened store, with what else it can do.
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Its secrets capability, if it has one.
    pub secrets: Option<Arc<dyn SecretStore>>,
    /// Why it has none.
    pub no_secrets_reason: String,
    /// The database file, for SQLite.
    pub file: Option<std::path::PathBuf>,
    /// Its learning capability (prompts, experiments), if it has one.
    pub learning: Option<Arc<dyn paid_core::ports::learning::LearningStore>>,
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore").field("file", &self.file).finish_non_exhaustive()
    }
}

/// How long one store call keeps retrying while the database is
/// unreachable or restarting, before the call fails for good.
pub const STORE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens the configured store; `schema` (PostgreSQL only) defaults to `public`.
///
/// The store is wrapped in [`RetryStore`]: the one place store calls are
/// retried (for up to [`STORE_PATIENCE`]). Once it gives up, the error is
/// not retryable, so the engine's step retry does not multiply the attempts.
pub async fn open_store(url: &StoreUrl, schema: Option<&str>) -> anyhow::Result<OpenedStore> {
    match url {
        StoreUrl::Sqlite(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let p = path.clone();
            let store = tokio::task::spawn_blocking(move || paid_store_sqlite::SqliteStore::open(&p)).await??;
            let store = Arc::new(store);
            Ok(OpenedStore {
                store: Arc::new(RetryStore::new(store.clone(), STORE_PATIENCE)),
                secrets: Some(store.clone()),
                no_secrets_reason: String::new(),
                file: Some(path.clone()),
                learning: Some(store),
            })
        }
        StoreUrl::Postgres(url) => {
            let mut options = paid_store_postgres::PgStoreOptions::new(url.as_str());
            if let Some(schema) = schema {
                options = options.schema(schema);
            }
            let store = paid_store_postgres::PgStore::connect_with(options)
                .await
                .with_context(|| format!("connecting to {}", StoreUrl::Postgres(url.clone())))?;
            let store = Arc::new(store);
            Ok(OpenedStore {
                store: Arc::new(RetryStore::new(store.clone(), STORE_PATIENCE)),
                secrets: Some(store.clone()),
                no_secrets_reason: String::new(),
                file: None,
                learning: Some(store),
            })
        }
    }
}

/// Reads the API bearer token the configuration names.
pub fn api_token(config: &Config) -> Result<SecretString, ConfigError> {
    let err = |key: &str, reason: String| ConfigError { file: config.file.clone(), key: key.into(), reason };
    let token = match &config.api.token_file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| err("api.token_file", format!("cannot read {}: {e}", f.display())))?
            .trim()
            .to_string(),
        None => std::env::var(&config.api.token_env).map_err(|_| {
            err(
                "api.token_env",
                format!(
                    "environment variable {} is not set; set it, or set api.token_file (`paid init` writes one)",
                    config.api.token_env
                ),
            )
        })?,
    };
    if token.trim().len() < 16 {
        let key = if config.api.token_file.is_some() { "api.token_file" } else { "api.token_env" };
        return Err(err(key, "the API token is shorter than 16 characters".into()));
    }
    Ok(SecretString::from(token.trim().to_string()))
}

/// The forge token: stored (`paid token set github`), else the file, else
/// the environment variable.
pub async fn forge_token(config: &Config, vault: &Vault) -> anyhow::Result<Option<SecretString>> {
    let err = |key: &str, reason: String| ConfigError { file: config.file.clone(), key: key.into(), reason };
    if let Some(t) = vault.get("github").await.context("reading the stored GitHub token")? {
        return Ok(Some(t));
    }
    if let Some(f) = &config.github.token_file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| err("github.token_file", format!("cannot read {}: {e}", f.display())))?;
        return Ok(Some(SecretString::from(t.trim().to_string())));
    }
    match std::env::var(&config.github.token_env) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(SecretString::from(t.trim().to_string()))),
        _ if config.github.token_env_explicit => Err(err(
            "github.token_env",
            format!(
                "environment variable {} is not set (and no token is stored with `paid token set github`)",
                config.github.token_env
            ),
        )
        .into()),
        _ => Ok(None),
    }
}

/// The agents: the built-in CLIs plus those `paid.toml` declares.
pub fn agents(config: &Config) -> anyhow::Result<Vec<Arc<dyn paid_core::Agent>>> {
    let mut registry = PluginRegistry::with_builtins();
    for (kind, spec) in &config.agents {
        let bad = |e: paid_agents::Error| ConfigError {
            file: config.file.clone(),
            key: format!("agents.{kind}"),
            reason: e.to_string(),
        };
        match spec {
            AgentSpec::Command { script, env } => {
                let mut agent = CommandAgent::new(kind.clone(), script.clone()).map_err(bad)?;
                for (k, v) in env {
                    agent = agent.env(k.clone(), v.clone());
                }
                registry.register_agent(Arc::new(agent)).map_err(bad)?;
            }
            AgentSpec::Plugin(p) => {
                registry.register_config((**p).clone()).map_err(bad)?;
            }
        }
    }
    Ok(registry.agents())
}
