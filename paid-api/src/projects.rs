//! `/api/v1/projects`.

use paid_core::{Project, ProjectId};
use serde::{Deserialize, Serialize};

/// A project's preferred model and budgets (flattened into [`Project`]'s JSON).
pub use paid_core::ProjectSettings;

/// Where a project was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectSource {
    /// In `paid.toml` (removed there, not through the API).
    Config,
    /// Added through the API.
    Api,
}

/// A project as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectView {
    /// The project.
    #[serde(flatten)]
    pub project: Project,
    /// Where it was declared.
    pub source: ProjectSource,
    /// The mirror clone `paid project add --clone` made (CLI only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<serde_json::Value>,
}

/// `POST /api/v1/projects`. Only `repo` and `allowed_authors` are needed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NewProject {
    /// `owner/name`.
    pub repo: String,
    /// Clone URL (default `<forge web origin>/owner/name.git`, e.g.
    /// `https://github.com/owner/name.git`). Must be on the forge's host
    /// unless that host is in `allowed_clone_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_url: Option<String>,
    /// Hosts besides the forge's that `clone_url` may name (cloned from
    /// without the forge token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_clone_hosts: Vec<String>,
    /// Default branch (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    /// Labels that trigger runs (default `paid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_labels: Option<Vec<String>>,
    /// Logins whose issues may trigger runs; must not be empty.
    #[serde(default)]
    pub allowed_authors: Vec<String>,
    /// Verify commands.
    #[serde(default)]
    pub verify: Vec<String>,
    /// Paths the agent may change beyond the defaults.
    #[serde(default)]
    pub allowed_paths: Vec<String>,
    /// Sandbox image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Agent kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Runs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_runs: Option<u32>,
    /// Per-run budget, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd_per_run: Option<f64>,
    /// Monthly budget, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd_per_month: Option<f64>,
}

impl NewProject {
    /// A project for `repo` whose runs only `authors` may trigger.
    pub fn new(repo: impl Into<String>, authors: Vec<String>) -> Self {
        Self { repo: repo.into(), allowed_authors: authors, ..Self::default() }
    }
}

/// `DELETE /api/v1/projects/{owner}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovedProject {
    /// `owner/name`.
    pub removed: String,
    /// Its id.
    pub id: ProjectId,
}
