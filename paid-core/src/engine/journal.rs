//! Journaled, retried, time-limited execution of one step's side effect.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::Engine;
use crate::{Error, Result, Run, RunId, RunState, StepStatus, Transition};

/// A step's result waiting to be journaled with the run's next transition.
#[derive(Debug)]
struct PendingFinish {
    step: RunState,
    result: std::result::Result<serde_json::Value, String>,
}

/// The results of idempotent steps not journaled yet, per run: see
/// [`Engine::journaled`] and [`Engine::transition_journaled`].
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
pub(super) enum Retry {
    /// Retry transient errors with backoff.
    Transient,
    /// Never retry (the side effect is not idempotent, e.g. the agent).
    Never,
}

impl Engine {
    /// Runs `effect` as the journaled step of `run`'s current state.
    ///
    /// If the journal's last record is this step and it is done (the worker
    /// died after the side effect but before the transition), the recorded
    /// output is returned and the effect is not repeated.
    ///
    /// The step is journaled as started before the effect. Its result is
    /// journaled after it: at once for a step that is never retried (the
    /// agent, verification: repeating them is costly), and for an idempotent
    /// step ([`Retry::Transient`]) together with the run's next transition,
    /// in one store write ([`crate::Store::finish_step_and_transition`]). A
    /// crash between an idempotent effect and that write repeats the effect
    /// on resume, under the same idempotency key, exactly like a crash
    /// between an effect and its journal record always did.
    pub(super) async fn journaled<T, F, Fut>(
        &self,
        run: &Run,
        key: Option<&str>,
        timeout: Duration,
        retry: Retry,
        effect: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let store = &self.inner.store;
        let owner = self.inner.config.worker_id.as_str();
        // A result still waiting for a transition: this state journals a
        // second effect, or an earlier advance stopped before moving the run.
        if let Some(pending) = self.inner.pending_finishes.take(run.id)
            && pending.step == run.state
        {
            match store.finish_step(run.id, owner, pending.step, pending.result, self.inner.clock.now()).await {
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let record = store.resume_or_begin_step(run.id, owner, run.state, key, self.inner.clock.now()).await?;
        if record.status == StepStatus::Done {
            match serde_json::from_value::<T>(record.output) {
                Ok(out) => return Ok(out),
                // Not this step's output type: run the step again.
                Err(_) => {
                    store.begin_step(run.id, owner, run.state, key, self.inner.clock.now()).await?;
                }
            }
        }
        let result = self.attempt(run.state, timeout, retry, effect).await;
        let record = match &result {
            Ok(v) => serde_json::to_value(v).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match retry {
            Retry::Transient => {
                self.inner.pending_finishes.put(run.id, PendingFinish { step: run.state, result: record })
            }
            Retry::Never => {
                store.finish_step(run.id, owner, run.state, record, self.inner.clock.now()).await?;
            }
        }
        result
    }

    /// Applies `t`, journaling the result of `t.from`'s step in the same
    /// store write when [`Engine::journaled`] left one waiting.
    pub(super) async fn transition_journaled(&self, t: &Transition) -> Result<Run> {
        match self.inner.pending_finishes.take(t.run_id) {
            Some(pending) if pending.step == t.from => {
                self.inner.store.finish_step_and_transition(t, pending.result).await
            }
            _ => self.inner.store.transition(t).await,
        }
    }

    async fn attempt<T, F, Fut>(&self, step: RunState, timeout: Duration, retry: Retry, effect: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let rc = &self.inner.config.retry;
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
