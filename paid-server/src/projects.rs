//! Projects: those declared in `paid.toml` are written to the store at
//! start (keeping their ids), those added through the API live in the store
//! only. Either way a project's preferred model and budgets are its
//! [`paid_core::ProjectSettings`], stored with it and read from the store
//! where needed (the poller, the selector, the proxy), so every node of a
//! cluster sees the same.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use paid_core::{
    Clock, FixedSelector, Ids, ModelDecision, ModelSelector, Project, ProjectId, RandomIds, SelectionRequest, Store,
};

use crate::config::ProjectSpec;

/// Which projects `paid.toml` declares (their settings are the stored
/// projects' own, read where needed, so every node sees the same).
#[derive(Debug, Default)]
pub struct ProjectDirectory {
    declared: BTreeSet<String>,
}

impl ProjectDirectory {
    /// Whether `repo` (`owner/name`) is declared in `paid.toml`.
    pub fn is_declared(&self, repo: &str) -> bool {
        self.declared.contains(repo)
    }
}

/// Writes the declared projects to the store, reusing the id of a stored
/// project with the same repository. Returns the directory.
pub async fn sync_declared(
    store: &Arc<dyn Store>,
    specs: &[ProjectSpec],
    clock: &dyn Clock,
) -> paid_core::Result<ProjectDirectory> {
    let existing = store.projects().await?;
    let mut declared = BTreeSet::new();
    for spec in specs {
        let repo = spec.repo.to_string();
        let found = existing.iter().find(|p| p.repo == spec.repo);
        let (id, created_at) = match found {
            Some(p) => (p.id, p.created_at),
            None => (ProjectId(RandomIds.uuid()), clock.now()),
        };
        let project = spec.to_project(id, created_at);
        project.validate()?;
        if found != Some(&project) {
            store.put_project(&project).await?;
        }
        declared.insert(repo);
    }
    Ok(ProjectDirectory { declared })
}

/// Finds a stored project by repository.
pub async fn by_repo(store: &dyn Store, repo: &str) -> paid_core::Result<Option<Project>> {
    Ok(store.projects().await?.into_iter().find(|p| p.repo.to_string().eq_ignore_ascii_case(repo)))
}

/// The model selector: the project's preferred model when it has one, the
/// configured default otherwise; the project's per-run budget goes with the
/// decision.
pub struct ProjectSelector {
    store: Arc<dyn Store>,
    default: FixedSelector,
}

impl std::fmt::Debug for ProjectSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectSelector").field("default", &self.default).finish_non_exhaustive()
    }
}

impl ProjectSelector {
    /// A selector defaulting to `default`.
    pub fn new(store: Arc<dyn Store>, default: FixedSelector) -> Self {
        Self { store, default }
    }
}

#[async_trait]
impl ModelSelector for ProjectSelector {
    async fn select(&self, req: &SelectionRequest) -> paid_core::Result<ModelDecision> {
        let run = self.store.run(req.run_id).await?;
        let extras = self.store.project(run.project_id).await?.settings;
        let mut req = req.clone();
        if let Some(usd) = extras.budget_usd_per_run {
            req.budget_micros = Some((usd * 1e6) as i64);
        }
        let mut decision = self.default.select(&req).await?;
        if let Some(model) = extras.model {
            if let Some(c) = req.candidates.iter().find(|c| c.model == model) {
                decision.provider = c.provider.clone();
            }
            decision.model = model;
            decision.selector = "project_preference".into();
            decision.reasoning = "the project's configured model".into();
        }
        Ok(decision)
    }
}
