use serde::{Deserialize, Serialize};

use crate::{ProjectId, Timestamp};

/// A repository on a forge, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepoRef {
    /// The owner (user or organization).
    pub owner: String,
    /// The repository name.
    pub name: String,
}

impl RepoRef {
    /// `owner/name`.
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self { owner: owner.into(), name: name.into() }
    }

    /// Parses `owner/name`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s.split_once('/') {
            Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok(Self::new(o, n)),
            _ => Err(crate::Error::InvalidInput {
                what: "repository".into(),
                message: format!("{s:?} is not of the form owner/name"),
            }),
        }
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The labels Paid moves an issue through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelConfig {
    /// Set while a run works on the issue.
    pub in_progress: String,
    /// Set when the run opened a PR.
    pub done: String,
    /// Set when the run failed.
    pub failed: String,
    /// Put on every PR Paid opens.
    pub pr: String,
}

impl Default for LabelConfig {
    fn default() -> Self {
        Self {
            in_progress: "paid-in-progress".into(),
            done: "paid-done".into(),
            failed: "paid-failed".into(),
            pr: "paid-generated".into(),
        }
    }
}

/// A project's preferred model and budgets (USD), kept with the project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectSettings {
    /// The model the project prefers (the model selector's first choice).
    pub model: Option<String>,
    /// The most one run may spend.
    pub budget_usd_per_run: Option<f64>,
    /// The most the project may spend in a calendar month (UTC).
    pub budget_usd_per_month: Option<f64>,
}

/// A repository Paid works on, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Identifier.
    pub id: ProjectId,
    /// The repository on the forge.
    pub repo: RepoRef,
    /// Where to clone from (https URL, or a local path for tests). Never
    /// carries credentials.
    pub clone_url: String,
    /// The branch PRs target.
    pub default_branch: String,
    /// Labels that trigger work (`paid-build`, `paid-plan`).
    pub trigger_labels: Vec<String>,
    /// Forge logins whose issues may trigger runs. Empty means nobody.
    pub allowed_authors: Vec<String>,
    /// The sandbox image.
    pub image: String,
    /// The agent kind, as registered with the engine.
    pub agent: String,
    /// Commands run in the sandbox after the agent (tests, lint).
    pub verify: Vec<String>,
    /// Glob patterns the policy would forbid that this project allows
    /// (e.g. `.github/workflows/**`).
    pub allowed_paths: Vec<String>,
    /// Issue labels.
    pub labels: LabelConfig,
    /// At most this many runs of this project at once.
    pub max_concurrent_runs: u32,
    /// When the project was added.
    pub created_at: Timestamp,
    /// Preferred model and budgets (flattened in JSON).
    #[serde(flatten, default)]
    pub settings: ProjectSettings,
}

impl Project {
    /// A project with the design's defaults, to adjust with struct update.
    pub fn new(id: ProjectId, repo: RepoRef, clone_url: impl Into<String>, now: Timestamp) -> Self {
        Self {
            id,
            repo,
            clone_url: clone_url.into(),
            default_branch: "main".into(),
            trigger_labels: vec!["paid-build".into()],
            allowed_authors: Vec::new(),
            image: "paid/agent:bookworm".into(),
            agent: "command".into(),
            verify: Vec::new(),
            allowed_paths: Vec::new(),
            labels: LabelConfig::default(),
            max_concurrent_runs: 2,
            created_at: now,
            settings: ProjectSettings::default(),
        }
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str, message: &str| {
            Err(crate::Error::InvalidInput { what: format!("project.{what}"), message: message.into() })
        };
        for (key, v) in [
            ("budget_usd_per_run", self.settings.budget_usd_per_run),
            ("budget_usd_per_month", self.settings.budget_usd_per_month),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return bad(key, "must be a positive number of USD");
            }
        }
        if self.trigger_labels.is_empty() || self.trigger_labels.iter().any(|l| l.trim().is_empty()) {
            return bad("trigger_labels", "at least one non-empty label is required");
        }
        if self.clone_url.trim().is_empty() {
            return bad("clone_url", "must not be empty");
        }
        if self.clone_url.contains('@') && self.clone_url.contains("://") {
            return bad("clone_url", "must not carry credentials; tokens are supplied by the forge configuration");
        }
        if self.image.trim().is_empty() {
            return bad("image", "must not be empty");
        }
        if self.default_branch.trim().is_empty() {
            return bad("default_branch", "must not be empty");
        }
        if self.max_concurrent_runs == 0 {
            return bad("max_concurrent_runs", "must be at least 1");
        }
        Ok(())
    }
}
