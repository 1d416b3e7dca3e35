//! One function per run state: what the engine does there, and where the
//! run goes next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::drive::Drive;
use super::fanout::{CompareProvisionOut, compared};
use super::follow_up::follow_up_prompt;
use super::journal::{Journal, OutputKind, Retry, StepOutput};
use super::learn::PromptPick;
use super::learn::recorded_prompt;
use super::{Engine, EngineEvent, RunLogger, SandboxSession};
use crate::metrics::{AgentLabels, RunLabels};
use crate::policy::branch_name;
use crate::{
    Agent, AgentContext, AgentExit, AgentOutcome, AuditEvent, Error, ExecExit, ExecRequest, Failure, LogStream,
    ModelDecision, Project, ProxyEndpoint, Result, Run, RunId, RunKind, RunPatch, RunState, SandboxHandle, SandboxSpec,
    SelectionRequest, Transition, UsageRecord, Worktree, WorktreeRequest,
};

/// The worktree and sandbox a run works in. Every step that (re)creates
/// them records them in its journal output under `resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Resources {
    pub(super) worktree: Worktree,
    pub(super) sandbox: SandboxHandle,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProvisionOut {
    resources: Resources,
    /// The prompt version the run renders (learning only).
    #[serde(default)]
    prompt: Option<PromptPick>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AgentOut {
    resources: Resources,
    iteration: u32,
    outcome: AgentOutcome,
}

impl StepOutput for ProvisionOut {
    const KIND: OutputKind = OutputKind::Provision;
}

impl StepOutput for AgentOut {
    const KIND: OutputKind = OutputKind::Agent;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct VerifyOut {
    pub(super) resources: Resources,
    pub(super) passed: bool,
    pub(super) digest: String,
}

impl StepOutput for VerifyOut {
    const KIND: OutputKind = OutputKind::Verify;
}

/// How much of a failing verify command's output the agent gets back.
pub(super) const DIGEST_TAIL: usize = 2_000;

impl Engine {
    /// Executes the step of the run's current state once and moves it on.
    /// The caller must hold the run's lease (see [`Engine::claim_next`]).
    /// Returns the run in its new state; a run in an end state is returned
    /// unchanged.
    pub async fn advance(&self, run_id: RunId) -> Result<Run> {
        let run = self.inner.store.run(run_id).await?;
        if run.state.is_terminal() || run.state.is_parked() {
            // Parked: no worker holds it until a human moves it on.
            return Ok(run);
        }
        let requested = self.inner.store.cancel_requested(run.id).await?;
        let mut drive = self.load_drive(run, Arc::new(requested.into())).await?;
        self.advance_drive(&mut drive, &CancellationToken::new()).await?;
        Ok(drive.run)
    }

    /// [`Engine::advance`] within a drive: the step gets what the drive
    /// holds ([`Drive`]), and the drive gets the run as the step's writes
    /// left it.
    pub(super) async fn advance_drive(&self, drive: &mut Drive, cancel: &CancellationToken) -> Result<()> {
        let run = &drive.run;
        if run.state.is_terminal() || run.state.is_parked() {
            // Parked: no worker holds it until a human moves it on.
            return Ok(());
        }
        let owner = &self.inner.config.worker_id;
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
                    self.inner.pending_finishes.forget(drive.run.id);
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
            RunState::Committing => self.commit(d, &self.apply_choice(&d.run, &d.journal).await?).await,
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
                    owner: self.inner.config.worker_id.clone(),
                    at: self.inner.clock.now(),
                    context: None,
                },
                &d.journal,
            )
            .await?;
        info!(run_id = %run.id, project_id = %run.project_id, from = %run.state, %to, "run moved");
        if to.is_terminal() {
            self.record_end(&moved, &d.project);
        }
        self.emit(EngineEvent::Transition { run_id: run.id, from: run.state, to });
        Ok(moved)
    }

    /// Records why the run failed and sends it to cleanup (or, from cleanup,
    /// to its end state).
    async fn fail(&self, d: &Drive, error: Error) -> Result<Run> {
        let run = &d.run;
        let store = &self.inner.store;
        let owner = self.inner.config.worker_id.as_str();
        warn!(run_id = %run.id, step = %run.state, error = %error, "run step failed");
        if let Error::PolicyViolation { paths } = &error {
            store
                .audit(&AuditEvent {
                    at: self.inner.clock.now(),
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
        let mut run = run.clone();
        if run.failure.is_none() {
            run = store
                .patch_run(
                    run.id,
                    owner,
                    &RunPatch { failure: Some(failure.clone()), ..Default::default() },
                    self.inner.clock.now(),
                )
                .await?;
            let _ = self
                .logger(run.id)
                .write(LogStream::System, &format!("[paid] {}: {}\n", run.state, failure.message))
                .await;
        }
        let to = if run.state == RunState::Cleaning { end_state(&failure) } else { RunState::Cleaning };
        self.move_to(d, &run, to).await
    }

    fn record_end(&self, run: &Run, project: &Project) {
        let m = &self.inner.metrics;
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
        let secs = (self.inner.clock.now() - run.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        m.agent_run_duration_seconds.get_or_create(&labels).observe(secs);
        if run.state == RunState::Succeeded {
            m.iterations_to_complete.get_or_create(&labels).observe(f64::from(run.iterations));
        }
    }

    pub(super) fn logger(&self, run_id: RunId) -> RunLogger {
        RunLogger::new(self.inner.store.clone(), self.inner.clock.clone(), run_id, self.inner.config.log_cap_bytes)
    }

    pub(super) fn agent(&self, project: &Project) -> Result<Arc<dyn Agent>> {
        self.inner.agents.get(&project.agent).cloned().ok_or_else(|| Error::InvalidInput {
            what: "project.agent".into(),
            message: format!(
                "no agent {:?} is registered; known: {:?}",
                project.agent,
                self.inner.agents.keys().collect::<Vec<_>>()
            ),
        })
    }

    async fn select_model(&self, d: &Drive) -> Result<RunState> {
        let (run, journal) = (&d.run, &d.journal);
        let issue = d.issue().await?;
        let req = SelectionRequest {
            run_id: run.id,
            title: issue.title.clone(),
            labels: issue.labels.clone(),
            candidates: self.inner.config.models.clone(),
            budget_micros: self.inner.config.budget_micros,
            at: self.inner.clock.now(),
        };
        let selector = &self.inner.selector;
        let timeout = Duration::from_secs(30);
        let decision: ModelDecision =
            self.journaled(run, journal, None, timeout, Retry::Transient, || selector.select(&req)).await?;
        self.inner.store.record_decision(&decision).await?;
        // A build run's branch is named now, in the same write as its model.
        let branch = match (run.kind, &run.branch) {
            (RunKind::Build, None) => Some(self.branch_name(d).await?),
            _ => None,
        };
        self.patch(run, RunPatch { model: Some(decision.model.clone()), branch, ..Default::default() }).await?;
        match run.kind {
            RunKind::Plan => Ok(RunState::Planning),
            RunKind::Build => Ok(RunState::Provisioning),
        }
    }

    /// A fresh branch for the run: a follow-up run works on its PR's branch,
    /// others on a new one named after the issue.
    async fn branch_name(&self, d: &Drive) -> Result<String> {
        let run = &d.run;
        Ok(match self.follow_up_context(run).await? {
            Some(ctx) => ctx.branch,
            None => branch_name(run.issue_number, &d.issue().await?.title, &self.inner.ids.hex(3)),
        })
    }

    async fn provision(&self, d: &Drive) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let branch = match &run.branch {
            Some(b) => b.clone(),
            None => {
                // Selected before branches were named with the model.
                let b = self.branch_name(d).await?;
                self.patch(run, RunPatch { branch: Some(b.clone()), ..Default::default() }).await?;
                b
            }
        };
        if let Some(spec) = self.compare_spec(run).await? {
            return self.provision_compare(run, project, journal, &spec, &branch).await;
        }
        let t = &self.inner.config.timeouts;
        let out: ProvisionOut = self
            .journaled(run, journal, Some(&branch), t.provision + t.clone, Retry::Transient, || async {
                let prompt = self.pick_prompt(run, project).await;
                Ok(ProvisionOut { resources: self.create_resources(run, project, journal, &branch).await?, prompt })
            })
            .await?;
        // The prompt version picked (learning on) goes into the run's context.
        if let Some(pick) = &out.prompt
            && run.context.prompt_version != Some(pick.version)
        {
            let mut context = run.context.clone();
            context.prompt_version = Some(pick.version);
            self.patch(run, RunPatch { context: Some(context), ..RunPatch::default() }).await?;
        }
        Ok(RunState::RunningAgent)
    }

    async fn create_resources(
        &self,
        run: &Run,
        project: &Project,
        journal: &Journal,
        branch: &str,
    ) -> Result<Resources> {
        // A worktree kept from earlier (only the sandbox is re-created) may hold the agent's work.
        let kept = latest_resources(journal).is_some_and(|r| r.worktree.path.exists());
        self.create_resources_in(run, project, branch, run.id, &[], kept).await
    }

    /// Creates a worktree (named by `worktree_id`, a comparison candidate)
    /// on `branch` and a sandbox of the run on it.
    pub(super) async fn create_resources_for(
        &self,
        run: &Run,
        project: &Project,
        branch: &str,
        worktree_id: RunId,
        extra_env: &[(String, String)],
    ) -> Result<Resources> {
        self.create_resources_in(run, project, branch, worktree_id, extra_env, false).await
    }

    /// Creates a worktree (named by `worktree_id`: the run, or a comparison
    /// candidate) on `branch` and a sandbox of the run on it. `kept`: the
    /// run's own worktree is there from earlier.
    async fn create_resources_in(
        &self,
        run: &Run,
        project: &Project,
        branch: &str,
        worktree_id: RunId,
        extra_env: &[(String, String)],
        kept: bool,
    ) -> Result<Resources> {
        let runtime = &self.inner.runtime;
        runtime.ensure_image(&project.image).await?;
        self.inner.workspaces.ensure_mirror(project).await?;
        let mut worktree =
            self.inner.workspaces.create_worktree(&WorktreeRequest { project, run_id: worktree_id, branch }).await?;
        // A follow-up run first brings its PR's branch up to date (follow_up.rs),
        // before the sandbox makes the files writable for its user.
        if worktree_id == run.id
            && let Some(ctx) = self.follow_up_context(run).await?
            && let Err(e) = self.rebase_follow_up(run, project, &mut worktree, &ctx, kept).await
        {
            if !kept && let Err(cleanup) = self.inner.workspaces.remove(&worktree).await {
                warn!(run_id = %run.id, error = %cleanup, "could not remove worktree after a failed rebase");
            }
            return Err(e);
        }
        let mut env = BTreeMap::from([
            ("PAID_RUN_ID".to_string(), run.id.to_string()),
            ("HOME".to_string(), "/home/agent".to_string()),
        ]);
        env.extend(extra_env.iter().cloned());
        let spec = SandboxSpec {
            run_id: run.id,
            project_id: project.id,
            image: project.image.clone(),
            worktree: worktree.path.clone(),
            mount_at: SandboxSpec::DEFAULT_MOUNT.to_string(),
            env,
            limits: Default::default(),
        };
        let started = std::time::Instant::now();
        match runtime.create(&spec).await {
            Ok(sandbox) => {
                // The runtime records `container_startup_seconds`: it knows what startup is.
                info!(run_id = %run.id, sandbox = %sandbox.id, elapsed_ms = started.elapsed().as_millis() as u64, "sandbox ready");
                Ok(Resources { worktree, sandbox })
            }
            Err(e) => {
                if let Err(cleanup) = self.inner.workspaces.remove(&worktree).await {
                    warn!(run_id = %run.id, error = %cleanup, "could not remove worktree after failed sandbox create");
                }
                Err(e)
            }
        }
    }

    /// The run's resources, re-created if the worktree or sandbox is gone
    /// (the run moved to another worker, or the host restarted).
    async fn ensure_resources(&self, run: &Run, project: &Project, journal: &Journal) -> Result<Resources> {
        let current = latest_resources(journal);
        if let Some(r) = &current {
            if r.worktree.path.exists() && self.inner.runtime.is_running(&r.sandbox).await.unwrap_or(false) {
                return Ok(r.clone());
            }
            let _ = self.inner.runtime.remove(&r.sandbox).await;
        }
        let branch = run.branch.clone().ok_or_else(|| Error::InvalidInput {
            what: "run.branch".into(),
            message: format!("run {} has no branch; it was never provisioned", run.id),
        })?;
        self.create_resources(run, project, journal, &branch).await
    }

    pub(super) async fn worktree(&self, run: &Run, project: &Project, journal: &Journal) -> Result<Worktree> {
        match latest_resources(journal) {
            Some(r) if r.worktree.path.exists() => Ok(r.worktree),
            _ => {
                let branch = run.branch.as_deref().unwrap_or_default();
                self.inner.workspaces.create_worktree(&WorktreeRequest { project, run_id: run.id, branch }).await
            }
        }
    }

    async fn run_agent(&self, d: &Drive, cancel: &CancellationToken) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        if let Some(provisioned) = journal.latest::<CompareProvisionOut>() {
            return self.run_compare(run, project, journal, provisioned, cancel).await;
        }
        let store = &self.inner.store;
        let issue = d.issue().await?;
        let agent = self.agent(project)?;
        let feedback = journal.latest::<VerifyOut>().filter(|v| !v.passed).map(|v| v.digest);
        let pick = recorded_prompt(journal);
        let mut prompt = self.render_prompt(run, issue, feedback.as_deref(), pick.as_ref()).await?;
        if let Some(ctx) = self.follow_up_context(run).await? {
            // Trusted text only: the forge dropped untrusted review comments.
            prompt.push_str(&follow_up_prompt(&ctx));
        }
        let iteration = run.iterations + 1;
        let limit = self.inner.config.timeouts.agent;
        let proxy: Option<ProxyEndpoint> = match &self.inner.credentials {
            Some(c) => Some(c.issue(run.id, run.project_id).await?),
            None => None,
        };
        let logger = self.logger(run.id);
        let (prompt, feedback, agent, proxy, logger_ref) = (&prompt, &feedback, &agent, &proxy, &logger);
        let out: Result<AgentOut> = self
            .journaled(run, journal, None, limit + Duration::from_secs(30), Retry::Never, move || async move {
                let resources = self.ensure_resources(run, project, journal).await?;
                let session =
                    SandboxSession::new(self.inner.runtime.clone(), resources.sandbox.clone(), logger_ref.clone());
                let agent_cancel = cancel.child_token();
                let timer = tokio::spawn({
                    let t = agent_cancel.clone();
                    async move {
                        tokio::time::sleep(limit).await;
                        t.cancel();
                    }
                });
                let started = tokio::time::Instant::now();
                let result = agent
                    .run(AgentContext {
                        run_id: run.id,
                        project,
                        issue,
                        prompt,
                        model: run.model.as_deref(),
                        sandbox: &session,
                        proxy: proxy.as_ref(),
                        iteration,
                        feedback: feedback.as_deref(),
                        cancel: agent_cancel,
                    })
                    .await;
                timer.abort();
                // Before the step is journaled done: output of commands the agent cut short.
                flush_quietly(logger_ref).await;
                if started.elapsed() >= limit {
                    return Err(Error::Timeout { what: "agent".into(), after: limit });
                }
                Ok(AgentOut { resources, iteration, outcome: result? })
            })
            .await;
        // The step's time limit cut the agent short: its output is stored all the same.
        flush_quietly(&logger).await;
        let out = out?;
        self.patch(run, RunPatch { iterations: Some(out.iteration), ..Default::default() }).await?;
        if let Some(c) = &self.inner.credentials
            && let Some(reason) = c.budget_exceeded(run.id).await?
        {
            return Err(Error::BudgetExceeded(reason));
        }
        if let Some(usage) = out.outcome.usage {
            store
                .record_usage(&UsageRecord {
                    run_id: run.id,
                    provider: format!("agent:{}", project.agent),
                    model: run.model.clone().unwrap_or_default(),
                    usage,
                    cost_micros: out.outcome.cost_micros,
                    latency_ms: 0,
                    status: "reported".into(),
                    at: self.inner.clock.now(),
                })
                .await?;
            d.usage_changed();
        }
        match out.outcome.exit {
            AgentExit::Completed if project.verify.is_empty() => Ok(RunState::Committing),
            AgentExit::Completed => Ok(RunState::Verifying),
            AgentExit::Failed { class, message } => Err(Error::Agent(format!("{class:?}: {message}"))),
            AgentExit::Stuck { reason } => Err(Error::Stuck(reason)),
        }
    }

    async fn verify(&self, d: &Drive, cancel: &CancellationToken) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let per_command = self.inner.config.timeouts.verify;
        let total = per_command * (project.verify.len() as u32).max(1) + Duration::from_secs(30);
        let logger = self.logger(run.id);
        let out: Result<VerifyOut> = self
            .journaled(run, journal, None, total, Retry::Never, || async {
                let resources = self.ensure_resources(run, project, journal).await?;
                let session =
                    SandboxSession::new(self.inner.runtime.clone(), resources.sandbox.clone(), logger.clone());
                let mut digest = String::new();
                for cmd in &project.verify {
                    let req = ExecRequest::shell(cmd.clone()).with_timeout(per_command).with_cancel(cancel.clone());
                    let out = session.exec(req).await?;
                    match out.exit {
                        ExecExit::Code(0) => {}
                        ExecExit::Cancelled => return Err(Error::Cancelled),
                        exit => {
                            let text = format!("{}{}", out.stdout, out.stderr);
                            digest.push_str(&format!("$ {cmd}\n[{exit:?}]\n{}\n", tail(&text, DIGEST_TAIL)));
                        }
                    }
                }
                Ok(VerifyOut { resources, passed: digest.is_empty(), digest })
            })
            .await;
        flush_quietly(&logger).await;
        let out = out?;
        if out.passed {
            Ok(RunState::Committing)
        } else if run.iterations < self.inner.config.max_iterations {
            self.emit(EngineEvent::Note {
                run_id: run.id,
                message: format!("verify failed on iteration {}; retrying", run.iterations),
            });
            Ok(RunState::RunningAgent)
        } else {
            Err(Error::VerifyFailed { iterations: run.iterations, digest: tail(&out.digest, 500).to_string() })
        }
    }

    pub(super) async fn patch(&self, run: &Run, patch: RunPatch) -> Result<Run> {
        self.inner.store.patch_run(run.id, &self.inner.config.worker_id, &patch, self.inner.clock.now()).await
    }
}

/// The latest resources the run's journal records.
pub(super) fn latest_resources(journal: &Journal) -> Option<Resources> {
    journal.latest_field("resources")
}

/// The PR body's summary: a comparison's table, else the agent's summary.
pub(super) fn agent_summary(journal: &Journal) -> String {
    match compared(journal) {
        Some(compared) => compared.pr_summary(),
        None => journal.latest::<AgentOut>().map(|a| a.outcome.summary).unwrap_or_default(),
    }
}

/// Stores what `logger` holds. Best effort: the step's result stands
/// whatever the log store says.
pub(super) async fn flush_quietly(logger: &RunLogger) {
    if let Err(e) = logger.flush().await {
        warn!(error = %e, "could not store the rest of a step's output");
    }
}

/// The hidden marker that identifies a run's comment on its issue.
pub fn comment_marker(run_id: RunId) -> String {
    format!("<!-- paid:run:{run_id} -->")
}

pub(super) fn end_state(failure: &Failure) -> RunState {
    match failure.code.as_str() {
        "cancelled" => RunState::Cancelled,
        "timeout" => RunState::TimedOut,
        "budget_exceeded" => RunState::BudgetExceeded,
        _ => RunState::Failed,
    }
}

pub(super) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = s.len() - max;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}

pub(super) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max.saturating_sub(1)).chain(['…']).collect()
    }
}
