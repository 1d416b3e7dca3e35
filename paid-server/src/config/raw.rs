//! `paid.toml` as written: what serde reads before anything is checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) poll_interval_secs: Option<u64>,
    pub(super) worker_id: Option<String>,
    pub(super) concurrency: Option<usize>,
    pub(super) shutdown_grace_secs: Option<u64>,
    pub(super) store: RawStore,
    pub(super) api: RawApi,
    pub(super) keys: RawKeys,
    pub(super) github: RawGitHub,
    pub(super) docker: Option<toml::Value>,
    pub(super) proxy: RawProxy,
    pub(super) providers: BTreeMap<String, RawProvider>,
    pub(super) engine: RawEngine,
    pub(super) agents: BTreeMap<String, toml::Value>,
    pub(super) reaper: RawReaper,
    pub(super) disk: RawDisk,
    pub(super) log: RawLog,
    pub(super) projects: Vec<RawProject>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) url: Option<String>,
    pub(super) schema: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) bind: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) metrics_bind: Option<String>,
    pub(super) metrics_auth: Option<bool>,
    pub(super) public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawKeys {
    pub(super) master_key_env: Option<String>,
    pub(super) master_key_file: Option<PathBuf>,
    pub(super) previous_key_files: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawGitHub {
    pub(super) api_url: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) webhook_secret_env: Option<String>,
    pub(super) webhook_secret_file: Option<PathBuf>,
    pub(super) webhook_max_body_bytes: Option<usize>,
    pub(super) webhook_max_concurrency: Option<usize>,
    pub(super) webhook_replay_window_secs: Option<u64>,
    pub(super) sub_issues: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) bind: Option<String>,
    pub(super) sandbox_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) kind: Option<String>,
    pub(super) key_env: Option<String>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawEngine {
    pub(super) lease_secs: Option<u64>,
    pub(super) heartbeat_ms: Option<u64>,
    pub(super) max_iterations: Option<u32>,
    pub(super) agent_timeout_secs: Option<u64>,
    pub(super) author_name: Option<String>,
    pub(super) author_email: Option<String>,
    pub(super) models: Vec<RawModel>,
    pub(super) worktree_limits: Option<paid_core::WorktreeLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) provider: String,
    pub(super) model: String,
    #[serde(default)]
    pub(super) context_window: Option<u64>,
    #[serde(default)]
    pub(super) usd_per_mtok: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawReaper {
    pub(super) interval_secs: Option<u64>,
    pub(super) worktree_max_age_secs: Option<u64>,
    pub(super) unknown_sandbox_max_age_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDisk {
    pub(super) path: Option<PathBuf>,
    pub(super) interval_secs: Option<u64>,
    pub(super) warning_percent: Option<f64>,
    pub(super) critical_percent: Option<f64>,
    pub(super) emergency_percent: Option<f64>,
    pub(super) log_retention_days: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<String>,
    pub(super) level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawProject {
    pub(super) repo: String,
    pub(super) clone_url: Option<String>,
    pub(super) default_branch: Option<String>,
    pub(super) trigger_labels: Option<Vec<String>>,
    pub(super) allowed_authors: Vec<String>,
    pub(super) allowed_author_ids: Vec<u64>,
    pub(super) verify: Vec<String>,
    pub(super) allowed_paths: Vec<String>,
    pub(super) allowed_clone_hosts: Vec<String>,
    pub(super) push_remote: Option<String>,
    pub(super) push_url: Option<String>,
    pub(super) image: Option<String>,
    pub(super) agent: Option<String>,
    pub(super) model: Option<String>,
    pub(super) budget_usd_per_run: Option<f64>,
    pub(super) budget_usd_per_month: Option<f64>,
    pub(super) max_concurrent_runs: Option<u32>,
    pub(super) compare: Option<crate::compare::CompareRequest>,
}
