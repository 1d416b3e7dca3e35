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
/// configured default (the first of `engine.models`) otherwise; with
/// neither, the agent's own default model (the decision's model is empty,
/// so no `--model` flag is passed and the run names no model). The
/// project's per-run budget goes with the decision.
pub struct ProjectSelector {
    store: Arc<dyn Store>,
    default: Option<FixedSelector>,
}

impl std::fmt::Debug for ProjectSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectSelector").field("default", &self.default).finish_non_exhaustive()
    }
}

impl ProjectSelector {
    /// A selector defaulting to `default`, else to the agent's own model.
    pub fn new(store: Arc<dyn Store>, default: Option<FixedSelector>) -> Self {
        Self { store, default }
    }
}

/// What [`ProjectSelector`] decides with no model configured anywhere.
pub const AGENT_DEFAULT_SELECTOR: &str = "agent_default";

#[async_trait]
impl ModelSelector for ProjectSelector {
    async fn select(&self, req: &SelectionRequest) -> paid_core::Result<ModelDecision> {
        let run = self.store.run(req.run_id).await?;
        let extras = self.store.project(run.project_id).await?.settings;
        let mut req = req.clone();
        if let Some(usd) = extras.budget_usd_per_run {
            req.budget_micros = Some((usd * 1e6) as i64);
        }
        let fallback = FixedSelector { provider: String::new(), model: String::new() };
        let mut decision = self.default.as_ref().unwrap_or(&fallback).select(&req).await?;
        if self.default.is_none() {
            decision.selector = AGENT_DEFAULT_SELECTOR.into();
            decision.reasoning =
                "no model configured (engine.models, the project's model): the agent's own default".into();
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use paid_core::testing::fixtures;

    async fn decide(default: Option<FixedSelector>, project_model: Option<&str>) -> ModelDecision {
        let store: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
        let mut project = fixtures::project("widgets");
        project.settings.model = project_model.map(str::to_string);
        store.put_project(&project).await.unwrap();
        store.put_issue(&fixtures::issue(project.id, 1)).await.unwrap();
        let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
        let req = SelectionRequest {
            run_id: run.id,
            title: "t".into(),
            labels: Vec::new(),
            candidates: Vec::new(),
            budget_micros: None,
            at: fixtures::at(0),
        };
        ProjectSelector::new(store, default).select(&req).await.unwrap()
    }

    #[tokio::test]
    async fn with_no_model_configured_the_agent_default_is_used_never_a_placeholder() {
        let d = decide(None, None).await;
        assert_eq!((d.provider.as_str(), d.model.as_str()), ("", ""));
        assert_eq!(d.selector, AGENT_DEFAULT_SELECTOR);
        // The project's model wins over the agent's default...
        let d = decide(None, Some("gpt-5")).await;
        assert_eq!((d.model.as_str(), d.selector.as_str()), ("gpt-5", "project_preference"));
        // ...and the first of engine.models is the default otherwise.
        let fixed = FixedSelector { provider: "anthropic".into(), model: "claude-sonnet-4-5".into() };
        let d = decide(Some(fixed), None).await;
        assert_eq!(
            (d.provider.as_str(), d.model.as_str(), d.selector.as_str()),
            ("anthropic", "claude-sonnet-4-5", "fixed")
        );
    }
}
