//! The engine: the one place that sequences a run's steps.
//!
//! A run is a persisted state machine ([`crate::RunState`]). The engine
//! claims a run with a lease, then [`Engine::advance`]s it one state at a
//! time: each step is journaled in the store before its side effect and
//! marked done after, and every side effect carries an idempotency key
//! (the branch for push, the head branch for the PR, a hidden marker for the
//! comment), so a run resumed by another worker never pushes twice, opens a
//! second PR or comments twice.

mod builder;
mod candidate;
mod choice;
mod compare;
mod config;
mod deliver;
mod drive;
mod events;
mod fanout;
mod follow_up;
mod intake;
mod journal;
mod learn;
mod maintenance;
mod plan;
pub mod prompt;
mod session;
mod steps;
mod templates;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;

pub use builder::EngineBuilder;
pub use compare::{Candidate, CandidateReport, CompareSpec, Criterion, Ranking, SelectionRule, table as compare_table};
pub use config::{EngineConfig, MAX_PR_BODY, RetryConfig, StepTimeouts};
pub use events::EngineEvent;
pub use fanout::worktree_ids;
pub use follow_up::{FOLLOW_UP_ACTION, FollowUpContext, FollowUpReport, REBASE_ACTION};
pub use intake::PollReport;
pub use maintenance::{SweepOptions, SweepReport};
pub use plan::{PLAN_TEMPLATE, PlannedIssue};
pub use session::{ExecOutput, RunLogger, SandboxSession};
pub use steps::comment_marker;
pub use worker::{ClaimGate, WorkerOptions};

use crate::metrics::Metrics;
use crate::{Agent, Clock, Forge, Ids, ModelSelector, RunCredentials, SandboxRuntime, Store, Workspaces};

/// Runs issues through the pipeline. Cheap to clone; clones share state.
///
/// ```no_run
/// # async fn demo(engine: paid_core::engine::Engine, project: paid_core::ProjectId) -> paid_core::Result<()> {
/// engine.poll_project(project).await?;   // queue runs for labeled issues
/// while let Some(run) = engine.run_once().await? {
///     println!("run {} ended {}", run.id, run.state);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("worker_id", &self.inner.config.worker_id).finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    runtime: Arc<dyn SandboxRuntime>,
    forge: Arc<dyn Forge>,
    workspaces: Arc<dyn Workspaces>,
    agents: HashMap<String, Arc<dyn Agent>>,
    selector: Arc<dyn ModelSelector>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    config: EngineConfig,
    template: String,
    events: broadcast::Sender<EngineEvent>,
    metrics: Arc<Metrics>,
    credentials: Option<Arc<dyn RunCredentials>>,
    planner: Option<Arc<dyn crate::LlmProvider>>,
    learning: Option<learn::LearningSetup>,
    compare: HashMap<crate::ProjectId, CompareSpec>,
    pending_finishes: journal::PendingFinishes,
}

impl Engine {
    /// A builder.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    /// Progress events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// The store this engine uses.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The metrics this engine records.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    fn emit(&self, event: EngineEvent) {
        // No subscriber is fine.
        let _ = self.inner.events.send(event);
    }
}
