//! The driver role: claims runs and drives each through its steps, one
//! function per run state (`steps.rs` up to verification, `deliver.rs`
//! after, `plan.rs` for plan runs, `follow_up.rs` for follow-up runs'
//! rebase), each journaled with retry and time limit (`journal.rs`), with
//! what one drive holds in a [`Drive`] (`held.rs`), commands' output
//! streamed into the run log (`session.rs`) and the lease, heartbeat and
//! worker loop in `worker.rs`.
//!
//! [`Driver`] sees every port a step uses. It calls the learning hooks
//! (prompts, outcomes) and, for a comparison run, the comparison role,
//! which it lends itself to for the steps a comparison shares.

mod deliver;
mod follow_up;
mod held;
pub(crate) mod journal;
pub(crate) mod limits;
mod plan;
mod session;
mod steps;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use follow_up::REBASE_ACTION;
pub(crate) use follow_up::follow_up_context;
pub(crate) use plan::PLAN_LABEL;
pub use plan::{PLAN_TEMPLATE, PlannedIssue};
pub use session::{ExecOutput, RunLogger, SandboxSession};
pub use steps::comment_marker;
pub(crate) use steps::{DIGEST_TAIL, Resources, tail};
pub use worker::{ClaimGate, WorkerOptions};

use self::held::Drive;
use self::journal::PendingFinishes;
use self::steps::end_state;
use super::builder::Parts;
use super::comparison::Comparison;
use super::events::{EngineEvent, Events};
use super::learn::LearningHooks;
use crate::engine::EngineConfig;
use crate::metrics::{AgentLabels, Metrics, RunLabels};
use crate::{
    Agent, AuditEvent, Clock, Error, Failure, Forge, Ids, LlmProvider, LogStream, ModelSelector, Project, Result, Run,
    RunCredentials, RunId, RunPatch, RunState, SandboxRuntime, Store, Transition, Workspaces,
};

/// Drives claimed runs through their steps. Cheap to clone; clones share
/// state (the step results waiting for their transition).
#[derive(Clone)]
pub(crate) struct Driver {
    store: Arc<dyn Store>,
    runtime: Arc<dyn SandboxRuntime>,
    forge: Arc<dyn Forge>,
    workspaces: Arc<dyn Workspaces>,
    agents: Arc<HashMap<String, Arc<dyn Agent>>>,
    selector: Arc<dyn ModelSelector>,
    planner: Option<Arc<dyn LlmProvider>>,
    credentials: Option<Arc<dyn RunCredentials>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    config: Arc<EngineConfig>,
    metrics: Arc<Metrics>,
    events: Events,
    pending_finishes: Arc<PendingFinishes>,
    learning: LearningHooks,
    comparison: Comparison,
}

impl Driver {
    /// The role, with the ports it uses, the learning hooks and the
    /// comparison role.
    pub(crate) fn new(parts: &Parts, learning: LearningHooks, comparison: Comparison) -> Self {
        Self {
            store: parts.store.clone(),
            runtime: parts.runtime.clone(),
            forge: parts.forge.clone(),
            workspaces: parts.workspaces.clone(),
            agents: parts.agents.clone(),
            selector: parts.selector.clone(),
            planner: parts.planner.clone(),
            credentials: parts.credentials.clone(),
            clock: parts.clock.clone(),
            ids: parts.ids.clone(),
            config: parts.config.clone(),
            metrics: parts.metrics.clone(),
            events: parts.events.clone(),
            pending_finishes: Arc::default(),
            learning,
            comparison,
        }
    }

    /// Executes the step of the run's current state once and moves it on
    /// (see [`Engine::advance`](crate::engine::Engine::advance)).
    pub(crate) async fn advance(&self, run_id: RunId) -> Result<Run> {
        let run = self.store.run(run_id).await?;
        if run.state.is_terminal() || run.state.is_parked() {
            // Parked: no worker holds it until a human moves it on.
            return Ok(run);
        }
        let requested = self.store.cancel_requested(run.id).await?;
        let mut drive = self.load_drive(run, Arc::new(requested.into())).await?;
        self.advance_drive(&mut drive, &CancellationToken::new()).await?;
        Ok(drive.run)
    }

    /// [`Driver::advance`] within a drive: the step gets what the drive
    /// holds ([`Drive`]), and the drive gets the run as the step's writes
    /// left it.
    async fn advance_drive(&self, drive: &mut Drive, cancel: &CancellationToken) -> Result<()> {
        let run = &drive.run;
        if run.state.is_terminal() || run.state.is_parked() {
            // Parked: no worker holds it until a human moves it on.
            return Ok(());
        }
        let owner = &self.config.worker_id;
        if run.lease_owner.as_deref() != Some(owner.as_str()) {
            return Err(Error::LeaseLost { run: run.id.to_string(), owner: owner.clone() });
        }
        let moved = if run.state != RunState::Cleaning && run.failure.is_none() && drive.cancel_requested() {
            self.fail(drive, Error::Cancelled).await
        } else {
            match self.step(drive, cancel).await {
                Ok(next) => self.move_to(drive, &drive.run, next).await,
                Err(e @ Error::LeaseLost { .. }) => {
                    // Another worker owns the run now: a result waiting for our
                    // next transition must not land on its journal later.
                    self.pending_finishes.forget(drive.run.id);
                    Err(e)
                }
                Err(e) => {
                    let e = if cancel.is_cancelled() && drive.cancel_requested() { Error::Cancelled } else { e };
                    self.fail(drive, e).await
                }
            }
        };
        drive.run = moved?;
        Ok(())
    }

    async fn step(&self, d: &Drive, cancel: &CancellationToken) -> Result<RunState> {
        match d.run.state {
            RunState::Queued => Ok(RunState::SelectingModel),
            RunState::SelectingModel => self.select_model(d).await,
            RunState::Planning => self.plan(d).await,
            RunState::Provisioning => self.provision(d).await,
            RunState::RunningAgent => self.run_agent(d, cancel).await,
            RunState::Verifying => self.verify(d, cancel).await,
            RunState::Committing => {
                self.commit(d, &self.comparison.apply_choice(self, &d.run, &d.journal).await?).await
            }
            RunState::PolicyCheck => self.policy_check(d).await,
            RunState::Pushing => self.push(d).await,
            RunState::OpeningPr => self.open_pr(d).await,
            RunState::Reporting => self.report(d).await,
            RunState::Cleaning => self.clean(d).await,
            end => {
                Err(Error::IllegalTransition { run: d.run.id.to_string(), from: end.to_string(), to: end.to_string() })
            }
        }
    }

    /// Moves `run` (the drive's run, or that run as a step changed it) to `to`.
    async fn move_to(&self, d: &Drive, run: &Run, to: RunState) -> Result<Run> {
        let moved = self
            .transition_journaled(
                &Transition {
                    run_id: run.id,
                    from: run.state,
                    to,
                    owner: self.config.worker_id.clone(),
                    at: self.clock.now(),
                    patch: d.take_patch(),
                },
                &d.journal,
            )
            .await?;
        info!(run_id = %run.id, project_id = %run.project_id, from = %run.state, %to, "run moved");
        if to.is_terminal() {
            self.record_end(&moved, &d.project);
        }
        self.events.emit(EngineEvent::Transition { run_id: run.id, from: run.state, to });
        Ok(moved)
    }

    /// Records why the run failed and sends it to cleanup (or, from cleanup,
    /// to its end state).
    async fn fail(&self, d: &Drive, error: Error) -> Result<Run> {
        let run = &d.run;
        let store = &self.store;
        warn!(run_id = %run.id, step = %run.state, error = %error, "run step failed");
        if let Error::PolicyViolation { paths } = &error {
            store
                .audit(&AuditEvent {
                    at: self.clock.now(),
                    project_id: Some(run.project_id),
                    actor: "engine".into(),
                    action: "policy.forbidden_paths".into(),
                    subject: format!("run:{}", run.id),
                    details: serde_json::json!({ "paths": paths }),
                })
                .await?;
        }
        let failure = run.failure.clone().unwrap_or(Failure {
            step: run.state,
            code: error.code().into(),
            message: error.to_string(),
        });
        if run.failure.is_none() {
            d.set_with_transition(RunPatch { failure: Some(failure.clone()), ..Default::default() });
            let _ = self
                .logger(run.id)
                .write(LogStream::System, &format!("[paid] {}: {}\n", run.state, failure.message))
                .await;
        }
        let to = if run.state == RunState::Cleaning { end_state(&failure) } else { RunState::Cleaning };
        self.move_to(d, run, to).await
    }

    fn record_end(&self, run: &Run, project: &Project) {
        let m = &self.metrics;
        let agent_type = project.agent.clone();
        let project_id = run.project_id.to_string();
        m.agent_runs_total
            .get_or_create(&RunLabels {
                project_id: project_id.clone(),
                agent_type: agent_type.clone(),
                status: run.state.to_string(),
            })
            .inc();
        let labels = AgentLabels { project_id, agent_type };
        let secs = (self.clock.now() - run.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        m.agent_run_duration_seconds.get_or_create(&labels).observe(secs);
        if run.state == RunState::Succeeded {
            m.iterations_to_complete.get_or_create(&labels).observe(f64::from(run.iterations));
        }
    }

    /// A logger into `run_id`'s log, under the configured cap.
    pub(crate) fn logger(&self, run_id: RunId) -> RunLogger {
        RunLogger::new(self.store.clone(), self.clock.clone(), run_id, self.config.log_cap_bytes)
    }

    /// The agent `project` names.
    pub(crate) fn agent(&self, project: &Project) -> Result<Arc<dyn Agent>> {
        self.agents.get(&project.agent).cloned().ok_or_else(|| Error::InvalidInput {
            what: "project.agent".into(),
            message: format!(
                "no agent {:?} is registered; known: {:?}",
                project.agent,
                self.agents.keys().collect::<Vec<_>>()
            ),
        })
    }

    /// Patches the run as this worker, which holds its lease.
    pub(crate) async fn patch(&self, run: &Run, patch: RunPatch) -> Result<Run> {
        self.store.patch_run(run.id, &self.config.worker_id, &patch, self.clock.now()).await
    }
}
