//! Bounded worktrees: the agent's work, watched against the run's
//! [`WorktreeLimits`] while it runs.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{Error, Result, Workspaces, Worktree, WorktreeLimits};

/// How long a stopped agent gets to end its exec before the step moves on.
const WIND_DOWN: Duration = Duration::from_secs(30);

/// What to watch, and how often.
pub(crate) struct Watch<'a> {
    pub(crate) workspaces: &'a dyn Workspaces,
    pub(crate) worktree: &'a Worktree,
    pub(crate) limits: &'a WorktreeLimits,
    pub(crate) every: Duration,
}

impl Watch<'_> {
    /// Runs `work` (the agent, stopped by `cancel`) while checking the
    /// worktree every interval. At the first cap crossed, cancels the agent,
    /// gives its exec [`WIND_DOWN`] to end, and fails with
    /// [`Error::WorktreeLimit`]. A check that cannot run is logged, not fatal:
    /// the commit applies the same caps.
    pub(crate) async fn run<T>(&self, cancel: &CancellationToken, work: impl Future<Output = Result<T>>) -> Result<T> {
        let watch = async {
            loop {
                tokio::time::sleep(self.every).await;
                match self.workspaces.check_limits(self.worktree, self.limits).await {
                    Ok(()) => {}
                    Err(e @ Error::WorktreeLimit(_)) => return e,
                    Err(e) => {
                        warn!(worktree = %self.worktree.path.display(), error = %e, "could not check the worktree's limits")
                    }
                }
            }
        };
        tokio::pin!(work);
        tokio::select! {
            out = &mut work => out,
            crossed = watch => {
                cancel.cancel();
                let _ = tokio::time::timeout(WIND_DOWN, work).await;
                Err(crossed)
            }
        }
    }
}
