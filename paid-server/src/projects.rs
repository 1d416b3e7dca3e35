//! Projects: those declared in `paid.toml` are written to the store at
//! start (keeping their ids), those added through the API live in the store
//! only. Either way a project's preferred model and budgets are its
//! [`paid_core::ProjectSettings`], stored with it; the directory keeps them
//! at hand for the poller, the selector and the proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use paid_core::{
    Clock, FixedSelector, Ids, ModelDecision, ModelSelector, Project, ProjectId, RandomIds, SelectionRequest, Store,
};

use crate::config::ProjectSpec;

/// A project's preferred model and budgets ([`Project::settings`]).
pub use paid_core::ProjectSettings as ProjectExtras;

/// Which projects `paid.toml` declares, and their extra settings.
#[derive(Debug, Default)]
pub struct ProjectDirectory {
    declared: BTreeSet<String>,
    extras: RwLock<BTreeMap<ProjectId, ProjectExtras>>,
}

impl ProjectDirectory {
    /// Whether `repo` (`owner/name`) is declared in `paid.toml`.
    pub fn is_declared(&self, repo: &str) -> bool {
        self.declared.contains(repo)
    }

    /// The extra settings of a project (defaults when none).
    pub fn extras(&self, id: ProjectId) -> ProjectExtras {
        self.extras.read().map(|m| m.get(&id).cloned().unwrap_or_default()).unwrap_or_default()
    }

    /// Sets (`Some`) or forgets (`None`) the extra settings of a project.
    pub fn set_extras(&self, id: ProjectId, extras: Option<ProjectExtras>) {
        let mut map = self.extras.write().unwrap_or_else(|p| p.into_inner());
        match extras {
            Some(e) => map.insert(id, e),
            None => map.remove(&id),
        };
    }
}

/// Fills the directory with the settings of every stored project not
/// declared in `paid.toml` (those added through the API).
pub async fn load_api_extras(store: &dyn Store, directory: &ProjectDirectory) -> paid_core::Result<()> {
    for p in store.projects().await? {
        if !directory.is_declared(&p.repo.to_string()) {
            directory.set_extras(p.id, Some(p.settings.clone()));
        }
    }
    Ok(())
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
    let mut extras = BTreeMap::new();
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
        extras.insert(id, project.settings.clone());
    }
    Ok(ProjectDirectory { declared, extras: RwLock::new(extras) })
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
    directory: Arc<ProjectDirectory>,
    default: FixedSelector,
}

impl std::fmt::Debug for ProjectSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectSelector").field("default", &self.default).finish_non_exhaustive()
    }
}

impl ProjectSelector {
    /// A selector defaulting to `default`.
    pub fn new(store: Arc<dyn Store>, directory: Arc<ProjectDirectory>, default: FixedSelector) -> Self {
        Self { store, directory, default }
    }
}

#[async_trait]
impl ModelSelector for ProjectSelector {
    async fn select(&self, req: &SelectionRequest) -> paid_core::Result<ModelDecision> {
        let run = self.store.run(req.run_id).await?;
        let extras = self.directory.extras(run.project_id);
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
