//! The maintenance role: [`Maintenance::sweep`] (the engine's
//! [`Engine::sweep`](crate::engine::Engine::sweep)) removes what runs left
//! behind. It sees the store, the runtime, the workspaces and the clock;
//! no agent, selector, forge or planner.
//!
//! Which worktrees and sandboxes a run owns is engine knowledge (a
//! comparison run's candidates have worktrees of their own, named by ids
//! derived from the run's, see [`super::worktree_ids`]), so the sweep lives
//! here rather than in each deployment's reaper.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use super::builder::Parts;
use crate::ports::sandbox::{ReapReport, ReapRequest};
use crate::{Clock, Error, Result, RunFilter, RunId, SandboxInfo, SandboxRuntime, Store, Workspaces};

/// How cautious [`Engine::sweep`](crate::engine::Engine::sweep) is: what it leaves alone by age.
///
/// A deployment sweeps periodically with the defaults and more eagerly
/// (smaller ages) as its disk fills. Zero ages remove at once, which races
/// with runs being created during the sweep: keep them for emergencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepOptions {
    /// Worktrees of no active run younger than this are kept (default one
    /// day: a worktree's age is its directory's, as the `Workspaces`
    /// backend tells it).
    pub worktree_min_age: Duration,
    /// Sandboxes of runs that ended (or are no longer active) younger than
    /// this are kept, and so is anything else the runtime reaps (default
    /// five minutes): a grace period for sandboxes being created now.
    pub sandbox_min_age: Duration,
    /// Sandboxes labelled with a run this store does not know are kept
    /// until this old (default thirty minutes): they may belong to another
    /// deployment sharing the runtime.
    pub unknown_sandbox_min_age: Duration,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            worktree_min_age: Duration::from_secs(24 * 3600),
            sandbox_min_age: Duration::from_secs(5 * 60),
            unknown_sandbox_min_age: Duration::from_secs(30 * 60),
        }
    }
}

/// What one [`Engine::sweep`](crate::engine::Engine::sweep) did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SweepReport {
    /// Active runs whose worktrees and sandboxes were kept.
    pub active_runs: usize,
    /// Orphan worktrees removed (host paths).
    pub worktrees: Vec<PathBuf>,
    /// What the runtime's [`crate::SandboxRuntime::reap`] removed.
    pub runtime: ReapReport,
    /// Parts of the sweep that failed; the others went on.
    pub notes: Vec<String>,
}

impl SweepReport {
    /// Whether nothing was removed and nothing failed.
    pub fn is_empty(&self) -> bool {
        self.worktrees.is_empty() && self.runtime.is_empty() && self.notes.is_empty()
    }
}

/// What the store says about the run a sandbox is labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Not in an end state: keep.
    Active,
    /// Ended: reap (after `sandbox_min_age`).
    Ended,
    /// Not in this store: reap after `unknown_sandbox_min_age`.
    Unknown,
}

/// Removes what runs left behind: orphan worktrees and the runtime's
/// leftovers.
#[derive(Clone)]
pub(crate) struct Maintenance {
    store: Arc<dyn Store>,
    runtime: Arc<dyn SandboxRuntime>,
    workspaces: Arc<dyn Workspaces>,
    clock: Arc<dyn Clock>,
}

impl Maintenance {
    /// The role, with the ports it uses.
    pub(crate) fn new(parts: &Parts) -> Self {
        Self {
            store: parts.store.clone(),
            runtime: parts.runtime.clone(),
            workspaces: parts.workspaces.clone(),
            clock: parts.clock.clone(),
        }
    }

    /// Removes what no active run owns (see
    /// [`Engine::sweep`](crate::engine::Engine::sweep)).
    pub(crate) async fn sweep(&self, opts: &SweepOptions) -> Result<SweepReport> {
        let store = &self.store;
        let mut report = SweepReport::default();
        let active: Vec<RunId> = store
            .runs(&RunFilter { active_only: true, ..RunFilter::default() })
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        report.active_runs = active.len();

        let keep_worktrees: Vec<RunId> = active.iter().flat_map(|id| super::worktree_ids(*id)).collect();
        let older_than = chrono::Duration::from_std(opts.worktree_min_age).unwrap_or(chrono::Duration::MAX);
        match self.workspaces.sweep_orphans(&keep_worktrees, older_than).await {
            Ok(paths) => report.worktrees = paths,
            Err(e) => report.notes.push(format!("worktree sweep failed: {e}")),
        }

        // Without knowing which sandboxes belong to runs unknown to this
        // store but still young, leave the runtime alone this time.
        let keep_runs = match self.runtime.list_managed().await {
            // A comparison run's candidates' sandboxes carry their candidate ids.
            Ok(sandboxes) => match self.runs_to_keep(&keep_worktrees, &sandboxes, opts).await {
                Ok(more) => Some(keep_worktrees.iter().copied().chain(more).collect::<Vec<_>>()),
                Err(e) => {
                    report.notes.push(format!("reading the runs of sandboxes failed: {e}"));
                    None
                }
            },
            Err(e) => {
                report.notes.push(format!("listing sandboxes failed: {e}"));
                None
            }
        };
        if let Some(keep) = keep_runs {
            let req = ReapRequest { keep: &keep, min_age: opts.sandbox_min_age, now: self.clock.now() };
            match self.runtime.reap(&req).await {
                Ok(reaped) => report.runtime = reaped,
                Err(e) => report.notes.push(format!("runtime reap failed: {e}")),
            }
        }

        if !report.worktrees.is_empty() || !report.runtime.is_empty() {
            info!(
                worktrees = report.worktrees.len(),
                sandboxes = report.runtime.sandboxes.len(),
                other = report.runtime.other.len(),
                errors = report.runtime.errors.len(),
                "swept orphans"
            );
        }
        for note in &report.notes {
            warn!(note = %note, "sweep");
        }
        Ok(report)
    }

    /// The runs of `sandboxes` that are not `active` but must stay: active
    /// after all (queued since the listing), or unknown to this store and
    /// younger than `opts.unknown_sandbox_min_age`.
    async fn runs_to_keep(
        &self,
        active: &[RunId],
        sandboxes: &[SandboxInfo],
        opts: &SweepOptions,
    ) -> Result<Vec<RunId>> {
        let active: HashSet<RunId> = active.iter().copied().collect();
        let now = self.clock.now();
        let mut owners: BTreeMap<RunId, Owner> = BTreeMap::new();
        let mut keep = Vec::new();
        for sandbox in sandboxes {
            // A label that is not a run id is no run of this engine: reaped
            // like an ended run's sandbox.
            let Some(run) = sandbox.run_id.as_deref().and_then(|r| r.parse::<uuid::Uuid>().ok()).map(RunId) else {
                continue;
            };
            if active.contains(&run) {
                continue;
            }
            let owner = match owners.get(&run) {
                Some(owner) => *owner,
                None => {
                    let owner = match self.store.run(run).await {
                        Ok(r) if r.state.is_terminal() => Owner::Ended,
                        Ok(_) => Owner::Active,
                        Err(Error::NotFound { .. }) => Owner::Unknown,
                        Err(e) => return Err(e),
                    };
                    owners.insert(run, owner);
                    owner
                }
            };
            let old_enough = |min_age: Duration| {
                min_age.is_zero()
                    || sandbox.created_at.is_some_and(|c| (now - c).to_std().is_ok_and(|age| age >= min_age))
            };
            let stays = match owner {
                Owner::Active => true,
                Owner::Unknown => !old_enough(opts.unknown_sandbox_min_age),
                Owner::Ended => false,
            };
            if stays && !keep.contains(&run) {
                keep.push(run);
            }
        }
        Ok(keep)
    }
}
