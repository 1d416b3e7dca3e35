//! Comparison runs in the engine: one issue on N candidates in parallel
//! sandboxes, then one winner goes on to commit, push and open the PR.
//!
//! - **Provisioning** creates one worktree (its own branch `<branch>-cN`,
//!   named by a candidate id derived from the run id) and one sandbox per
//!   candidate; the slots are journaled under `compare_slots`.
//! - **Running the agent** runs every candidate's agent ⇄ verify loop at
//!   once (each bounded by the run's iteration and time limits), commits
//!   each candidate's work on its own branch, and journals every
//!   [`CandidateReport`]. The sandboxes are removed right after. With
//!   [`SelectionRule::Best`] the winner is chosen in the same step; with
//!   [`SelectionRule::Human`] the run moves to `awaiting_choice`.
//! - **Awaiting a choice** holds no worker: `awaiting_choice` is a parked
//!   state ([`RunState::is_parked`]), which no claim takes and whose run
//!   holds no lease (parking gives it up in the same write). [`Engine::pick`]
//!   moves the run on to `committing`, where the next worker applies the
//!   pick (`choice.rs`); [`Engine::cancel`] sends it to cleanup.
//! - The winner's branch becomes the run's branch; losers are never pushed,
//!   and cleanup removes every candidate's worktree.
//!
//! Each candidate's loop is in `candidate.rs`, the human choice in
//! `choice.rs`. A crash during the fan-out reruns it on the same worktrees
//! (the step is journaled as one); a crash after it reuses the journaled
//! reports.

use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::choice::ChoiceOut;
use super::compare::{Candidate, CandidateReport, CompareSpec, SelectionRule, table};
use super::journal::{Journal, OutputKind, Retry, StepOutput};
use super::learn::PromptPick;
use super::steps::Resources;
use super::{Engine, EngineEvent};
use crate::{AuditEvent, Error, Outcome, Project, ProxyEndpoint, Result, Run, RunId, RunKind, RunPatch, RunState};

/// The audit action that carries a run's [`CompareSpec`], written before
/// the run is queued.
pub(super) const COMPARE_ACTION: &str = "run.compare";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompareRequest {
    run_id: RunId,
    spec: CompareSpec,
}

/// A candidate's worktree and sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) candidate: Candidate,
    pub(super) worktree_id: RunId,
    pub(super) resources: Resources,
}

/// The provisioning step's output of a comparison run: the spec (so later
/// steps need not look it up again), the slots and the run's prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CompareProvisionOut {
    compare: CompareSpec,
    compare_slots: Vec<Slot>,
    prompt: Option<PromptPick>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompareOut {
    reports: Vec<CandidateReport>,
    winner: Option<usize>,
    /// The winner's resources, for the steps after (`null` until chosen).
    resources: Option<Resources>,
    prompt: Option<PromptPick>,
}

/// The journaled result of a comparison run.
#[derive(Debug, Clone)]
pub(super) struct Compared {
    pub(super) reports: Vec<CandidateReport>,
    pub(super) winner: Option<usize>,
}

impl Compared {
    pub(super) fn winner_report(&self) -> Option<&CandidateReport> {
        self.winner.and_then(|w| self.reports.get(w))
    }

    pub(super) fn table(&self) -> String {
        table(&self.reports, self.winner)
    }

    /// The PR body: the winner's summary and the side-by-side table.
    pub(super) fn pr_summary(&self) -> String {
        let summary = self.winner_report().map(|r| r.summary.as_str()).unwrap_or_default();
        format!(
            "{summary}\n\n## Candidates\n\nPaid ran this issue on {} candidates:\n\n{}",
            self.reports.len(),
            self.table()
        )
    }
}

/// The id that names candidate `index`'s worktree: the run id with UUID
/// version 8 (so it is never a run id) and the index mixed into byte 7.
pub(super) fn candidate_id(run: RunId, index: usize) -> RunId {
    let mut b = *run.0.as_bytes();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[7] ^= (index as u8).wrapping_add(1);
    RunId(uuid::Uuid::from_bytes(b))
}

/// Every id a run's worktrees may carry: the run's own and, for a
/// comparison run, each candidate's. A sweep of orphan worktrees
/// ([`crate::Workspaces::sweep_orphans`]) must keep all of them for every
/// active run, or it removes a parked comparison's candidates.
pub fn worktree_ids(run: RunId) -> impl Iterator<Item = RunId> {
    std::iter::once(run).chain((0..CompareSpec::MAX_CANDIDATES).map(move |i| candidate_id(run, i)))
}

fn passed(r: &CandidateReport) -> bool {
    r.error.is_none() && r.verify_passed
}

pub(super) fn pick_of(version: Option<crate::learning::PromptVersionId>) -> Option<PromptPick> {
    version.map(|version| PromptPick { version, experiment: None, snapshot: None })
}

impl StepOutput for CompareProvisionOut {
    const KIND: OutputKind = OutputKind::CompareProvision;
}

impl StepOutput for CompareOut {
    const KIND: OutputKind = OutputKind::Compare;
}

/// A comparison run's slots, from its journal (none for other runs).
pub(super) fn compare_slots(journal: &Journal) -> Vec<Slot> {
    journal.latest::<CompareProvisionOut>().map(|o| o.compare_slots).unwrap_or_default()
}

/// Every candidate's resources (for cleanup).
pub(super) fn compare_resources(journal: &Journal) -> Vec<Resources> {
    compare_slots(journal).into_iter().map(|s| s.resources).collect()
}

/// The candidates' reports and the winner, once the fan-out is done.
pub(super) fn compared(journal: &Journal) -> Option<Compared> {
    let out = journal.latest::<CompareOut>()?;
    let chosen = journal.latest::<ChoiceOut>().map(|c| c.winner);
    Some(Compared { winner: chosen.or(out.winner), reports: out.reports })
}

impl Engine {
    /// Queues a comparison run for one issue: the issue is run on every
    /// candidate of `spec` in parallel sandboxes and the winner (by
    /// `spec.rule`) becomes the PR. Same checks as [`Engine::enqueue`].
    pub async fn enqueue_compare(&self, project_id: crate::ProjectId, issue: u64, spec: CompareSpec) -> Result<Run> {
        spec.validate()?;
        self.enqueue_with(project_id, issue, Some(spec)).await
    }

    /// Records `spec` of a queued comparison run in the audit log, for
    /// people (the run carries it in its context).
    pub(super) async fn record_compare(&self, project: &Project, run_id: RunId, spec: &CompareSpec) -> Result<()> {
        let details = serde_json::to_value(CompareRequest { run_id, spec: spec.clone() })
            .map_err(|e| Error::InvalidInput { what: "compare spec".into(), message: e.to_string() })?;
        self.inner
            .store
            .audit(&AuditEvent {
                at: self.inner.clock.now(),
                project_id: Some(project.id),
                actor: "engine".into(),
                action: COMPARE_ACTION.into(),
                subject: format!("run:{run_id}"),
                details,
            })
            .await
    }

    /// The comparison a build run performs, if any: its own spec, else the
    /// project's. Follow-up runs never compare.
    pub(super) async fn compare_spec(&self, run: &Run) -> Result<Option<CompareSpec>> {
        if run.kind != RunKind::Build {
            return Ok(None);
        }
        if let Some(spec) = &run.context.compare {
            return Ok(Some(spec.clone()));
        }
        match self.inner.compare.get(&run.project_id) {
            Some(spec) if self.follow_up_context(run).await?.is_none() => Ok(Some(spec.clone())),
            _ => Ok(None),
        }
    }

    /// Creates every candidate's worktree and sandbox.
    pub(super) async fn provision_compare(
        &self,
        run: &Run,
        project: &Project,
        journal: &Journal,
        spec: &CompareSpec,
        branch: &str,
    ) -> Result<RunState> {
        let t = &self.inner.config.timeouts;
        let names = spec.names();
        let _: CompareProvisionOut = self
            .journaled(run, journal, Some(branch), t.provision + t.clone, Retry::Transient, || async {
                let prompt = self.pick_prompt(run, project).await;
                self.inner.workspaces.ensure_mirror(project).await?;
                let created =
                    join_all(spec.candidates.iter().zip(&names).enumerate().map(|(i, (c, name))| async move {
                        let worktree_id = candidate_id(run.id, i);
                        let env = [("PAID_CANDIDATE".to_string(), name.clone())];
                        let b = format!("{branch}-c{}", i + 1);
                        let resources = self.create_resources_for(run, project, &b, worktree_id, &env).await?;
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
            if let Err(e) = self.inner.runtime.remove(&slot.resources.sandbox).await {
                warn!(sandbox = %slot.resources.sandbox.id, error = %e, "could not remove a candidate sandbox");
            }
            if let Err(e) = self.inner.workspaces.remove(&slot.resources.worktree).await {
                warn!(path = %slot.resources.worktree.path.display(), error = %e, "could not remove a candidate worktree");
            }
        }
    }

    /// The candidates of a comparison run, once they are done (empty
    /// otherwise), for a UI to show before [`Engine::pick`].
    pub async fn candidates(&self, run_id: RunId) -> Result<Vec<CandidateReport>> {
        let journal = Journal::new(self.inner.store.steps(run_id).await?);
        Ok(compared(&journal).map(|c| c.reports).unwrap_or_default())
    }

    /// Runs every candidate at once and chooses the winner (or parks).
    pub(super) async fn run_compare(
        &self,
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
        let proxy: Option<ProxyEndpoint> = match &self.inner.credentials {
            Some(c) => Some(c.issue(run.id, run.project_id).await?),
            None => None,
        };
        let t = &self.inner.config.timeouts;
        let per_iteration = t.agent + t.verify * (project.verify.len() as u32).max(1);
        let limit = per_iteration * self.inner.config.max_iterations + t.commit + Duration::from_secs(60);
        let (slots_ref, run_pick, proxy) = (&slots, run_pick.as_ref(), proxy.as_ref());
        let out: CompareOut = self
            .journaled(run, journal, None, limit, Retry::Never, || async move {
                let reports = join_all(
                    slots_ref.iter().map(|slot| self.run_candidate(run, project, slot, run_pick, proxy, cancel)),
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
            if let Err(e) = self.inner.runtime.remove(&slot.resources.sandbox).await {
                warn!(run_id = %run.id, sandbox = %slot.resources.sandbox.id, error = %e, "could not remove a candidate sandbox");
            }
        }
        if let Some(c) = &self.inner.credentials
            && let Some(reason) = c.budget_exceeded(run.id).await?
        {
            return Err(Error::BudgetExceeded(reason));
        }
        self.record_candidate_samples(run, project, spec, &out.reports).await;
        if out.reports.iter().all(|r| r.error.is_some()) {
            let why: Vec<String> =
                out.reports.iter().map(|r| format!("{}: {}", r.name, r.error.as_deref().unwrap_or_default())).collect();
            return Err(Error::Agent(format!("no candidate finished ({})", why.join("; "))));
        }
        match (&spec.rule, out.winner) {
            (SelectionRule::Human, _) => {
                self.emit(EngineEvent::Note {
                    run_id: run.id,
                    message: format!("{} candidates done; waiting for a pick", out.reports.len()),
                });
                Ok(RunState::AwaitingChoice)
            }
            (SelectionRule::Best(_), _) if !project.verify.is_empty() && !out.reports.iter().any(passed) => {
                // Like a single run: no PR unless something passed verify.
                Err(Error::VerifyFailed {
                    iterations: self.inner.config.max_iterations,
                    digest: format!("no candidate passed verification:\n{}", table(&out.reports, None)),
                })
            }
            (SelectionRule::Best(_), Some(w)) => {
                self.adopt(run, &out.reports[w]).await?;
                Ok(RunState::Committing)
            }
            (SelectionRule::Best(_), None) => Err(Error::Agent("no candidate could be ranked".into())),
        }
    }

    /// Makes the winner's branch, model and iterations the run's.
    pub(super) async fn adopt(&self, run: &Run, report: &CandidateReport) -> Result<()> {
        let branch = report.worktree.as_ref().map(|w| w.branch.clone());
        info!(run_id = %run.id, winner = %report.name, branch = branch.as_deref().unwrap_or("-"), "comparison winner");
        self.emit(EngineEvent::Note { run_id: run.id, message: format!("candidate {} won", report.name) });
        self.patch(
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

    /// Records each candidate as a sample of the matching arm of the spec's
    /// experiment, under the candidate's own id. Best effort.
    async fn record_candidate_samples(
        &self,
        run: &Run,
        project: &Project,
        spec: &CompareSpec,
        reports: &[CandidateReport],
    ) {
        let (Some(setup), Some(experiment_id)) = (&self.inner.learning, spec.experiment) else { return };
        let learning = &setup.learning;
        let experiment = match learning.store().experiment(experiment_id).await {
            Ok(e) => e,
            Err(e) => {
                warn!(run_id = %run.id, experiment = %experiment_id, error = %e, "comparison samples not recorded");
                return;
            }
        };
        for (i, r) in reports.iter().enumerate() {
            let Some(arm) = experiment.arms().find(|a| r.candidate.matches(&a.variant)) else {
                warn!(run_id = %run.id, candidate = %r.name, "no arm of the experiment matches the candidate");
                continue;
            };
            let Some(version) = r.prompt_version else {
                warn!(run_id = %run.id, candidate = %r.name, "candidate has no prompt version; sample not recorded");
                continue;
            };
            let outcome = Outcome {
                run_id: candidate_id(run.id, i),
                project_id: project.id,
                pr_merged: None,
                ci_passed: None,
                lint_clean: None,
                tests_passing: (!project.verify.is_empty()).then_some(r.verify_passed && r.error.is_none()),
                human_vote: None,
                iterations: r.iterations,
                cost_micros: r.cost_micros,
                quality_score: None,
                recorded_at: self.inner.clock.now(),
            };
            let feedback = crate::learning::evolution::RunFeedback {
                review_comments: Vec::new(),
                ci_failure_digest: r.error.clone(),
                iterations: r.iterations,
            };
            if let Err(e) =
                learning.record_outcome(&outcome, version, feedback, Some((experiment_id, arm.name.clone()))).await
            {
                warn!(run_id = %run.id, candidate = %r.name, error = %e, "could not record the candidate's sample");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_ids_are_distinct_and_never_run_ids() {
        let a = RunId(uuid::Uuid::from_u128(1));
        let b = RunId(uuid::Uuid::from_u128(2));
        let ids: Vec<RunId> = [a, b].iter().flat_map(|r| (0..8).map(|i| candidate_id(*r, i))).collect();
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().all(|id| id.0.get_version_num() == 8 && *id != a && *id != b));
        assert_eq!(candidate_id(a, 3), candidate_id(a, 3));
        let v7 = RunId(uuid::Uuid::now_v7());
        assert_ne!(candidate_id(v7, 0).0.get_version_num(), 7);
    }
}
