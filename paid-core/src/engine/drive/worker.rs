//! The driver's worker side: claiming runs and driving them to an end
//! state under a lease, with a heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use super::Driver;
use crate::metrics::WorkflowLabels;
use crate::{ClaimRequest, Error, Result, Run, RunId};

/// Says whether the worker loop may claim new runs right now.
pub type ClaimGate = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// How [`Engine::run_until_shutdown`](crate::engine::Engine::run_until_shutdown)
/// waits and when it claims.
#[derive(Clone)]
pub struct WorkerOptions {
    /// How long to sleep when nothing is runnable.
    pub idle_wait: Duration,
    /// Wakes the loop early when new work may be there.
    pub wake: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// When set and false, no new run is claimed (runs in hand go on).
    pub accepting: Option<ClaimGate>,
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("idle_wait", &self.idle_wait)
            .field("wake", &self.wake.is_some())
            .field("accepting", &self.accepting.is_some())
            .finish()
    }
}

impl WorkerOptions {
    /// Poll every `idle_wait`, with no wake-up signal and no gate.
    pub fn polling(idle_wait: Duration) -> Self {
        Self { idle_wait, wake: None, accepting: None }
    }
}

impl Driver {
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(60))
    }

    /// Claims the next runnable run for this worker, if any.
    pub(crate) async fn claim_next(&self) -> Result<Option<Run>> {
        self.store
            .claim(&ClaimRequest { owner: self.config.worker_id.clone(), lease: self.lease(), now: self.clock.now() })
            .await
    }

    /// Drives a claimed run to an end state, stopping between steps when
    /// `shutdown` is cancelled (see
    /// [`Engine::drive_until`](crate::engine::Engine::drive_until)).
    pub(crate) async fn drive_until(&self, run_id: RunId, shutdown: &CancellationToken) -> Result<Run> {
        let run = self.store.run(run_id).await?;
        self.drive_claimed(run, shutdown).await
    }

    /// [`Driver::drive_until`] of `run` as the claim returned it. The run,
    /// its project and journal are read once, here, and passed to every
    /// step (see [`Drive`](super::held::Drive)).
    async fn drive_claimed(&self, run: Run, shutdown: &CancellationToken) -> Result<Run> {
        if run.state.is_terminal() || run.state.is_parked() {
            // Nothing to do, and no lease to give up.
            return Ok(run);
        }
        let run_id = run.id;
        let cancel = CancellationToken::new();
        let cancel_requested = Arc::new(AtomicBool::new(false));
        let active =
            self.metrics.active_workflows.get_or_create(&WorkflowLabels { workflow_type: "execute".into() }).clone();
        active.inc();
        let (looked, first_look) = tokio::sync::oneshot::channel();
        let heartbeat = tokio::spawn(self.clone().heartbeat(run_id, cancel.clone(), cancel_requested.clone(), looked));
        let result = async {
            let mut drive = self.load_drive(run, cancel_requested).await?;
            // The heartbeat's first look: a run whose cancel was requested
            // before this drive (its last worker died) takes no step but
            // the way to cleanup.
            let _ = first_look.await;
            loop {
                self.advance_drive(&mut drive, &cancel).await?;
                let state = drive.run.state;
                if state.is_terminal() || state.is_parked() || shutdown.is_cancelled() {
                    return Ok(drive.run);
                }
            }
        }
        .await;
        heartbeat.abort();
        let _ = heartbeat.await;
        // A step result still waiting for a transition that will not come
        // from this drive: the journal keeps the step as started, so the
        // next worker resumes it (under the same idempotency key).
        self.pending_finishes.forget(run_id);
        active.dec();
        if let Ok(run) = &result
            && (run.state.is_parked() || run.state.is_terminal())
        {
            // Parking cleared the lease; a pick may already have moved the
            // run on and another worker (with this same id) claimed it. An
            // ended run's lease binds nothing: no claim takes an ended run,
            // and no project's limit counts one.
            return result;
        }
        if let Err(e) = self.store.release(run_id, &self.config.worker_id).await
            && !matches!(e, Error::LeaseLost { .. })
        {
            warn!(%run_id, error = %e, "could not release lease");
        }
        result
    }

    /// Renews the lease every heartbeat interval and looks for a cancel:
    /// at once (then says so on `looked`; the claim just took the lease),
    /// and at every beat. A cancel sets `cancel_requested`, then cancels
    /// `cancel`; a lost lease only cancels `cancel`.
    async fn heartbeat(
        self,
        run_id: RunId,
        cancel: CancellationToken,
        cancel_requested: Arc<AtomicBool>,
        looked: tokio::sync::oneshot::Sender<()>,
    ) {
        let store = self.store.clone();
        let owner = self.config.worker_id.clone();
        let every = self.config.heartbeat_interval.max(Duration::from_millis(50));
        let look = async || {
            if store.cancel_requested(run_id).await.unwrap_or(false) {
                // Before the token: whoever sees the token cancelled knows why.
                cancel_requested.store(true, Ordering::SeqCst);
                cancel.cancel();
            }
        };
        look().await;
        let _ = looked.send(());
        loop {
            tokio::time::sleep(every).await;
            match store.heartbeat(run_id, &owner, self.lease(), self.clock.now()).await {
                Ok(()) => {}
                Err(Error::LeaseLost { .. }) => {
                    warn!(%run_id, "lease lost; stopping work on this run");
                    cancel.cancel();
                    return;
                }
                Err(e) => warn!(%run_id, error = %e, "heartbeat failed"),
            }
            look().await;
        }
    }

    /// The worker loop: claims and drives runs until `shutdown` is
    /// cancelled (see
    /// [`Engine::run_until_shutdown`](crate::engine::Engine::run_until_shutdown)).
    pub(crate) async fn run_until_shutdown(&self, shutdown: CancellationToken, opts: WorkerOptions) -> Result<u64> {
        let mut finished = 0;
        while !shutdown.is_cancelled() {
            let accepting = opts.accepting.as_ref().is_none_or(|f| f());
            if accepting {
                match self.claim_next().await {
                    Ok(Some(run)) => {
                        let span = tracing::info_span!(
                            "run",
                            trace_id = %uuid::Uuid::now_v7().simple(),
                            run_id = %run.id,
                            project_id = %run.project_id,
                        );
                        let outcome = async {
                            info!(state = %run.state, "claimed run");
                            let outcome = self.drive_claimed(run, &shutdown).await;
                            match &outcome {
                                Ok(r) if r.state.is_terminal() => {
                                    info!(state = %r.state, pr = r.pr_url.as_deref().unwrap_or("-"), "run ended")
                                }
                                Ok(r) if r.state.is_parked() => {
                                    info!(state = %r.state, "run parked until a human moves it on; no lease held")
                                }
                                Ok(r) => info!(state = %r.state, "run paused for shutdown; lease released"),
                                Err(e) => warn!(error = %e, "run interrupted; its lease will expire"),
                            }
                            outcome
                        }
                        .instrument(span)
                        .await;
                        if matches!(outcome, Ok(r) if r.state.is_terminal()) {
                            finished += 1;
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "claim failed; retrying after the idle wait"),
                }
            }
            let notified = async {
                match &opts.wake {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(opts.idle_wait) => {}
                _ = notified => {}
            }
        }
        Ok(finished)
    }

    /// Claims one run and drives it to its end. `None` when nothing is runnable.
    pub(crate) async fn run_once(&self) -> Result<Option<Run>> {
        match self.claim_next().await? {
            Some(run) => self.drive_claimed(run, &CancellationToken::new()).await.map(Some),
            None => Ok(None),
        }
    }
}
