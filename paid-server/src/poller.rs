//! The poller: every project on the interval (issues, then the feedback on
//! its pull requests), and one project at once when a webhook nudges.
//!
//! In a cluster, one node polls each project at a time: a scheduled poll
//! first takes or renews the project's poll lease
//! ([`paid_core::Catalog::claim_poll`]) for one interval, so the nodes that
//! do not hold it skip the project, and when its holder dies another takes
//! it over within an interval of the lease running out (at once after a
//! clean shutdown, which ends the node's leases). A webhook nudge polls at
//! once, on the node that received it.

use std::sync::Arc;
use std::time::Duration;

use paid_core::engine::Engine;
use paid_core::{SpendQuery, Store, Timestamp};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::disk::DiskGuard;
use crate::webhooks::Nudge;

/// Polls every project on the interval (issues, then the feedback on its
/// pull requests), and one project at once when a webhook nudges. One task,
/// so a nudge never races a scheduled poll.
pub(crate) struct Poller {
    pub(crate) engine: Engine,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) disk: Arc<DiskGuard>,
    pub(crate) wake: Arc<Notify>,
    /// This node's name on poll leases (its worker id).
    pub(crate) owner: String,
    /// How long a poll lease lasts: the poll interval.
    pub(crate) lease: Duration,
}

impl Poller {
    pub(crate) async fn run(
        self,
        every: Duration,
        mut nudges: Option<mpsc::Receiver<Nudge>>,
        shutdown: CancellationToken,
    ) {
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return self.release_poll_leases().await,
                _ = tokio::time::sleep_until(next) => {
                    self.cycle(&shutdown).await;
                    next = tokio::time::Instant::now() + every;
                }
                Some(nudge) = next_nudge(&mut nudges) => self.nudged(nudge).await,
            }
        }
    }

    async fn cycle(&self, shutdown: &CancellationToken) {
        if !self.disk.accepting_runs() {
            return;
        }
        let projects = match self.store.projects().await {
            Ok(p) => p,
            Err(e) => return warn!(error = %e, "cannot list projects"),
        };
        for p in projects {
            if shutdown.is_cancelled() {
                return;
            }
            if self.holds_poll_lease(&p).await && self.admits(&p).await {
                self.poll(&p).await;
                self.follow_up(&p).await;
            }
        }
    }

    /// Ends this node's poll leases (a lease renewed to expire now), so that
    /// after a clean shutdown another node, or this one restarted, polls at
    /// once instead of after the lease.
    async fn release_poll_leases(&self) {
        let Ok(projects) = self.store.projects().await else { return };
        let now = chrono::Utc::now();
        for p in projects {
            if let Err(e) = self.store.claim_poll(p.id, &self.owner, now, now).await {
                warn!(project_id = %p.id, error = %e, "cannot release the poll lease");
            }
        }
    }

    /// Takes or renews `project`'s poll lease; `false` while another node
    /// holds it. A store error counts as held, so a store hiccup delays no
    /// poll (a duplicate poll is harmless: intake queues an issue once).
    async fn holds_poll_lease(&self, project: &paid_core::Project) -> bool {
        let now = chrono::Utc::now();
        let until = now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        match self.store.claim_poll(project.id, &self.owner, until, now).await {
            Ok(held) => {
                if !held {
                    tracing::debug!(project_id = %project.id, "another node polls this project");
                }
                held
            }
            Err(e) => {
                warn!(project_id = %project.id, error = %e, "cannot take the poll lease; polling anyway");
                true
            }
        }
    }

    async fn nudged(&self, nudge: Nudge) {
        let id = match nudge {
            Nudge::Poll(id) | Nudge::FollowUp(id) => id,
        };
        let project = match self.store.project(id).await {
            Ok(p) => p,
            Err(e) => return warn!(project_id = %id, error = %e, "webhook: cannot read the project"),
        };
        if !self.disk.accepting_runs() || !self.admits(&project).await {
            return;
        }
        match nudge {
            Nudge::Poll(_) => self.poll(&project).await,
            Nudge::FollowUp(_) => self.follow_up(&project).await,
        }
    }

    /// Whether the project's monthly budget leaves room for new runs.
    async fn admits(&self, p: &paid_core::Project) -> bool {
        if let Some(limit) = p.settings.budget_usd_per_month
            && let Ok(spent) = month_spend(self.store.as_ref(), p.id, chrono::Utc::now()).await
            && spent >= limit
        {
            warn!(project = %p.repo, spent, limit, "monthly budget spent; not polling this project");
            return false;
        }
        true
    }

    async fn poll(&self, p: &paid_core::Project) {
        let span = tracing::info_span!("poll", project_id = %p.id, trace_id = %uuid::Uuid::now_v7().simple());
        match self.engine.poll_project(p.id).instrument(span).await {
            Ok(r) if !r.queued.is_empty() => {
                info!(project = %p.repo, queued = r.queued.len(), "queued runs");
                self.wake.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => warn!(project = %p.repo, error = %e, "poll failed"),
        }
    }

    /// PR feedback: failing checks, trusted reviews, merged/closed, votes.
    async fn follow_up(&self, p: &paid_core::Project) {
        let span = tracing::info_span!("follow_up", project_id = %p.id, trace_id = %uuid::Uuid::now_v7().simple());
        match self.engine.follow_up(p.id).instrument(span).await {
            Ok(r) => {
                for (pr, e) in &r.errors {
                    warn!(project = %p.repo, pr, error = %e, "cannot read pull request feedback");
                }
                if !r.queued.is_empty() {
                    info!(project = %p.repo, queued = r.queued.len(), "queued follow-up runs");
                    self.wake.notify_waiters();
                }
            }
            Err(e) => warn!(project = %p.repo, error = %e, "follow-up failed"),
        }
    }
}

async fn next_nudge(nudges: &mut Option<mpsc::Receiver<Nudge>>) -> Option<Nudge> {
    match nudges {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What `project` spent in the UTC month of `now`, in USD: one aggregate
/// query over the usage recorded since the first of the month.
async fn month_spend(store: &dyn Store, project: paid_core::ProjectId, now: Timestamp) -> paid_core::Result<f64> {
    use chrono::Datelike;
    let today = now.date_naive();
    let month_start = today.with_day(1).unwrap_or(today).and_time(chrono::NaiveTime::MIN).and_utc();
    let spend = store.spend(&SpendQuery::per_project().project(project).since(month_start)).await?;
    let micros = spend.iter().fold(0i64, |sum, s| sum.saturating_add(s.totals.cost_micros));
    Ok(micros as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use paid_core::store::prelude::*;
    use std::sync::Arc;

    use paid_core::UsageRecord;
    use paid_core::testing::faults::FlakyStore;
    use paid_core::testing::fixtures;
    use paid_store_sqlite::SqliteStore;

    use super::*;

    #[tokio::test]
    async fn month_spend_counts_this_month_of_one_project_in_one_aggregate() {
        let store = FlakyStore::new(Arc::new(SqliteStore::open_in_memory().unwrap()));
        let (widgets, gadgets) = (fixtures::project("widgets"), fixtures::project("gadgets"));
        let mut runs = Vec::new();
        for (p, issue) in [(&widgets, 1), (&widgets, 2), (&widgets, 3), (&gadgets, 1)] {
            store.put_project(p).await.unwrap();
            runs.push(store.create_run(&fixtures::new_run(p.id, issue)).await.unwrap());
        }
        // 2024-02-10: the month started at 2024-02-01T00:00Z.
        let now = fixtures::at(40 * 86_400);
        let month_start = fixtures::at(31 * 86_400);
        let record =
            |run: usize, at, cost| UsageRecord { cost_micros: cost, ..fixtures::usage_record(runs[run].id, at) };
        for u in [
            record(0, month_start, Some(1_500_000)),
            record(1, now, Some(250_000)),
            record(1, now, None),
            record(2, month_start - chrono::Duration::milliseconds(1), Some(9_000_000)), // January
            record(3, now, Some(4_000_000)),                                             // another project
        ] {
            store.record_usage(&u).await.unwrap();
        }

        assert_eq!(month_spend(&store, widgets.id, now).await.unwrap(), 1.75);
        assert_eq!(month_spend(&store, gadgets.id, now).await.unwrap(), 4.0);
        assert_eq!(month_spend(&store, fixtures::project_id(), now).await.unwrap(), 0.0, "nothing spent");
        assert_eq!((store.calls("spend"), store.calls("usage"), store.calls("runs")), (3, 0, 0), "no N+1");
    }
}
