//! The driver's steps up to verification, one function per run state:
//! what the driver does there, and where the run goes next.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::follow_up::{follow_up_context, follow_up_prompt};
use super::held::Drive;
use super::journal::{Journal, OutputKind, Retry, StepOutput};
use super::limits::Watch;
use super::{Driver, RunLogger, SandboxSession};
use crate::engine::EngineEvent;
use crate::engine::comparison::{CompareProvisionOut, compared};
use crate::engine::learn::{PromptPick, recorded_prompt};
use crate::policy::branch_name;
use crate::{
    AgentContext, AgentExit, AgentOutcome, Error, ExecExit, ExecRequest, Failure, ModelDecision, Project,
    ProxyEndpoint, Result, Run, RunId, RunKind, RunPatch, RunState, SandboxHandle, SandboxSpec, SelectionRequest,
    UsageRecord, Worktree, WorktreeRequest,
};

/// The worktree and sandbox a run works in. Every step that (re)creates
/// them records them in its journal output under `resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Resources {
    pub(crate) worktree: Worktree,
    pub(crate) sandbox: SandboxHandle,
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
pub(crate) const DIGEST_TAIL: usize = 2_000;

impl Driver {
    /// `selecting_model`: the selector's model, and a build run's branch.
    pub(super) async fn select_model(&self, d: &Drive) -> Result<RunState> {
        let (run, journal) = (&d.run, &d.journal);
        let issue = d.issue().await?;
        let req = SelectionRequest {
            run_id: run.id,
            title: issue.title.clone(),
            labels: issue.labels.clone(),
            candidates: self.config.models.clone(),
            budget_micros: self.config.budget_micros,
            at: self.clock.now(),
        };
        let selector = &self.selector;
        let timeout = Duration::from_secs(30);
        let decision: ModelDecision =
            self.journaled(run, journal, None, timeout, Retry::Transient, || selector.select(&req)).await?;
        self.store.record_decision(&decision).await?;
        // A build run's branch is named now, in the same write as its model.
        let branch = match (run.kind, &run.branch) {
            (RunKind::Build, None) => Some(self.branch_name(d).await?),
            _ => None,
        };
        // An empty model is the agent's own default: the run names none.
        let model = Some(decision.model.clone()).filter(|m| !m.is_empty());
        d.set_with_transition(RunPatch { model, branch, ..Default::default() });
        match run.kind {
            RunKind::Plan => Ok(RunState::Planning),
            RunKind::Build => Ok(RunState::Provisioning),
        }
    }

    /// A fresh branch for the run: a follow-up run works on its PR's branch,
    /// others on a new one named after the issue.
    async fn branch_name(&self, d: &Drive) -> Result<String> {
        let run = &d.run;
        Ok(match follow_up_context(run) {
            Some(ctx) => ctx.branch,
            None => branch_name(run.issue_number, &d.issue().await?.title, &self.ids.hex(3)),
        })
    }

    /// `provisioning`: the run's worktree and sandbox (a comparison's:
    /// every candidate's) and its prompt version.
    pub(super) async fn provision(&self, d: &Drive) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let branch = match &run.branch {
            Some(b) => b.clone(),
            None => {
                // Selected before branches were named with the model.
                let b = self.branch_name(d).await?;
                d.set_with_transition(RunPatch { branch: Some(b.clone()), ..Default::default() });
                b
            }
        };
        if let Some(spec) = self.comparison.spec(run) {
            return self.comparison.provision(self, run, project, journal, &spec, &branch).await;
        }
        let t = &self.config.timeouts;
        let out: ProvisionOut = self
            .journaled(run, journal, Some(&branch), t.provision + t.clone, Retry::Transient, || async {
                let prompt = self.learning.pick_prompt(run, project).await;
                Ok(ProvisionOut { resources: self.create_resources(run, project, journal, &branch).await?, prompt })
            })
            .await?;
        // The prompt version picked (learning on) goes into the run's context.
        if let Some(pick) = &out.prompt
            && run.context.prompt_version != Some(pick.version)
        {
            let mut context = run.context.clone();
            context.prompt_version = Some(pick.version);
            d.set_with_transition(RunPatch { context: Some(context), ..RunPatch::default() });
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
    pub(crate) async fn create_resources_for(
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
        let runtime = &self.runtime;
        runtime.ensure_image(&project.image).await?;
        self.workspaces.ensure_mirror(project).await?;
        let mut worktree =
            self.workspaces.create_worktree(&WorktreeRequest { project, run_id: worktree_id, branch }).await?;
        // A follow-up run first brings its PR's branch up to date (follow_up.rs),
        // before the sandbox makes the files writable for its user.
        if worktree_id == run.id
            && let Some(ctx) = follow_up_context(run)
            && let Err(e) = self.rebase_follow_up(run, project, &mut worktree, &ctx, kept).await
        {
            if !kept && let Err(cleanup) = self.workspaces.remove(&worktree).await {
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
                if let Err(cleanup) = self.workspaces.remove(&worktree).await {
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
            if r.worktree.path.exists() && self.runtime.is_running(&r.sandbox).await.unwrap_or(false) {
                return Ok(r.clone());
            }
            let _ = self.runtime.remove(&r.sandbox).await;
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
                self.workspaces.create_worktree(&WorktreeRequest { project, run_id: run.id, branch }).await
            }
        }
    }

    /// `running_agent`: one agent iteration (a comparison's: every
    /// candidate's loop).
    pub(super) async fn run_agent(&self, d: &Drive, cancel: &CancellationToken) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        if let Some(provisioned) = journal.latest::<CompareProvisionOut>() {
            return self.comparison.run(self, run, project, journal, provisioned, cancel).await;
        }
        let store = &self.store;
        let issue = d.issue().await?;
        let agent = self.agent(project)?;
        let feedback = journal.latest::<VerifyOut>().filter(|v| !v.passed).map(|v| v.digest);
        let pick = recorded_prompt(journal);
        let mut prompt = self.learning.render_prompt(run, issue, feedback.as_deref(), pick.as_ref()).await?;
        if let Some(ctx) = follow_up_context(run) {
            // Trusted text only: the forge dropped untrusted review comments.
            prompt.push_str(&follow_up_prompt(&ctx));
        }
        let iteration = run.iterations + 1;
        let limit = self.config.timeouts.agent;
        let proxy: Option<ProxyEndpoint> = match &self.credentials {
            Some(c) => Some(c.issue(run.id, run.project_id, limit + Duration::from_secs(30)).await?),
            None => None,
        };
        let logger = self.logger(run.id);
        let (prompt, feedback, agent, proxy, logger_ref) = (&prompt, &feedback, &agent, &proxy, &logger);
        let out: Result<AgentOut> = self
            .journaled(run, journal, None, limit + Duration::from_secs(30), Retry::Never, move || async move {
                let resources = self.ensure_resources(run, project, journal).await?;
                let session = SandboxSession::new(self.runtime.clone(), resources.sandbox.clone(), logger_ref.clone());
                let agent_cancel = cancel.child_token();
                let timer = tokio::spawn({
                    let t = agent_cancel.clone();
                    async move {
                        tokio::time::sleep(limit).await;
                        t.cancel();
                    }
                });
                let started = tokio::time::Instant::now();
                let watch = Watch {
                    workspaces: self.workspaces.as_ref(),
                    worktree: &resources.worktree,
                    limits: &self.config.worktree_limits,
                    every: self.config.worktree_check_interval,
                };
                let stop = agent_cancel.clone();
                let result = watch
                    .run(
                        &stop,
                        agent.run(AgentContext {
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
                        }),
                    )
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
        d.set_with_transition(RunPatch { iterations: Some(out.iteration), ..Default::default() });
        if let Some(c) = &self.credentials
            && let Some(reason) = c.budget_exceeded(run.id).await?
        {
            return Err(Error::BudgetExceeded(reason));
        }
        if let Some(usage) = out.outcome.usage {
            // Data, not money: a proxy metering the run charges its own count.
            let model = run.model.as_deref().unwrap_or_default();
            let metered = self.credentials.is_some();
            let cost = out.outcome.cost_micros;
            let now = self.clock.now();
            store
                .record_usage(&UsageRecord::reported(run.id, &project.agent, model, usage, cost, metered, now))
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

    /// `verifying`: the project's verify commands.
    pub(super) async fn verify(&self, d: &Drive, cancel: &CancellationToken) -> Result<RunState> {
        let (run, project, journal) = (&d.run, &d.project, &d.journal);
        let per_command = self.config.timeouts.verify;
        let total = per_command * (project.verify.len() as u32).max(1) + Duration::from_secs(30);
        let logger = self.logger(run.id);
        let out: Result<VerifyOut> = self
            .journaled(run, journal, None, total, Retry::Never, || async {
                let resources = self.ensure_resources(run, project, journal).await?;
                let session = SandboxSession::new(self.runtime.clone(), resources.sandbox.clone(), logger.clone());
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
        } else if run.iterations < self.config.max_iterations {
            self.events.emit(EngineEvent::Note {
                run_id: run.id,
                message: format!("verify failed on iteration {}; retrying", run.iterations),
            });
            Ok(RunState::RunningAgent)
        } else {
            Err(Error::VerifyFailed { iterations: run.iterations, digest: tail(&out.digest, 500).to_string() })
        }
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

pub(crate) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = s.len() - max;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}
