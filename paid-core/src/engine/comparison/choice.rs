//! Human choice in comparison runs: the run parks in `awaiting_choice`, a
//! parked state ([`RunState::is_parked`]): the transition there gives the
//! worker's lease up, and no claim takes the run. [`Comparison::pick`] moves
//! it on to `committing` (a transition out of a parked state needs no
//! lease), where the next worker applies the pick before committing
//! ([`Comparison::apply_choice`]); a cancel sends it to cleanup.

use serde::{Deserialize, Serialize};
use tracing::info;

use super::{Comparison, compare_slots, compared, pick_of};
use crate::engine::drive::journal::{Journal, OutputKind, Retry, StepOutput};
use crate::engine::drive::{Driver, Resources};
use crate::engine::learn::PromptPick;
use crate::{AuditEvent, Error, Result, Run, RunId, RunPatch, RunState, StepStatus, Transition};

/// The audit action that records a human's pick (for people).
const PICK_ACTION: &str = "run.pick";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PickRecord {
    run_id: RunId,
    candidate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
/// The journaled pick: which report won, its resources and prompt.
pub(super) struct ChoiceOut {
    pub(super) winner: usize,
    resources: Resources,
    prompt: Option<PromptPick>,
}

impl StepOutput for ChoiceOut {
    const KIND: OutputKind = OutputKind::Choice;
}

impl Comparison {
    /// The candidate a human picked for a comparison run: recorded in its
    /// context by [`Comparison::pick`] in the same write that moved it on.
    pub(super) async fn chosen(&self, run: &Run) -> Result<Option<String>> {
        Ok(run.context.pick.clone())
    }

    /// Applies a human's pick to a run [`Comparison::pick`] moved on to
    /// `committing`, before its commit: journals the winner (as the step of
    /// `awaiting_choice`, where [`Comparison::candidates`] and the later steps
    /// find it) and makes the winner's branch, model and iterations the
    /// run's. Returns the run as it is then. Any other run (the pick is
    /// applied already, or there was none to apply) is returned unchanged.
    pub(crate) async fn apply_choice(&self, driver: &Driver, run: &Run, journal: &Journal) -> Result<Run> {
        let pending = match journal.last() {
            // Begun (or done) by a worker that died before the commit.
            Some(s) if s.step == RunState::AwaitingChoice => true,
            Some(s) if s.step == RunState::RunningAgent && s.status == StepStatus::Done => {
                compared(journal).is_some_and(|c| c.winner.is_none())
            }
            _ => false,
        };
        if !pending {
            return Ok(run.clone());
        }
        let name = self.chosen(run).await?.ok_or_else(|| Error::InvalidInput {
            what: "run".into(),
            message: format!("run {} has no pick", run.id),
        })?;
        let compared = compared(journal).ok_or_else(|| Error::InvalidInput {
            what: "run".into(),
            message: format!("run {} has no compared candidates", run.id),
        })?;
        let slots = compare_slots(journal);
        let (compared_ref, slots_ref, name_ref) = (&compared, &slots, &name);
        // Journaled as the parked state's step: that is where the choice
        // was made, and it keeps `committing`'s own record apart.
        let parked = Run { state: RunState::AwaitingChoice, ..run.clone() };
        let out: ChoiceOut = driver
            .journaled(&parked, journal, None, self.config.timeouts.commit, Retry::Never, || async move {
                let unknown = || Error::InvalidInput {
                    what: "pick".into(),
                    message: format!("run {} has no candidate {name_ref:?}", run.id),
                };
                let winner = compared_ref.reports.iter().position(|r| &r.name == name_ref).ok_or_else(unknown)?;
                let slot = slots_ref.iter().find(|s| &s.name == name_ref).ok_or_else(unknown)?;
                Ok(ChoiceOut {
                    winner,
                    resources: slot.resources.clone(),
                    prompt: pick_of(compared_ref.reports[winner].prompt_version),
                })
            })
            .await?;
        self.adopt(driver, run, &compared.reports[out.winner]).await?;
        self.store.run(run.id).await
    }

    /// A human picks the winner of a run awaiting a choice (see
    /// [`Engine::pick`](crate::engine::Engine::pick)).
    pub(crate) async fn pick(&self, run_id: RunId, candidate: &str) -> Result<Run> {
        let store = &self.store;
        let run = store.run(run_id).await?;
        let first = self.chosen(&run).await?;
        if run.state != RunState::AwaitingChoice {
            return Err(match first {
                Some(first) => already_picked(run_id, &first),
                None => not_awaiting(&run),
            });
        }
        let reports = self.candidates(run_id).await?;
        let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
        let report = reports
            .iter()
            .find(|r| r.name == candidate)
            .or_else(|| reports.iter().find(|r| r.candidate.model == candidate))
            .ok_or_else(|| Error::InvalidInput {
                what: "candidate".into(),
                message: format!("run {run_id} has no candidate {candidate:?}; candidates are {names:?}"),
            })?;
        if let Some(e) = &report.error {
            return Err(Error::InvalidInput {
                what: "candidate".into(),
                message: format!("candidate {} did not finish ({e}) and cannot be picked", report.name),
            });
        }
        if let Some(first) = first {
            return Err(already_picked(run_id, &first));
        }
        // The pick and the move on are one write: the first pick wins, and
        // no worker sees the run moved on without it.
        let moved = store
            .transition(&Transition {
                run_id,
                from: RunState::AwaitingChoice,
                to: RunState::Committing,
                owner: self.config.worker_id.clone(),
                at: self.clock.now(),
                patch: RunPatch {
                    context: Some(run.context.clone().with_pick(report.name.clone())),
                    ..RunPatch::default()
                },
            })
            .await;
        let run = match moved {
            Ok(run) => run,
            // Moved on meanwhile: another pick, or a cancel.
            Err(Error::IllegalTransition { .. }) => {
                let now = store.run(run_id).await?;
                return match now.context.pick.as_deref() {
                    // The same pick, from elsewhere: it went on.
                    Some(first) if first == report.name => Ok(now),
                    Some(first) => Err(already_picked(run_id, first)),
                    None => Err(not_awaiting(&now)),
                };
            }
            Err(e) => return Err(e),
        };
        info!(%run_id, candidate = %report.name, "candidate picked; the run goes on");
        // For people: the audit log is never read to drive a run.
        let details = serde_json::to_value(PickRecord { run_id, candidate: report.name.clone() })
            .map_err(|e| Error::InvalidInput { what: "pick".into(), message: e.to_string() })?;
        store
            .audit(&AuditEvent {
                at: self.clock.now(),
                project_id: Some(run.project_id),
                actor: "api".into(),
                action: PICK_ACTION.into(),
                subject: format!("run:{run_id}"),
                details,
            })
            .await?;
        Ok(run)
    }
}

fn already_picked(run_id: RunId, first: &str) -> Error {
    Error::InvalidInput { what: "run.pick".into(), message: format!("run {run_id} was already picked for: {first}") }
}

fn not_awaiting(run: &Run) -> Error {
    Error::InvalidInput {
        what: "run.state".into(),
        message: format!("run {} is {}, not awaiting_choice", run.id, run.state),
    }
}
