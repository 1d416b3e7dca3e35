//! Per-project overrides around any selector: prefer, require or exclude
//! models, by model name or by provider.
//!
//! - `exclude` removes matching candidates;
//! - `require` keeps only matching candidates;
//! - `prefer` picks the first remaining candidate matching a preference (in
//!   the order listed) without asking the inner selector.
//!
//! The inner selector sees only the remaining candidates; if it still picks
//! a disallowed model (a fixed selector ignores candidates), the first
//! allowed candidate replaces it. Budgets still bound spending at the proxy.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use paid_core::{ModelCandidate, ModelDecision, ModelSelector, ProjectId, SelectionRequest, Store};
use serde::{Deserialize, Serialize};

/// Matches candidates by model or provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// This model name.
    Model(String),
    /// Any model of this provider.
    Provider(String),
}

impl Match {
    /// Whether `c` matches.
    pub fn matches(&self, c: &ModelCandidate) -> bool {
        match self {
            Match::Model(m) => &c.model == m,
            Match::Provider(p) => &c.provider == p,
        }
    }

    fn matches_decision(&self, d: &ModelDecision) -> bool {
        match self {
            Match::Model(m) => &d.model == m,
            Match::Provider(p) => &d.provider == p,
        }
    }
}

/// One project's overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectOverrides {
    /// Chosen first when allowed, in this order.
    #[serde(default)]
    pub prefer: Vec<Match>,
    /// When not empty, only these are allowed.
    #[serde(default)]
    pub require: Vec<Match>,
    /// Never allowed.
    #[serde(default)]
    pub exclude: Vec<Match>,
}

impl ProjectOverrides {
    fn allows_candidate(&self, c: &ModelCandidate) -> bool {
        !self.exclude.iter().any(|m| m.matches(c))
            && (self.require.is_empty() || self.require.iter().any(|m| m.matches(c)))
    }

    fn allows_decision(&self, d: &ModelDecision) -> bool {
        !self.exclude.iter().any(|m| m.matches_decision(d))
            && (self.require.is_empty() || self.require.iter().any(|m| m.matches_decision(d)))
    }
}

/// A selector with per-project overrides.
#[derive(Clone)]
pub struct Overrides {
    inner: Arc<dyn ModelSelector>,
    store: Arc<dyn Store>,
    projects: HashMap<ProjectId, ProjectOverrides>,
    all: ProjectOverrides,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides").field("projects", &self.projects).field("all", &self.all).finish()
    }
}

impl Overrides {
    /// Wraps `inner`; `store` tells each run's project.
    pub fn new(inner: Arc<dyn ModelSelector>, store: Arc<dyn Store>) -> Self {
        Self { inner, store, projects: HashMap::new(), all: ProjectOverrides::default() }
    }

    /// Sets `project`'s overrides.
    pub fn project(mut self, project: ProjectId, overrides: ProjectOverrides) -> Self {
        self.projects.insert(project, overrides);
        self
    }

    /// Sets overrides for projects without their own.
    pub fn all_projects(mut self, overrides: ProjectOverrides) -> Self {
        self.all = overrides;
        self
    }
}

#[async_trait]
impl ModelSelector for Overrides {
    async fn select(&self, req: &SelectionRequest) -> paid_core::Result<ModelDecision> {
        let project = self.store.run(req.run_id).await?.project_id;
        let rules = self.projects.get(&project).unwrap_or(&self.all);
        let allowed: Vec<ModelCandidate> =
            req.candidates.iter().filter(|c| rules.allows_candidate(c)).cloned().collect();
        if allowed.is_empty() && !req.candidates.is_empty() {
            return Err(paid_core::Error::InvalidInput {
                what: format!("model overrides of project {project}"),
                message: "they exclude every candidate model; relax require/exclude or add candidates".into(),
            });
        }
        if let Some((m, c)) = rules.prefer.iter().find_map(|m| allowed.iter().find(|c| m.matches(c)).map(|c| (m, c))) {
            return Ok(ModelDecision {
                run_id: req.run_id,
                provider: c.provider.clone(),
                model: c.model.clone(),
                selector: "override".into(),
                reasoning: format!("project override prefers {m:?}"),
                candidates: allowed.clone(),
                budget_micros: req.budget_micros,
                complexity: None,
                at: req.at,
            });
        }
        let narrowed = SelectionRequest { candidates: allowed.clone(), ..req.clone() };
        let mut decision = self.inner.select(&narrowed).await?;
        if !rules.allows_decision(&decision)
            && let Some(first) = allowed.first()
        {
            decision.reasoning = format!(
                "{} (overridden: {}/{} is not allowed for this project, using {}/{})",
                decision.reasoning, decision.provider, decision.model, first.provider, first.model
            );
            decision.provider = first.provider.clone();
            decision.model = first.model.clone();
        }
        Ok(decision)
    }
}
