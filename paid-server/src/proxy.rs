//! The secrets + metering proxy (`paid_llm::proxy`), started by the daemon
//! when providers are configured, and the [`RunCredentials`] the engine uses
//! to hand each run a token for it.
//!
//! Each project's `budget_usd_per_run` / `budget_usd_per_month` become its
//! own caps in the proxy ([`Proxy::set_project_budget`]): registered at start,
//! and again whenever a project is added or removed through the API.

use std::sync::Arc;

use paid_core::metrics::Metrics;
use paid_core::{ProjectId, Store};
use paid_llm::providers::ProviderKind;
use paid_llm::proxy::budget::BudgetConfig;
use paid_llm::proxy::{Proxy, ProxyCredentials, Upstream};
use secrecy::SecretString;

use paid_core::ProjectSettings;

use crate::config::{Config, ConfigError};
use crate::vault::Vault;

fn kind_of(kind: &str) -> Option<ProviderKind> {
    match kind {
        "anthropic" => Some(ProviderKind::Anthropic),
        "openai" => Some(ProviderKind::OpenAi),
        "gemini" => Some(ProviderKind::Gemini),
        "compatible" => Some(ProviderKind::Compatible),
        _ => None,
    }
}

fn default_base(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "https://api.anthropic.com",
        ProviderKind::OpenAi => "https://api.openai.com",
        ProviderKind::Gemini => "https://generativelanguage.googleapis.com",
        ProviderKind::Compatible => "http://127.0.0.1:11434",
    }
}

/// The proxy caps of a project with budgets of its own, on top of the
/// proxy's `defaults` for everything the project does not set; `None` when
/// it has none (the defaults apply as they are).
pub fn project_budget(extras: &ProjectSettings, defaults: BudgetConfig) -> Option<BudgetConfig> {
    let micros = |usd: f64| (usd * 1e6).round() as i64;
    if extras.budget_usd_per_run.is_none() && extras.budget_usd_per_month.is_none() {
        return None;
    }
    Some(BudgetConfig {
        run_cost_micros: extras.budget_usd_per_run.map(micros).or(defaults.run_cost_micros),
        project_monthly_micros: extras.budget_usd_per_month.map(micros).or(defaults.project_monthly_micros),
        ..defaults
    })
}

/// Sets (or clears) `project`'s caps in `proxy` from its settings. Returns
/// whether the project has caps of its own.
pub fn register_budget(proxy: &Proxy, project: ProjectId, extras: &ProjectSettings) -> bool {
    match project_budget(extras, proxy.default_budget()) {
        Some(b) => {
            proxy.set_project_budget(project, b);
            true
        }
        None => {
            proxy.clear_project_budget(project);
            false
        }
    }
}

/// Registers the caps of every stored project. Returns how many have caps
/// of their own.
pub async fn register_budgets(proxy: &Proxy, store: &dyn Store) -> paid_core::Result<usize> {
    let mut n = 0;
    for p in store.projects().await? {
        n += usize::from(register_budget(proxy, p.id, &p.settings));
    }
    Ok(n)
}

/// A started proxy.
pub struct StartedProxy {
    /// The proxy (per-project budgets are set on it).
    pub proxy: Proxy,
    /// The engine's credentials port.
    pub credentials: Arc<ProxyCredentials>,
    /// The server (stops when dropped).
    pub server: paid_llm::RunningServer,
    /// The same proxy on more addresses: the Docker bridge, for the egress
    /// forwarder, when `server` is on loopback (see [`crate::egress`]).
    pub also: Vec<paid_llm::RunningServer>,
}

impl std::fmt::Debug for StartedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedProxy").field("addr", &self.server.addr()).finish_non_exhaustive()
    }
}

/// Starts the proxy on `proxy.bind` with the configured providers' keys
/// (stored with `paid token set provider.<name>`, else `key_file`, else
/// `key_env`). `None` when no provider is configured.
pub async fn start(
    config: &Config,
    store: Arc<dyn Store>,
    vault: &Vault,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Option<StartedProxy>> {
    if config.providers.is_empty() {
        return Ok(None);
    }
    let err = |key: String, reason: String| ConfigError { file: config.file.clone(), key, reason };
    let mut builder = Proxy::builder(store).metrics(paid_llm::metrics::LlmMetrics::new(metrics));
    for (name, p) in &config.providers {
        let kind = kind_of(&p.kind).ok_or_else(|| err(format!("providers.{name}.kind"), "unknown kind".into()))?;
        let key: Option<SecretString> = match vault.get(&format!("provider.{name}")).await? {
            Some(k) => Some(k),
            None => match (&p.key_file, &p.key_env) {
                (Some(f), _) => Some(SecretString::from(
                    std::fs::read_to_string(f)
                        .map_err(|e| {
                            err(format!("providers.{name}.key_file"), format!("cannot read {}: {e}", f.display()))
                        })?
                        .trim()
                        .to_string(),
                )),
                (None, Some(var)) => std::env::var(var).ok().map(|v| SecretString::from(v.trim().to_string())),
                (None, None) => None,
            },
        };
        if key.is_none() && kind != ProviderKind::Compatible {
            return Err(err(
                format!("providers.{name}"),
                "no key found: set key_env (and the variable) or key_file, or store it with \
                 `paid token set provider.NAME`"
                    .replace("NAME", name),
            )
            .into());
        }
        let base = p.base_url.clone().unwrap_or_else(|| default_base(kind).to_string());
        builder = builder.upstream(Upstream::new(kind, base, key).named(name.clone()));
    }
    let proxy = builder.build().map_err(|e| err("providers".into(), e.to_string()))?;
    let server = proxy
        .spawn(config.proxy.bind)
        .await
        .map_err(|e| err("proxy.bind".into(), format!("cannot listen on {}: {e}", config.proxy.bind)))?;
    Ok(Some(StartedProxy {
        proxy: proxy.clone(),
        credentials: Arc::new(ProxyCredentials::new(proxy, config.proxy.sandbox_url.clone())),
        server,
        also: Vec::new(),
    }))
}
