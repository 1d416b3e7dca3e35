//! [`Drive`]: what one drive of a run holds, so that no step reads it back
//! from the store.
//!
//! A worker drives a claimed run through its steps
//! ([`Engine::drive`](crate::engine::Engine::drive)).
//! What the steps need about the run (the run itself with its context, its
//! project, its journal, its issue) is read once, when the drive starts (or
//! when a step first needs it), and kept current by the drive's own writes:
//! a transition or patch returns the run as written, a journal write returns
//! its record. Whether a cancel was requested is the heartbeat's to find
//! out (the heartbeat of [`Driver::drive_until`]): it looks when the drive
//! starts and at every beat, and the drive reads its answer between steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OnceCell;

use super::Driver;
use super::journal::Journal;
use crate::{Project, Result, Run, RunPatch, Store, TrackedIssue, UsageRecord};

/// A run as one drive holds it; passed to every step.
pub(super) struct Drive {
    /// The run, as the drive's last write returned it.
    pub(super) run: Run,
    /// Its project, as it was when the drive started (a drive takes a
    /// project's settings as they were then).
    pub(super) project: Project,
    /// Its step journal.
    pub(super) journal: Journal,
    store: Arc<dyn Store>,
    cancel_requested: Arc<AtomicBool>,
    issue: OnceCell<TrackedIssue>,
    usage: std::sync::Mutex<Option<Vec<UsageRecord>>>,
    /// Fields the current step set on the run, written with its transition.
    patch: std::sync::Mutex<RunPatch>,
}

impl std::fmt::Debug for Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drive").field("run", &self.run.id).field("state", &self.run.state).finish_non_exhaustive()
    }
}

impl Drive {
    /// Whether a cancel of the run was requested, as far as this drive knows.
    pub(super) fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::SeqCst)
    }

    /// The run's issue, read on first use, with the title, body and author
    /// it had when the run was queued ([`crate::RunContext::issue`]): an
    /// edit made after the trigger never reaches the prompt, the commit or
    /// the PR. Whether it is trusted is the tracked issue's say (a later
    /// poll that finds its author no longer trusted stops the run). Runs
    /// queued by an older build carry no snapshot and take the tracked
    /// issue as it is.
    pub(super) async fn issue(&self) -> Result<&TrackedIssue> {
        self.issue
            .get_or_try_init(|| async {
                let tracked = self.store.issue(self.run.project_id, self.run.issue_number).await?;
                Ok(self.run.context.issue_as_queued(tracked))
            })
            .await
    }

    /// The run's usage records, read on first use. Only the steps after the
    /// agents' work (reporting, cleanup) read them, so nothing adds to them
    /// meanwhile but this drive, which calls [`Drive::usage_changed`].
    pub(super) async fn usage(&self) -> Result<Vec<UsageRecord>> {
        if let Some(usage) = self.usage_cache().clone() {
            return Ok(usage);
        }
        let usage = self.store.usage(self.run.id).await?;
        *self.usage_cache() = Some(usage.clone());
        Ok(usage)
    }

    /// Forgets the usage records read, after the drive recorded more.
    pub(super) fn usage_changed(&self) {
        *self.usage_cache() = None;
    }

    fn usage_cache(&self) -> std::sync::MutexGuard<'_, Option<Vec<UsageRecord>>> {
        self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets fields on the run in the write that moves it on (the step's
    /// transition, or its failure's), not in a write of their own. A step
    /// sets them from its journaled output, so a crash before the
    /// transition loses nothing: the resumed step sets them again.
    pub(super) fn set_with_transition(&self, patch: RunPatch) {
        self.patch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(patch);
    }

    /// The fields set since the last transition, for the next one.
    pub(super) fn take_patch(&self) -> RunPatch {
        std::mem::take(&mut *self.patch.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl Driver {
    /// Reads what a drive of `run` needs: its project and journal.
    /// `cancel_requested` says whether a cancel was requested; whoever
    /// watches the run (the heartbeat) sets it.
    pub(super) async fn load_drive(&self, run: Run, cancel_requested: Arc<AtomicBool>) -> Result<Drive> {
        let store = &self.store;
        let project = store.project(run.project_id).await?;
        let journal = Journal::of(store.as_ref(), &run).await?;
        Ok(Drive {
            run,
            project,
            journal,
            store: store.clone(),
            cancel_requested,
            issue: OnceCell::new(),
            usage: std::sync::Mutex::new(None),
            patch: std::sync::Mutex::new(RunPatch::default()),
        })
    }
}
