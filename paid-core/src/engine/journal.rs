//! Journaled, retried, time-limited execution of one step's side effect.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::Engine;
use crate::{Error, Result, Run, RunState, StepStatus};

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
        let steps = store.steps(run.id).await?;
        if let Some(last) = steps.last()
            && last.step == run.state
            && last.status == StepStatus::Done
            && let Ok(out) = serde_json::from_value::<T>(last.output.clone())
        {
            return Ok(out);
        }
        store.begin_step(run.id, owner, run.state, key, self.inner.clock.now()).await?;
        let result = self.attempt(run.state, timeout, retry, effect).await;
        let record = match &result {
            Ok(v) => serde_json::to_value(v).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        store.finish_step(run.id, owner, run.state, record, self.inner.clock.now()).await?;
        result
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
