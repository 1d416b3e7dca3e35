//! Provisioning and fan-out of a comparison run: every candidate's
//! worktree and sandbox, every candidate's loop at once, the winner.

use std::time::Duration;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::spec::{CandidateReport, CompareSpec, SelectionRule, table};
use super::{CompareOut, CompareProvisionOut, Comparison, Slot, candidate_id, passed, pick_of};
use crate::engine::EngineEvent;
use crate::engine::drive::Driver;
use crate::engine::drive::journal::{Journal, Retry};
use crate::{Error, Project, ProxyEndpoint, Result, Run, RunPatch, RunState};

impl Comparison {
    /// Creates every candidate's worktree and sandbox.
    pub(crate) async fn provision(
        &self,
        driver: &Driver,
        run: &Run,
        project: &Project,
        journal: &Journal,
        spec: &CompareSpec,
        branch: &str,
    ) -> Result<RunState> {
        let t = &self.config.timeouts;
        let names = spec.names();
        let _: CompareProvisionOut = driver
            .journaled(run, journal, Some(branch), t.provision + t.clone, Retry::Transient, || async {
                let prompt = self.learning.pick_prompt(run, project).await;
                self.workspaces.ensure_mirror(project).await?;
                let created =
                    join_all(spec.candidates.iter().zip(&names).enumerate().map(|(i, (c, name))| async move {
                        let worktree_id = candidate_id(run.id, i);
                        let env = [("PAID_CANDIDATE".to_string(), name.clone())];
                        let b = format!("{branch}-c{}", i + 1);
                        let resources = driver.create_resources_for(run, project, &b, worktree_id, &env).await?;
                        Ok::<_, Error>(Slot { name: name.clone(), candidate: c.clone(), worktree_id, resources })
                    }))
                    .await;
                let mut slots = Vec::new();
                let mut first_error = None;
                for r in created {
                    match r {
                        Ok(slot) => slots.push(slot),
                        Err(e) => first_error = first_error.or(Some(e)),
                    }
                }
                if let Some(e) = first_error {
                    // Nothing is journaled for a failed attempt: undo it.
                    self.remove_slots(&slots).await;
                    return Err(e);
                }
                Ok(CompareProvisionOut { compare: spec.clone(), compare_slots: slots, prompt })
            })
            .await?;
        info!(run_id = %run.id, candidates = names.len(), "comparison provisioned");
        Ok(RunState::RunningAgent)
    }

    async fn remove_slots(&self, slots: &[Slot]) {
        for slot in slots {
            if let Err(e) = self.runtime.remove(&slot.resources.sandbox).await {
                warn!(sandbox = %slot.resources.sandbox.id, error = %e, "could not remove a candidate sandbox");
            }
            if let Err(e) = self.workspaces.remove(&slot.resources.worktree).await {
                warn!(path = %slot.resources.worktree.path.display(), error = %e, "could not remove a candidate worktree");
            }
        }
    }

    /// Runs every candidate at once and chooses the winner (or parks).
    pub(crate) async fn run(
        &self,
        driver: &Driver,
        run: &Run,
        project: &Project,
        journal: &Journal,
        provisioned: CompareProvisionOut,
        cancel: &CancellationToken,
    ) -> Result<RunState> {
        let CompareProvisionOut { compare: spec, compare_slots: slots, prompt: run_pick } = provisioned;
        let spec = &spec;
        if slots.is_empty() {
            return Err(Error::InvalidInput {
                what: "run".into(),
                message: format!("comparison run {} has no provisioned candidates", run.id),
            });
        }
        let t = &self.config.timeouts;
        let per_iteration = t.agent + t.verify * (project.verify.len() as u32).max(1);
        let limit = per_iteration * self.config.max_iterations + t.commit + Duration::from_secs(60);
        let proxy: Option<ProxyEndpoint> = match &self.credentials {
            Some(c) => Some(c.issue(run.id, run.project_id, limit).await?),
            None => None,
        };
        let (slots_ref, run_pick, proxy) = (&slots, run_pick.as_ref(), proxy.as_ref());
        let out: CompareOut = driver
            .journaled(run, journal, None, limit, Retry::Never, || async move {
                let reports = join_all(
                    slots_ref
                        .iter()
                        .map(|slot| self.run_candidate(driver, run, project, slot, run_pick, proxy, cancel)),
                )
                .await;
                if cancel.is_cancelled() {
                    // Cancelled, or the lease was lost: not a result to keep.
                    return Err(Error::Cancelled);
                }
                let winner = match &spec.rule {
                    // Like a single run: with verify commands, only a
                    // candidate that passed them may open the PR, whatever
                    // the ranking's criteria.
                    SelectionRule::Best(ranking) if !project.verify.is_empty() => {
                        let passing: Vec<usize> = (0..reports.len()).filter(|&i| passed(&reports[i])).collect();
                        let eligible: Vec<CandidateReport> = passing.iter().map(|&i| reports[i].clone()).collect();
                        ranking.winner(&eligible).map(|w| passing[w])
                    }
                    SelectionRule::Best(ranking) => ranking.winner(&reports),
                    SelectionRule::Human => None,
                };
                Ok(CompareOut {
                    resources: winner.and_then(|w| slots_ref.get(w)).map(|s| s.resources.clone()),
                    prompt: winner.and_then(|w| pick_of(reports[w].prompt_version)),
                    winner,
                    reports,
                })
            })
            .await?;
        // Candidates never run again: their sandboxes go now, their
        // worktrees (and committed branches) stay until cleanup.
        for slot in &slots {
            if let Err(e) = self.runtime.remove(&slot.resources.sandbox).await {
                warn!(run_id = %run.id, sandbox = %slot.resources.sandbox.id, error = %e, "could not remove a candidate sandbox");
            }
        }
        if let Some(c) = &self.credentials
            && let Some(reason) = c.budget_exceeded(run.id).await?
        {
            return Err(Error::BudgetExceeded(reason));
        }
        self.learning.record_candidate_samples(run, project, spec, &out.reports).await;
        if out.reports.iter().all(|r| r.error.is_some()) {
            let why: Vec<String> =
                out.reports.iter().map(|r| format!("{}: {}", r.name, r.error.as_deref().unwrap_or_default())).collect();
            return Err(Error::Agent(format!("no candidate finished ({})", why.join("; "))));
        }
        match (&spec.rule, out.winner) {
            (SelectionRule::Human, _) => {
                self.events.emit(EngineEvent::Note {
                    run_id: run.id,
                    message: format!("{} candidates done; waiting for a pick", out.reports.len()),
                });
                Ok(RunState::AwaitingChoice)
            }
            (SelectionRule::Best(_), _) if !project.verify.is_empty() && !out.reports.iter().any(passed) => {
                // Like a single run: no PR unless something passed verify.
                Err(Error::VerifyFailed {
                    iterations: self.config.max_iterations,
                    digest: format!("no candidate passed verification:\n{}", table(&out.reports, None)),
                })
            }
            (SelectionRule::Best(_), Some(w)) => {
                self.adopt(driver, run, &out.reports[w]).await?;
                Ok(RunState::Committing)
            }
            (SelectionRule::Best(_), None) => Err(Error::Agent("no candidate could be ranked".into())),
        }
    }

    /// Makes the winner's branch, model and iterations the run's.
    pub(super) async fn adopt(&self, driver: &Driver, run: &Run, report: &CandidateReport) -> Result<()> {
        let branch = report.worktree.as_ref().map(|w| w.branch.clone());
        info!(run_id = %run.id, winner = %report.name, branch = branch.as_deref().unwrap_or("-"), "comparison winner");
        self.events.emit(EngineEvent::Note { run_id: run.id, message: format!("candidate {} won", report.name) });
        driver
            .patch(
                run,
                RunPatch {
                    branch,
                    model: Some(report.candidate.model.clone()),
                    iterations: Some(report.iterations),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ())
    }
}
