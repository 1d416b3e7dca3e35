//! The runtime's metrics, each recorded in exactly one place:
//! - `paid_active_containers{project_id}` goes up in
//!   [`Shared::count_started`] and down in [`Shared::untrack`], both under
//!   the lock of the tracked sandboxes, so a sandbox counts up at most once
//!   and down only if it counted up, however many callers remove it;
//! - `paid_container_startup_seconds` is observed in
//!   [`Shared::count_started`], once per sandbox `create` returns.
//!
//! A sandbox removed behind this runtime's back (by another worker's
//! reaper, or by hand) is counted down when [`DockerRuntime::reap_with`](crate::DockerRuntime::reap_with)
//! no longer finds it ([`Shared::forget_missing`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use paid_core::metrics::ProjectLabels;

use crate::runtime::{Shared, Tracked};

impl Shared {
    /// A sandbox `create` is about to hand out, ready after `elapsed`:
    /// counts it up and observes its startup time, once.
    pub(crate) fn count_started(&self, id: &str, elapsed: Duration) {
        let Some(metrics) = self.metrics() else { return };
        let mut tracked = self.tracked();
        let Some(entry) = tracked.get_mut(id) else { return };
        if entry.counted {
            return;
        }
        entry.counted = true;
        let project_id = entry.project_id.clone().unwrap_or_default();
        metrics.active_containers.get_or_create(&ProjectLabels { project_id }).inc();
        metrics.container_startup_seconds.observe(elapsed.as_secs_f64());
    }

    /// Forgets sandbox `id`; counts it down if it was counted up. Returns
    /// what was known, `None` when it was not tracked (or another caller
    /// forgot it first).
    pub(crate) fn untrack(&self, id: &str) -> Option<Tracked> {
        let removed = self.tracked().remove(id)?;
        if removed.counted
            && let Some(metrics) = self.metrics()
        {
            let project_id = removed.project_id.clone().unwrap_or_default();
            metrics.active_containers.get_or_create(&ProjectLabels { project_id }).dec();
        }
        Some(removed)
    }

    /// Forgets the sandboxes known before `listed_at` that a listing
    /// started then did not find: they are gone. Returns their ids.
    pub(crate) fn forget_missing(&self, listed: &HashSet<String>, listed_at: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .tracked()
            .iter()
            .filter(|(id, t)| t.since < listed_at && !listed.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        gone.into_iter().filter(|id| self.untrack(id).is_some()).collect()
    }
}
