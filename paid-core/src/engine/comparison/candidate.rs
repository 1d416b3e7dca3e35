//! One comparison candidate's work: its agent ⇄ verify loop in its own
//! sandbox, the commit on its own branch, and its [`CandidateReport`].

use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::spec::CandidateReport;
use super::{Comparison, Slot, pick_of};
use crate::engine::SandboxSession;
use crate::engine::drive::limits::Watch;
use crate::engine::drive::{DIGEST_TAIL, Driver, Resources, tail};
use crate::engine::learn::PromptPick;
use crate::policy::{ForbiddenPaths, pr_title};
use crate::{
    Agent, AgentContext, AgentExit, AgentOutcome, CommitRequest, Error, ExecExit, ExecRequest, LogStream, Project,
    ProxyEndpoint, Result, Run, UsageRecord, Worktree,
};

impl Comparison {
    /// Runs one candidate's loop in its slot; its report says how it went.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_candidate(
        &self,
        driver: &Driver,
        run: &Run,
        project: &Project,
        slot: &Slot,
        run_pick: Option<&PromptPick>,
        proxy: Option<&ProxyEndpoint>,
        cancel: &CancellationToken,
    ) -> CandidateReport {
        let started = Instant::now();
        let mut report = CandidateReport::empty(&slot.name, &slot.candidate);
        report.worktree = Some(slot.resources.worktree.clone());
        let pick = pick_of(slot.candidate.prompt_version).or_else(|| run_pick.cloned());
        report.prompt_version = pick.as_ref().map(|p| p.version);
        let result = match self.ensure_slot(driver, run, project, slot).await {
            Ok(resources) => {
                let result = self
                    .candidate_loop(driver, run, project, slot, &resources, pick.as_ref(), proxy, cancel, &mut report)
                    .await;
                if let Err(e) = self.runtime.remove(&resources.sandbox).await {
                    warn!(run_id = %run.id, sandbox = %resources.sandbox.id, error = %e, "could not remove a candidate sandbox");
                }
                result
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(run_id = %run.id, candidate = %slot.name, error = %e, "candidate did not finish");
            report.error = Some(e.to_string());
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// The slot's worktree and sandbox, re-created when gone (the run moved
    /// to another worker, or the host restarted).
    async fn ensure_slot(&self, driver: &Driver, run: &Run, project: &Project, slot: &Slot) -> Result<Resources> {
        let r = &slot.resources;
        if r.worktree.path.exists() && self.runtime.is_running(&r.sandbox).await.unwrap_or(false) {
            return Ok(r.clone());
        }
        let _ = self.runtime.remove(&r.sandbox).await;
        let env = [("PAID_CANDIDATE".to_string(), slot.name.clone())];
        driver.create_resources_for(run, project, &r.worktree.branch, slot.worktree_id, &env).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn candidate_loop(
        &self,
        driver: &Driver,
        run: &Run,
        project: &Project,
        slot: &Slot,
        resources: &Resources,
        pick: Option<&PromptPick>,
        proxy: Option<&ProxyEndpoint>,
        cancel: &CancellationToken,
        report: &mut CandidateReport,
    ) -> Result<()> {
        // The issue's text as the run was queued (see `Drive::issue`).
        let issue = run.context.issue_as_queued(self.store.issue(project.id, run.issue_number).await?);
        let agent = driver.agent(project)?;
        let logger = driver.logger(run.id);
        let session = SandboxSession::new(self.runtime.clone(), resources.sandbox.clone(), logger.clone());
        let mut feedback: Option<String> = None;
        let mut cost = Some(0_i64);
        for iteration in 1..=self.config.max_iterations {
            let prompt = self.learning.render_prompt(run, &issue, feedback.as_deref(), pick).await?;
            let _ = logger
                .write(LogStream::System, &format!("[paid] candidate {} iteration {iteration}\n", slot.name))
                .await;
            let ctx = AgentContext {
                run_id: run.id,
                project,
                issue: &issue,
                prompt: &prompt,
                model: Some(&slot.candidate.model),
                sandbox: &session,
                proxy,
                iteration,
                feedback: feedback.as_deref(),
                cancel: cancel.child_token(),
            };
            let outcome = self.timed_agent(agent.as_ref(), ctx, &resources.worktree).await?;
            report.iterations = iteration;
            report.summary = outcome.summary.clone();
            cost = cost.zip(outcome.cost_micros).map(|(a, b)| a.saturating_add(b));
            if let Some(usage) = outcome.usage {
                let (model, metered) = (slot.candidate.model.as_str(), self.credentials.is_some());
                let record = UsageRecord::reported(
                    run.id,
                    &project.agent,
                    model,
                    usage,
                    outcome.cost_micros,
                    metered,
                    self.clock.now(),
                );
                self.store.record_usage(&record).await?;
            }
            report.cost_micros = cost;
            if let Some(c) = &self.credentials
                && let Some(reason) = c.budget_exceeded(run.id).await?
            {
                return Err(Error::BudgetExceeded(reason));
            }
            match outcome.exit {
                AgentExit::Completed => {}
                AgentExit::Failed { class, message } => return Err(Error::Agent(format!("{class:?}: {message}"))),
                AgentExit::Stuck { reason } => return Err(Error::Stuck(reason)),
            }
            let digest = self.verify_in(&session, project, cancel).await?;
            if digest.is_empty() {
                report.verify_passed = true;
                break;
            }
            feedback = Some(digest);
        }
        let worktree = &resources.worktree;
        let cfg = &self.config;
        // Freeze before the host looks (see `Driver::freeze`).
        self.runtime.stop(&resources.sandbox).await?;
        let message = format!(
            "{}\n\nPaid-Run: {}\nPaid-Candidate: {}\n",
            pr_title(run.issue_number, &issue.title),
            run.id,
            slot.name
        );
        self.workspaces
            .commit_all(&CommitRequest {
                worktree,
                message: &message,
                author_name: &cfg.author_name,
                author_email: &cfg.author_email,
                limits: cfg.worktree_limits,
            })
            .await?;
        let paths = self.workspaces.changed_paths(worktree).await?;
        report.files_changed = paths.len() as u64;
        report.lines_changed = self.workspaces.lines_changed(worktree).await?;
        if paths.is_empty() {
            return Err(Error::Agent("the agent made no changes".into()));
        }
        ForbiddenPaths::new(&project.allowed_paths)?.check(paths.iter().map(String::as_str))?;
        Ok(())
    }

    /// One agent iteration under the agent time limit, with `worktree`
    /// watched against the worktree limits.
    async fn timed_agent(&self, agent: &dyn Agent, ctx: AgentContext<'_>, worktree: &Worktree) -> Result<AgentOutcome> {
        let limit = self.config.timeouts.agent;
        let token = ctx.cancel.clone();
        let stop = ctx.cancel.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            token.cancel();
        });
        let started = tokio::time::Instant::now();
        let watch = Watch {
            workspaces: self.workspaces.as_ref(),
            worktree,
            limits: &self.config.worktree_limits,
            every: self.config.worktree_check_interval,
        };
        let result = watch.run(&stop, agent.run(ctx)).await;
        timer.abort();
        if started.elapsed() >= limit {
            return Err(Error::Timeout { what: "agent".into(), after: limit });
        }
        result
    }

    /// Runs the verify commands; the failure digest (empty when all pass).
    async fn verify_in(
        &self,
        session: &SandboxSession,
        project: &Project,
        cancel: &CancellationToken,
    ) -> Result<String> {
        let per_command = self.config.timeouts.verify;
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
        Ok(digest)
    }
}
