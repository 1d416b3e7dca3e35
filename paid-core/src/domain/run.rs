use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ProjectId, RunId, Timestamp};

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Turn an issue into a PR (`paid-build`).
    Build,
    /// Split an issue into sub-issues (`paid-plan`).
    Plan,
}

/// The durable state of a run. See `ARCHITECTURE.md` for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunState {
    /// Waiting for a worker.
    Queued,
    /// Choosing a model.
    SelectingModel,
    /// A plan run (`paid-plan`) asks a model to split the issue and creates
    /// the sub-issues.
    Planning,
    /// Creating the worktree and the sandbox.
    Provisioning,
    /// The agent works.
    RunningAgent,
    /// The project's verify commands run.
    Verifying,
    /// A comparison run whose candidates are done waits for a human to pick
    /// one ([`crate::engine::Engine::pick`]). A parked state
    /// ([`RunState::is_parked`]): the run holds no lease and no worker.
    AwaitingChoice,
    /// Leftover edits are committed.
    Committing,
    /// The diff is checked against policy.
    PolicyCheck,
    /// The branch is pushed from the host.
    Pushing,
    /// The PR is found or created.
    OpeningPr,
    /// The issue gets its comment and labels.
    Reporting,
    /// The sandbox and worktree are removed.
    Cleaning,
    /// Done, with a PR.
    Succeeded,
    /// Ended with an error (see [`Run::failure`]).
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// A step ran out of time.
    TimedOut,
    /// A token or cost budget was hit.
    BudgetExceeded,
}

impl RunState {
    /// Every state, in pipeline order.
    pub const ALL: [RunState; 18] = [
        RunState::Queued,
        RunState::SelectingModel,
        RunState::Planning,
        RunState::Provisioning,
        RunState::RunningAgent,
        RunState::Verifying,
        RunState::AwaitingChoice,
        RunState::Committing,
        RunState::PolicyCheck,
        RunState::Pushing,
        RunState::OpeningPr,
        RunState::Reporting,
        RunState::Cleaning,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::TimedOut,
        RunState::BudgetExceeded,
    ];

    /// The `snake_case` name used in storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::SelectingModel => "selecting_model",
            RunState::Planning => "planning",
            RunState::Provisioning => "provisioning",
            RunState::RunningAgent => "running_agent",
            RunState::Verifying => "verifying",
            RunState::AwaitingChoice => "awaiting_choice",
            RunState::Committing => "committing",
            RunState::PolicyCheck => "policy_check",
            RunState::Pushing => "pushing",
            RunState::OpeningPr => "opening_pr",
            RunState::Reporting => "reporting",
            RunState::Cleaning => "cleaning",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::TimedOut => "timed_out",
            RunState::BudgetExceeded => "budget_exceeded",
        }
    }

    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded
                | RunState::Failed
                | RunState::Cancelled
                | RunState::TimedOut
                | RunState::BudgetExceeded
        )
    }

    /// Whether the run waits for a human, not for a worker: no claim takes
    /// it, it holds no lease (moving into such a state clears the lease, in
    /// the same store write) and so it counts against no project's
    /// `max_concurrent_runs`. A human's decision moves it on (a transition
    /// out of it needs no lease), and a cancellation sends it to `cleaning`.
    ///
    /// The one definition of "parked": the stores build their SQL from it
    /// (see [`RunState::parked`]).
    pub fn is_parked(self) -> bool {
        matches!(self, RunState::AwaitingChoice)
    }

    /// Every parked state ([`RunState::is_parked`]), in pipeline order.
    pub fn parked() -> impl Iterator<Item = RunState> {
        RunState::ALL.into_iter().filter(|s| s.is_parked())
    }

    /// The end state that failures of this kind lead to.
    pub fn is_failure_end(self) -> bool {
        self.is_terminal() && self != RunState::Succeeded
    }

    /// Whether the state machine allows `self -> to`.
    ///
    /// The happy path is linear, with `running_agent ⇄ verifying` (a
    /// comparison run may wait in `awaiting_choice` between `running_agent`
    /// and `committing`); a plan
    /// run goes `queued`/`selecting_model → planning → reporting`. Any
    /// non-terminal state may go to `cleaning` (to clean up after a failure)
    /// or straight to a failure end state; only `cleaning` reaches
    /// `succeeded`.
    pub fn can_transition_to(self, to: RunState) -> bool {
        use RunState::*;
        if self.is_terminal() {
            return false;
        }
        if to.is_failure_end() {
            return true;
        }
        matches!(
            (self, to),
            (Queued, SelectingModel)
                | (SelectingModel, Provisioning)
                | (Queued, Planning)
                | (SelectingModel, Planning)
                | (Planning, Reporting)
                | (Provisioning, RunningAgent)
                | (RunningAgent, Verifying)
                | (RunningAgent, Committing)
                | (RunningAgent, AwaitingChoice)
                | (AwaitingChoice, Committing)
                | (Verifying, RunningAgent)
                | (Verifying, Committing)
                | (Committing, PolicyCheck)
                | (PolicyCheck, Pushing)
                | (Pushing, OpeningPr)
                | (OpeningPr, Reporting)
                | (Reporting, Cleaning)
                | (Cleaning, Succeeded)
        ) || (to == Cleaning && self != Cleaning)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| crate::Error::InvalidInput {
            what: "run state".into(),
            message: format!("unknown state {s:?}"),
        })
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The state the run was in.
    pub step: RunState,
    /// A machine-readable code ([`crate::Error::code`]).
    pub code: String,
    /// A message a user can act on.
    pub message: String,
}

impl Failure {
    /// The failure of a run cancelled in `step`, as the engine records it
    /// for [`crate::Error::Cancelled`] (a store records it when it sends a
    /// parked run to cleanup, see [`crate::Runs::request_cancel`]).
    pub fn cancelled(step: RunState) -> Self {
        let error = crate::Error::Cancelled;
        Self { step, code: error.code().into(), message: error.to_string() }
    }
}

/// What is needed to queue a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// Identifier, from [`crate::Ids`].
    pub id: RunId,
    /// The project.
    pub project_id: ProjectId,
    /// The issue the run works on.
    pub issue_number: u64,
    /// Build or plan.
    pub kind: RunKind,
    /// Higher runs first.
    pub priority: i32,
    /// When it was queued.
    pub created_at: Timestamp,
    /// What the run needs besides its state, written with it.
    #[serde(default)]
    pub context: crate::RunContext,
}

/// A run: one attempt to turn an issue into a PR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Identifier.
    pub id: RunId,
    /// The project.
    pub project_id: ProjectId,
    /// The issue.
    pub issue_number: u64,
    /// Build or plan.
    pub kind: RunKind,
    /// Current state.
    pub state: RunState,
    /// Higher runs first.
    pub priority: i32,
    /// The branch the run works on, once chosen.
    pub branch: Option<String>,
    /// The model, once selected.
    pub model: Option<String>,
    /// The PR, once opened.
    pub pr_url: Option<String>,
    /// Agent iterations so far.
    pub iterations: u32,
    /// Why it failed, if it did. Set before cleanup runs.
    pub failure: Option<Failure>,
    /// Worker holding the lease, if any.
    pub lease_owner: Option<String>,
    /// When the lease expires.
    pub lease_expires_at: Option<Timestamp>,
    /// When queued.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When it reached an end state.
    pub finished_at: Option<Timestamp>,
    /// What the run needs besides its state.
    #[serde(default)]
    pub context: crate::RunContext,
}

impl Run {
    /// The state a freshly queued run is in.
    pub fn from_new(new: &NewRun) -> Self {
        Self {
            id: new.id,
            project_id: new.project_id,
            issue_number: new.issue_number,
            kind: new.kind,
            state: RunState::Queued,
            priority: new.priority,
            branch: None,
            model: None,
            pr_url: None,
            iterations: 0,
            failure: None,
            lease_owner: None,
            lease_expires_at: None,
            created_at: new.created_at,
            updated_at: new.created_at,
            finished_at: None,
            context: new.context.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_states_wait_between_a_worker_and_the_next() {
        let parked: Vec<RunState> = RunState::parked().collect();
        assert_eq!(parked, vec![RunState::AwaitingChoice]);
        for p in parked {
            assert!(!p.is_terminal(), "{p} is not over");
            assert!(RunState::ALL.iter().any(|s| s.can_transition_to(p)), "{p} is reachable");
            assert!(p.can_transition_to(RunState::Cleaning), "a cancelled {p} is cleaned up");
            assert!(
                RunState::ALL.iter().any(|s| !s.is_terminal() && *s != RunState::Cleaning && p.can_transition_to(*s)),
                "a decision moves {p} on"
            );
        }
    }

    #[test]
    fn a_cancelled_failure_is_the_one_the_engine_records() {
        let f = Failure::cancelled(RunState::AwaitingChoice);
        assert_eq!((f.code.as_str(), f.message.as_str()), ("cancelled", "cancelled"));
        assert_eq!(f.step, RunState::AwaitingChoice);
    }
}
