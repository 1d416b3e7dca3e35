//! Human choice in comparison runs: the run parks in `awaiting_choice`
//! without holding a worker (its lease is stretched to [`PARK_LEASE`], so
//! no claim picks it up) until [`Engine::pick`] or [`Engine::cancel`]
//! releases it; the next worker goes on with the picked candidate.

use serde::{Deserialize, Serialize};
use tracing::info;

use super::Engine;
use super::fanout::pick_of;
use super::journal::Retry;
use super::learn::PromptPick;
use super::steps::Resources;
use crate::{AuditEvent, Error, Result, Run, RunId, RunState};

/// The audit action that records a human's pick.
pub(super) const PICK_ACTION: &str = "run.pick";

/// How long a parked run's lease lasts: long enough that no worker claims
/// it before [`Engine::pick`] or [`Engine::cancel`] releases it.
pub(super) const PARK_LEASE: chrono::Duration = chrono::Duration::days(3650);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PickRecord {
    run_id: RunId,
    candidate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
/// The journaled pick: which report won, its resources and prompt.
pub(super) struct ChoiceOut {
    pub(super) winner: usize,
    pub(super) resources: Resources,
    pub(super) prompt: Option<PromptPick>,
}

impl Engine {
    /// The candidate a human picked for a run awaiting a choice: the first
    /// pick wins ([`Engine::pick`] refuses later ones).
    pub(super) async fn chosen(&self, run: &Run) -> Result<Option<String>> {
        let subject = format!("run:{}", run.id);
        Ok(self
            .inner
            .store
            .audit_events(Some(run.project_id))
            .await?
            .into_iter()
            .filter(|e| e.action == PICK_ACTION && e.subject == subject)
            .filter_map(|e| serde_json::from_value::<PickRecord>(e.details).ok())
            .map(|p| p.candidate)
            .next())
    }

    /// Continues a picked run with its winner.
    pub(super) async fn take_choice(&self, run: &Run) -> Result<RunState> {
        let name = self.chosen(run).await?.ok_or_else(|| Error::InvalidInput {
            what: "run".into(),
            message: format!("run {} has no pick", run.id),
        })?;
        let compared = self.compared(run.id).await?.ok_or_else(|| Error::InvalidInput {
            what: "run".into(),
            message: format!("run {} has no compared candidates", run.id),
        })?;
        let slots = self.compare_slots(run.id).await?;
        let (compared_ref, slots_ref, name_ref) = (&compared, &slots, &name);
        let out: ChoiceOut = self
            .journaled(run, None, self.inner.config.timeouts.commit, Retry::Transient, || async move {
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
        self.adopt(run, &compared.reports[out.winner]).await?;
        Ok(RunState::Committing)
    }

    /// A human picks the winner of a run awaiting a choice, by candidate
    /// name (`c2-model`) or model. The run goes on with it at the next
    /// claim: commit, policy check, push, PR. Candidates that did not finish
    /// cannot be picked.
    pub async fn pick(&self, run_id: RunId, candidate: &str) -> Result<Run> {
        let store = &self.inner.store;
        let run = store.run(run_id).await?;
        if run.state != RunState::AwaitingChoice {
            return Err(Error::InvalidInput {
                what: "run.state".into(),
                message: format!("run {run_id} is {}, not awaiting_choice", run.state),
            });
        }
        if let Some(first) = self.chosen(&run).await? {
            return Err(Error::InvalidInput {
                what: "run.pick".into(),
                message: format!("run {run_id} was already picked for: {first}"),
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
        let details = serde_json::to_value(PickRecord { run_id, candidate: report.name.clone() })
            .map_err(|e| Error::InvalidInput { what: "pick".into(), message: e.to_string() })?;
        store
            .audit(&AuditEvent {
                at: self.inner.clock.now(),
                project_id: Some(run.project_id),
                actor: "api".into(),
                action: PICK_ACTION.into(),
                subject: format!("run:{run_id}"),
                details,
            })
            .await?;
        self.unpark(run_id).await?;
        store.run(run_id).await
    }

    /// Releases a parked run's lease so a worker claims it again. Leases of
    /// runs being worked on are left alone.
    pub(super) async fn unpark(&self, run_id: RunId) -> Result<()> {
        let store = &self.inner.store;
        let run = store.run(run_id).await?;
        let parked = run.lease_expires_at.is_some_and(|until| until > self.inner.clock.now() + PARK_LEASE / 2);
        if let (true, Some(owner)) = (parked, &run.lease_owner) {
            match store.release(run_id, owner).await {
                Ok(()) | Err(Error::LeaseLost { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Parks a run that waits for a choice: its lease is stretched to
    /// [`PARK_LEASE`] so no worker claims it. A pick or cancel that came in
    /// meanwhile hands it back at once.
    pub(super) async fn park(&self, run: &Run) -> Result<()> {
        let store = &self.inner.store;
        let owner = &self.inner.config.worker_id;
        match store.heartbeat(run.id, owner, PARK_LEASE, self.inner.clock.now()).await {
            Ok(()) => {}
            Err(Error::LeaseLost { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        info!(run_id = %run.id, "run parked until a candidate is picked");
        if self.chosen(run).await?.is_some() || store.cancel_requested(run.id).await? {
            // Through `unpark`, which releases only a lease that is still the
            // park lease: a pick may have released it already and another
            // worker of this process (same owner id) claimed the run since.
            self.unpark(run.id).await?;
        }
        Ok(())
    }
}
