//! Journaled, retried, time-limited execution of one step's side effect,
//! and the journal a drive holds.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::Driver;
use crate::{Error, Result, Run, RunId, RunState, StepRecord, StepStatus, Store, Timestamp, Transition};

/// What a journaled step produced, by kind. The kind is stored in the
/// output (`"kind": "agent"`, next to the output's own fields), so a reader
/// finds a step's output by its kind, never by trying types on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OutputKind {
    /// `selecting_model`: the [`crate::ModelDecision`].
    Decision,
    /// `planning`: the sub-issues created.
    Plan,
    /// `provisioning`: the run's resources and prompt.
    Provision,
    /// `provisioning` of a comparison run: its spec, slots and prompt.
    CompareProvision,
    /// `running_agent`: one agent iteration.
    Agent,
    /// `running_agent` of a comparison run: every candidate's report.
    Compare,
    /// `verifying`: whether the verify commands passed.
    Verify,
    /// `awaiting_choice`: the candidate a human picked.
    Choice,
    /// `committing`: the commit made, if any.
    Commit,
    /// `policy_check`: the paths the run changed.
    PolicyCheck,
    /// `pushing`.
    Push,
    /// `opening_pr`: the pull request.
    PullRequest,
    /// `reporting`: the issue comment.
    Report,
    /// `cleaning`.
    Clean,
}

impl OutputKind {
    /// The kind of an output journaled before outputs carried their kind,
    /// from its step (and, where a step had two outputs, the field only one
    /// of them has). Steps whose old outputs are not read back have none:
    /// a resumed run repeats them (they are idempotent).
    fn legacy(step: RunState, output: &serde_json::Value) -> Option<Self> {
        Some(match step {
            RunState::SelectingModel => Self::Decision,
            RunState::Planning => Self::Plan,
            RunState::Provisioning if output.get("compare_slots").is_some() => Self::CompareProvision,
            RunState::Provisioning => Self::Provision,
            RunState::RunningAgent if output.get("reports").is_some() => Self::Compare,
            RunState::RunningAgent => Self::Agent,
            RunState::Verifying => Self::Verify,
            RunState::AwaitingChoice => Self::Choice,
            _ => return None,
        })
    }
}

/// A step's journaled output: a struct whose fields are stored next to its
/// [`OutputKind`].
pub(crate) trait StepOutput: Serialize + DeserializeOwned {
    /// Its kind.
    const KIND: OutputKind;

    /// The output as journaled: its fields and `kind`.
    fn to_journal(&self) -> std::result::Result<serde_json::Value, String> {
        match serde_json::to_value(self).map_err(|e| e.to_string())? {
            serde_json::Value::Object(mut fields) => {
                let kind = serde_json::to_value(Self::KIND).map_err(|e| e.to_string())?;
                fields.insert(KIND_FIELD.into(), kind);
                Ok(serde_json::Value::Object(fields))
            }
            other => Err(format!("a {:?} step output must be a JSON object, not {other}", Self::KIND)),
        }
    }
}

/// The output field that holds the [`OutputKind`].
const KIND_FIELD: &str = "kind";

impl StepOutput for crate::ModelDecision {
    const KIND: OutputKind = OutputKind::Decision;
}

impl StepOutput for crate::PullRequest {
    const KIND: OutputKind = OutputKind::PullRequest;
}

/// One journal record and the kind of its output.
#[derive(Debug, Clone)]
struct Entry {
    kind: Option<OutputKind>,
    record: StepRecord,
}

impl Entry {
    fn new(record: StepRecord) -> Self {
        let kind = match record.output.get(KIND_FIELD) {
            Some(kind) => serde_json::from_value(kind.clone()).ok(),
            None if record.status == StepStatus::Done => OutputKind::legacy(record.step, &record.output),
            None => None,
        };
        Self { kind, record }
    }

    fn output<T: StepOutput>(&self) -> Option<T> {
        if self.record.status != StepStatus::Done || self.kind != Some(T::KIND) {
            return None;
        }
        match serde_json::from_value(self.record.output.clone()) {
            Ok(out) => Some(out),
            Err(e) => {
                warn!(run_id = %self.record.run_id, seq = self.record.seq, kind = ?T::KIND, error = %e, "unreadable step output");
                None
            }
        }
    }
}

/// A run's step journal as a drive holds it: read from the store once, when
/// the drive starts, then kept current by the drive's own journal writes
/// ([`Driver::journaled`], [`Driver::transition_journaled`]). Every step of
/// the drive reads it here instead of from the store.
#[derive(Debug, Default)]
pub(crate) struct Journal(std::sync::Mutex<Vec<Entry>>);

impl Journal {
    /// A journal holding `records` (in journal order).
    pub(crate) fn new(records: Vec<StepRecord>) -> Self {
        Self(std::sync::Mutex::new(records.into_iter().map(Entry::new).collect()))
    }

    /// `run`'s journal. A queued run has journaled nothing (no step runs in
    /// `queued`, and no run goes back there), so it is not read.
    pub(super) async fn of(store: &dyn Store, run: &Run) -> Result<Self> {
        if run.state == RunState::Queued {
            return Ok(Self::default());
        }
        Ok(Self::new(store.steps(run.id).await?))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last record.
    pub(crate) fn last(&self) -> Option<StepRecord> {
        self.entries().last().map(|e| e.record.clone())
    }

    /// The output of the latest done step of kind `T`.
    pub(crate) fn latest<T: StepOutput>(&self) -> Option<T> {
        self.entries().iter().rev().find(|e| e.record.status == StepStatus::Done && e.kind == Some(T::KIND))?.output()
    }

    /// `field` of every done step output that has it (not null), in order:
    /// a convention between outputs, such as `resources` and `prompt`.
    pub(crate) fn fields<T: DeserializeOwned>(&self, field: &str) -> Vec<T> {
        self.entries()
            .iter()
            .filter(|e| e.record.status == StepStatus::Done)
            .filter_map(|e| e.record.output.get(field).filter(|v| !v.is_null()))
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect()
    }

    /// The latest done step output's `field` (see [`Journal::fields`]).
    pub(crate) fn latest_field<T: DeserializeOwned>(&self, field: &str) -> Option<T> {
        self.fields(field).pop()
    }

    /// Takes in a record the store returned: a new one, or a new version of
    /// one it holds.
    fn put(&self, record: StepRecord) {
        let mut entries = self.entries();
        let entry = Entry::new(record);
        match entries.iter_mut().rev().find(|e| e.record.seq == entry.record.seq) {
            Some(held) => *held = entry,
            None => entries.push(entry),
        }
    }

    /// Marks the latest started record of `step` as the store's
    /// [`Journal::finish_step`](crate::Journal::finish_step) does, after a write that did it without
    /// returning the record ([`Journal::finish_step_and_transition`](crate::Journal::finish_step_and_transition)).
    fn finished(&self, step: RunState, result: std::result::Result<serde_json::Value, String>, at: Timestamp) {
        let mut entries = self.entries();
        let Some(held) =
            entries.iter_mut().rev().find(|e| e.record.step == step && e.record.status == StepStatus::Started)
        else {
            return;
        };
        let mut record = held.record.clone();
        record.finish(result, at);
        *held = Entry::new(record);
    }
}

/// A step's result waiting to be journaled with the run's next transition.
#[derive(Debug)]
struct PendingFinish {
    step: RunState,
    result: std::result::Result<serde_json::Value, String>,
}

/// The results of idempotent steps not journaled yet, per run: see
/// [`Driver::journaled`] and [`Driver::transition_journaled`].
#[derive(Debug, Default)]
pub(super) struct PendingFinishes(std::sync::Mutex<std::collections::HashMap<RunId, PendingFinish>>);

impl PendingFinishes {
    fn put(&self, run: RunId, pending: PendingFinish) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(run, pending);
    }

    fn take(&self, run: RunId) -> Option<PendingFinish> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&run)
    }

    /// Drops the run's waiting result, if any: its step stays journaled as
    /// started, so whoever drives the run next resumes it.
    pub(super) fn forget(&self, run: RunId) {
        self.take(run);
    }
}

/// How a step may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Retry transient errors with backoff.
    Transient,
    /// Never retry (the side effect is not idempotent, e.g. the agent).
    Never,
}

impl Driver {
    /// Runs `effect` as the journaled step of `run`'s current state, and
    /// keeps `journal` (the drive's copy of `run`'s journal) current.
    ///
    /// If the journal's last record is this step and it is done (the worker
    /// died after the side effect but before the transition), the recorded
    /// output is returned and the effect is not repeated.
    ///
    /// The step is journaled as started before the effect. Its result is
    /// journaled after it: at once for a step that is never retried (the
    /// agent, verification: repeating them is costly), and for an idempotent
    /// step ([`Retry::Transient`]) together with the run's next transition,
    /// in one store write ([`crate::Journal::finish_step_and_transition`]). A
    /// crash between an idempotent effect and that write repeats the effect
    /// on resume, under the same idempotency key, exactly like a crash
    /// between an effect and its journal record always did.
    pub(crate) async fn journaled<T, F, Fut>(
        &self,
        run: &Run,
        journal: &Journal,
        key: Option<&str>,
        timeout: Duration,
        retry: Retry,
        effect: F,
    ) -> Result<T>
    where
        T: StepOutput,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let store = &self.store;
        let owner = self.config.worker_id.as_str();
        // A result still waiting for a transition: this state journals a
        // second effect, or an earlier advance stopped before moving the run.
        if let Some(pending) = self.pending_finishes.take(run.id)
            && pending.step == run.state
        {
            match store.finish_step(run.id, owner, pending.step, pending.result, self.clock.now()).await {
                Ok(record) => journal.put(record),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let record = store.resume_or_begin_step(run.id, owner, run.state, key, self.clock.now()).await?;
        let resumed = Entry::new(record.clone());
        journal.put(record);
        if resumed.record.status == StepStatus::Done {
            match resumed.output::<T>() {
                Some(out) => return Ok(out),
                // Not this step's output: run the step again.
                None => journal.put(store.begin_step(run.id, owner, run.state, key, self.clock.now()).await?),
            }
        }
        let result = self.attempt(run.state, timeout, retry, effect).await;
        let record = match &result {
            Ok(v) => v.to_journal(),
            Err(e) => Err(e.to_string()),
        };
        match retry {
            Retry::Transient => self.pending_finishes.put(run.id, PendingFinish { step: run.state, result: record }),
            Retry::Never => {
                journal.put(store.finish_step(run.id, owner, run.state, record, self.clock.now()).await?);
            }
        }
        result
    }

    /// Applies `t`, journaling the result of `t.from`'s step in the same
    /// store write when [`Driver::journaled`] left one waiting (and in
    /// `journal`, the drive's copy).
    pub(super) async fn transition_journaled(&self, t: &Transition, journal: &Journal) -> Result<Run> {
        match self.pending_finishes.take(t.run_id) {
            Some(pending) if pending.step == t.from => {
                let moved = self.store.finish_step_and_transition(t, pending.result.clone()).await?;
                journal.finished(pending.step, pending.result, t.at);
                Ok(moved)
            }
            _ => self.store.transition(t).await,
        }
    }

    async fn attempt<T, F, Fut>(&self, step: RunState, timeout: Duration, retry: Retry, effect: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let rc = &self.config.retry;
        let mut timed = {
            let mut effect = effect;
            move || {
                let fut = effect();
                async move {
                    tokio::time::timeout(timeout, fut)
                        .await
                        .unwrap_or_else(|_| Err(Error::Timeout { what: format!("step {step}"), after: timeout }))
                }
            }
        };
        match retry {
            Retry::Never => timed().await,
            Retry::Transient => {
                let backoff = ExponentialBuilder::default()
                    .with_min_delay(rc.min_delay)
                    .with_max_delay(rc.max_delay)
                    .with_max_times(rc.max_retries)
                    .with_jitter();
                timed
                    .retry(backoff)
                    .when(|e: &Error| e.is_retryable() && !matches!(e, Error::Timeout { .. }))
                    .notify(|e, after| warn!(%step, error = %e, ?after, "step failed; retrying"))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::StepStatus::{Done, Started};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Pushed {
        branch: String,
    }

    impl StepOutput for Pushed {
        const KIND: OutputKind = OutputKind::Push;
    }

    /// Same fields, another kind.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Committed {
        branch: String,
    }

    impl StepOutput for Committed {
        const KIND: OutputKind = OutputKind::Commit;
    }

    fn record(seq: u64, step: RunState, status: StepStatus, output: serde_json::Value) -> StepRecord {
        StepRecord {
            run_id: RunId(uuid::Uuid::nil()),
            seq,
            step,
            idempotency_key: None,
            status,
            output,
            error: None,
            started_at: chrono::DateTime::UNIX_EPOCH,
            finished_at: None,
        }
    }

    #[test]
    fn an_output_is_journaled_with_its_kind_and_found_by_it_not_by_its_shape() {
        let pushed = Pushed { branch: "paid/1-fix".into() };
        let output = pushed.to_journal().unwrap();
        assert_eq!(output, serde_json::json!({ "kind": "push", "branch": "paid/1-fix" }));
        let journal = Journal::new(vec![record(1, RunState::Pushing, Done, output)]);
        assert_eq!(journal.latest::<Pushed>(), Some(pushed));
        assert_eq!(journal.latest::<Committed>(), None, "the fields fit, the kind does not");
    }

    #[test]
    fn the_latest_done_output_of_a_kind_wins() {
        let out = |b: &str| Pushed { branch: b.into() }.to_journal().unwrap();
        let journal = Journal::new(vec![
            record(1, RunState::Pushing, Done, out("first")),
            record(2, RunState::Pushing, Done, out("second")),
            record(3, RunState::Pushing, Started, serde_json::Value::Null),
        ]);
        assert_eq!(journal.latest::<Pushed>().map(|p| p.branch), Some("second".into()));
    }

    #[test]
    fn outputs_journaled_before_kinds_get_theirs_from_their_step() {
        let agent = serde_json::json!({ "iteration": 1 });
        let compare = serde_json::json!({ "reports": [], "winner": null });
        let kind = |step, output| Entry::new(record(1, step, Done, output)).kind;
        assert_eq!(kind(RunState::RunningAgent, agent), Some(OutputKind::Agent));
        assert_eq!(kind(RunState::RunningAgent, compare), Some(OutputKind::Compare));
        assert_eq!(
            kind(RunState::Provisioning, serde_json::json!({ "compare_slots": [] })),
            Some(OutputKind::CompareProvision)
        );
        assert_eq!(kind(RunState::Pushing, serde_json::Value::Null), None, "not read back: the step runs again");
    }

    #[test]
    fn a_combined_finish_marks_the_started_record_as_the_store_does() {
        let journal = Journal::new(vec![record(1, RunState::Pushing, Started, serde_json::Value::Null)]);
        let output = Pushed { branch: "b".into() }.to_journal().unwrap();
        journal.finished(RunState::Pushing, Ok(output.clone()), chrono::DateTime::UNIX_EPOCH);
        let last = journal.last().unwrap();
        assert_eq!((last.seq, last.status, last.output), (1, Done, output));
        assert_eq!(journal.latest::<Pushed>().map(|p| p.branch), Some("b".into()));

        journal.put(record(2, RunState::Pushing, Started, serde_json::Value::Null));
        journal.finished(RunState::Pushing, Err("refused".into()), chrono::DateTime::UNIX_EPOCH);
        let last = journal.last().unwrap();
        assert_eq!((last.seq, last.status, last.error.as_deref()), (2, StepStatus::Failed, Some("refused")));
    }
}
