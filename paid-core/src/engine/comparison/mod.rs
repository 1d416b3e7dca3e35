//! The comparison role: comparison runs, one issue on N candidates in
//! parallel sandboxes, then one winner goes on to commit, push and open the
//! PR.
//!
//! [`Comparison`] sees the store, the runtime, the workspaces, the run
//! credentials, the clock, the event channel and the projects' comparison
//! specs, plus the learning hooks (prompts, experiment samples). Where a
//! comparison runs as a step of a run, the driver lends itself
//! ([`Driver`](crate::engine::drive::Driver)): journaling, resources, the
//! project's agent, the run log.
//! It sees no forge, selector, planner or id source.
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
//!   state ([`crate::RunState::is_parked`]), which no claim takes and whose run
//!   holds no lease (parking gives it up in the same write).
//!   [`Comparison::pick`] moves the run on to `committing`, where the next
//!   worker applies the pick (`choice.rs`); a cancel sends it to cleanup.
//! - The winner's branch becomes the run's branch; losers are never pushed,
//!   and cleanup removes every candidate's worktree.
//!
//! The specs, reports and ranking are in `spec.rs` (pure), provisioning and
//! the fan-out in `fanout.rs`, each candidate's loop in `candidate.rs`, the
//! human choice in `choice.rs`. A crash during the fan-out reruns it on the
//! same worktrees (the step is journaled as one); a crash after it reuses
//! the journaled reports.

mod candidate;
mod choice;
mod fanout;
mod spec;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use spec::{Candidate, CandidateReport, CompareSpec, Criterion, Ranking, SelectionRule, table as compare_table};

use self::choice::ChoiceOut;
use self::spec::table;
use super::builder::Parts;
use super::drive::Resources;
use super::drive::follow_up_context;
use super::drive::journal::{Journal, OutputKind, StepOutput};
use super::events::Events;
use super::learn::{LearningHooks, PromptPick};
use crate::engine::EngineConfig;
use crate::learning::PromptVersionId;
use crate::{Clock, ProjectId, Result, Run, RunCredentials, RunId, RunKind, SandboxRuntime, Store, Workspaces};

/// Runs comparison runs' candidates and takes a human's pick. Cheap to
/// clone; clones share state.
#[derive(Clone)]
pub(crate) struct Comparison {
    store: Arc<dyn Store>,
    runtime: Arc<dyn SandboxRuntime>,
    workspaces: Arc<dyn Workspaces>,
    credentials: Option<Arc<dyn RunCredentials>>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    events: Events,
    learning: LearningHooks,
    specs: Arc<HashMap<ProjectId, CompareSpec>>,
}

impl Comparison {
    /// The role, with the ports it uses, the learning hooks and the
    /// projects' comparison `specs`.
    pub(crate) fn new(parts: &Parts, learning: LearningHooks, specs: HashMap<ProjectId, CompareSpec>) -> Self {
        Self {
            store: parts.store.clone(),
            runtime: parts.runtime.clone(),
            workspaces: parts.workspaces.clone(),
            credentials: parts.credentials.clone(),
            clock: parts.clock.clone(),
            config: parts.config.clone(),
            events: parts.events.clone(),
            learning,
            specs: Arc::new(specs),
        }
    }

    /// The comparison a build run performs, if any: its own spec, else the
    /// project's. Follow-up runs never compare.
    pub(crate) fn spec(&self, run: &Run) -> Option<CompareSpec> {
        if run.kind != RunKind::Build {
            return None;
        }
        if let Some(spec) = &run.context.compare {
            return Some(spec.clone());
        }
        match self.specs.get(&run.project_id) {
            Some(spec) if follow_up_context(run).is_none() => Some(spec.clone()),
            _ => None,
        }
    }

    /// The candidates of a comparison run, once they are done (see
    /// [`Engine::candidates`](crate::engine::Engine::candidates)).
    pub(crate) async fn candidates(&self, run_id: RunId) -> Result<Vec<CandidateReport>> {
        let journal = Journal::new(self.store.steps(run_id).await?);
        Ok(compared(&journal).map(|c| c.reports).unwrap_or_default())
    }
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
pub(crate) struct CompareProvisionOut {
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
pub(crate) struct Compared {
    pub(crate) reports: Vec<CandidateReport>,
    pub(crate) winner: Option<usize>,
}

impl Compared {
    pub(crate) fn winner_report(&self) -> Option<&CandidateReport> {
        self.winner.and_then(|w| self.reports.get(w))
    }

    pub(crate) fn table(&self) -> String {
        table(&self.reports, self.winner)
    }

    /// The PR body: the winner's summary and the side-by-side table.
    pub(crate) fn pr_summary(&self) -> String {
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
pub(crate) fn candidate_id(run: RunId, index: usize) -> RunId {
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

pub(super) fn pick_of(version: Option<PromptVersionId>) -> Option<PromptPick> {
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
pub(crate) fn compare_resources(journal: &Journal) -> Vec<Resources> {
    compare_slots(journal).into_iter().map(|s| s.resources).collect()
}

/// The candidates' reports and the winner, once the fan-out is done.
pub(crate) fn compared(journal: &Journal) -> Option<Compared> {
    let out = journal.latest::<CompareOut>()?;
    let chosen = journal.latest::<ChoiceOut>().map(|c| c.winner);
    Some(Compared { winner: chosen.or(out.winner), reports: out.reports })
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
        // Stable across processes: version nibble 8, index + 1 mixed into byte 7.
        assert_eq!(candidate_id(a, 3).to_string(), "00000000-0000-8004-0000-000000000001");
        let v7 = RunId(uuid::Uuid::now_v7());
        assert_ne!(candidate_id(v7, 0).0.get_version_num(), 7);
    }

    /// What a sweep keeps for a run, written out by hand for one run id
    /// rather than recomputed with [`candidate_id`].
    #[test]
    fn worktree_ids_are_the_run_and_every_possible_candidate() {
        let run = RunId(uuid::Uuid::from_u128(0x0190_b1e4_0000_7abc_8000_0000_0000_0001));
        let ids: Vec<String> = worktree_ids(run).map(|id| id.to_string()).collect();
        let want = [
            "0190b1e4-0000-7abc-8000-000000000001",
            "0190b1e4-0000-8abd-8000-000000000001",
            "0190b1e4-0000-8abe-8000-000000000001",
            "0190b1e4-0000-8abf-8000-000000000001",
            "0190b1e4-0000-8ab8-8000-000000000001",
            "0190b1e4-0000-8ab9-8000-000000000001",
            "0190b1e4-0000-8aba-8000-000000000001",
            "0190b1e4-0000-8abb-8000-000000000001",
            "0190b1e4-0000-8ab4-8000-000000000001",
        ];
        assert_eq!(ids, want);
    }
}
