//! Assembling an [`Engine`] from its parts.

use std::collections::HashMap;
use std::sync::Arc;

use super::comparison::Comparison;
use super::drive::Driver;
use super::events::Events;
use super::intake::Intake;
use super::learn::{LearningHooks, LearningSetup};
use super::maintenance::Maintenance;
use super::{CompareSpec, Engine, EngineConfig, Inner};
use crate::learning::driver::Learning;
use crate::metrics::Metrics;
use crate::ports::selector::FixedSelector;
use crate::{
    Agent, Clock, Error, Forge, Ids, LlmProvider, ModelSelector, RandomIds, Result, RunCredentials, SandboxRuntime,
    Store, SystemClock, Workspaces,
};

/// Builds an [`Engine`]. Store, runtime, forge, workspaces and at least one
/// agent are required; the rest have defaults.
#[derive(Default)]
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    runtime: Option<Arc<dyn SandboxRuntime>>,
    forge: Option<Arc<dyn Forge>>,
    workspaces: Option<Arc<dyn Workspaces>>,
    agents: HashMap<String, Arc<dyn Agent>>,
    selector: Option<Arc<dyn ModelSelector>>,
    clock: Option<Arc<dyn Clock>>,
    ids: Option<Arc<dyn Ids>>,
    config: EngineConfig,
    template: Option<String>,
    metrics: Option<Arc<Metrics>>,
    credentials: Option<Arc<dyn RunCredentials>>,
    planner: Option<Arc<dyn LlmProvider>>,
    learning: Option<Learning>,
    prompt_slug: Option<String>,
    global_style: Option<String>,
    project_styles: HashMap<crate::ProjectId, String>,
    compare: HashMap<crate::ProjectId, CompareSpec>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store (required).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The sandbox runtime (required).
    pub fn runtime(mut self, runtime: Arc<dyn SandboxRuntime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The forge (required).
    pub fn forge(mut self, forge: Arc<dyn Forge>) -> Self {
        self.forge = Some(forge);
        self
    }

    /// The git workspaces (required).
    pub fn workspaces(mut self, workspaces: Arc<dyn Workspaces>) -> Self {
        self.workspaces = Some(workspaces);
        self
    }

    /// Registers an agent under its [`Agent::kind`]; projects name it.
    pub fn agent(mut self, agent: Arc<dyn Agent>) -> Self {
        self.agents.insert(agent.kind().to_string(), agent);
        self
    }

    /// The model selector (default: [`FixedSelector`] on the first configured
    /// model, or `scripted/none`).
    pub fn selector(mut self, selector: Arc<dyn ModelSelector>) -> Self {
        self.selector = Some(selector);
        self
    }

    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The id source (default: [`RandomIds`]).
    pub fn ids(mut self, ids: Arc<dyn Ids>) -> Self {
        self.ids = Some(ids);
        self
    }

    /// Settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The task prompt template (default: [`super::prompt::DEFAULT_TEMPLATE`]).
    pub fn prompt_template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Where run metrics are recorded (default: a fresh, unregistered set).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The metering proxy's per-run credentials (default: none; agents then
    /// get no proxy endpoint).
    pub fn credentials(mut self, credentials: Arc<dyn RunCredentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The model that splits `paid-plan` issues into sub-issues (default:
    /// none; plan runs then fail with a clear error). The model name comes
    /// from the selector.
    pub fn planner(mut self, planner: Arc<dyn LlmProvider>) -> Self {
        self.planner = Some(planner);
        self
    }

    /// The learning loop (default: none). With it, each build run renders
    /// the prompt version [`Learning::prompt_for_run`] picks for it (the
    /// issue's experiment arm or the active version of [`Self::prompt_slug`])
    /// instead of [`Self::prompt_template`], records that version in its
    /// journal, and reports its outcome to [`Learning::record_outcome`].
    /// Learning failures are logged and never fail a run.
    pub fn learning(mut self, learning: Learning) -> Self {
        self.learning = Some(learning);
        self
    }

    /// The learning prompt runs render (default: `task`).
    pub fn prompt_slug(mut self, slug: impl Into<String>) -> Self {
        self.prompt_slug = Some(slug.into());
        self
    }

    /// The style guide rendered into every learning prompt.
    pub fn style_guide(mut self, guide: impl Into<String>) -> Self {
        self.global_style = Some(guide.into());
        self
    }

    /// The style guide rendered into the learning prompts of `project`.
    pub fn project_style_guide(mut self, project: crate::ProjectId, guide: impl Into<String>) -> Self {
        self.project_styles.insert(project, guide.into());
        self
    }

    /// Makes every build run of `project` a comparison run of `spec` (runs
    /// queued with [`Engine::enqueue_compare`] use their own spec; follow-up
    /// runs never compare).
    pub fn compare(mut self, project: crate::ProjectId, spec: CompareSpec) -> Self {
        self.compare.insert(project, spec);
        self
    }

    /// Builds the engine, naming the first missing part.
    pub fn build(self) -> Result<Engine> {
        let missing = |part: &str| Error::InvalidInput {
            what: "engine".into(),
            message: format!("no {part} configured; call EngineBuilder::{part}(..)"),
        };
        if self.agents.is_empty() {
            return Err(missing("agent"));
        }
        if self.config.max_iterations == 0 {
            return Err(Error::InvalidInput {
                what: "engine.max_iterations".into(),
                message: "must be at least 1".into(),
            });
        }
        let selector = self.selector.unwrap_or_else(|| {
            let (provider, model) = self
                .config
                .models
                .first()
                .map(|m| (m.provider.clone(), m.model.clone()))
                .unwrap_or_else(|| ("scripted".into(), "none".into()));
            Arc::new(FixedSelector { provider, model })
        });
        for spec in self.compare.values() {
            spec.validate()?;
        }
        let learning = self.learning.map(|learning| LearningSetup {
            learning,
            slug: self.prompt_slug.unwrap_or_else(|| "task".into()),
            global_style: self.global_style,
            project_styles: self.project_styles,
        });
        let parts = Parts {
            store: self.store.ok_or_else(|| missing("store"))?,
            runtime: self.runtime.ok_or_else(|| missing("runtime"))?,
            forge: self.forge.ok_or_else(|| missing("forge"))?,
            workspaces: self.workspaces.ok_or_else(|| missing("workspaces"))?,
            agents: Arc::new(self.agents),
            selector,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            ids: self.ids.unwrap_or_else(|| Arc::new(RandomIds)),
            config: Arc::new(self.config),
            events: Events::new(),
            metrics: self.metrics.unwrap_or_default(),
            credentials: self.credentials,
            planner: self.planner,
        };
        let template = self.template.unwrap_or_else(|| super::prompt::DEFAULT_TEMPLATE.to_string());
        let learning = LearningHooks::new(&parts, learning, template);
        let comparison = Comparison::new(&parts, learning.clone(), self.compare);
        Ok(Engine {
            inner: Arc::new(Inner {
                intake: Intake::new(&parts, learning.clone()),
                driver: Driver::new(&parts, learning.clone(), comparison.clone()),
                comparison,
                learning,
                maintenance: Maintenance::new(&parts),
                store: parts.store,
                metrics: parts.metrics,
                config: parts.config,
                events: parts.events,
            }),
        })
    }
}

/// Everything an engine is built from. Each role takes from it the ports
/// it uses, and only those.
pub(crate) struct Parts {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: Arc<dyn SandboxRuntime>,
    pub(crate) forge: Arc<dyn Forge>,
    pub(crate) workspaces: Arc<dyn Workspaces>,
    pub(crate) agents: Arc<HashMap<String, Arc<dyn Agent>>>,
    pub(crate) selector: Arc<dyn ModelSelector>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn Ids>,
    pub(crate) config: Arc<EngineConfig>,
    pub(crate) events: Events,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) credentials: Option<Arc<dyn RunCredentials>>,
    pub(crate) planner: Option<Arc<dyn LlmProvider>>,
}
