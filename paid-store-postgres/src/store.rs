//! [`PgStore`]: connecting, migrating, and the [`Store`] implementation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paid_core::store::prelude::*;
use paid_core::{
    AppendLog, AuditEvent, ClaimRequest, CostQuery, DailyCost, LogAppend, LogChunk, ModelDecision, NewRun, Outcome,
    Project, ProjectId, Run, RunFilter, RunId, RunPatch, RunState, Spend, SpendQuery, StepRecord, Timestamp,
    TrackedIssue, Transition, UsageRecord,
};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::notify::{self, Notifier, Wake, WorkListener};
use crate::options::describe;
use crate::{Error, PgStoreOptions, deliveries, journal, leases, logs, migrations, projects, records, runs, spend};

/// A [`Store`] on PostgreSQL, for many workers sharing one database.
///
/// Cheap to clone: clones share the connection pool and the wake-up
/// listener. Every call is one statement (or, for `delete_project`, one
/// short transaction), so no call holds a lock across round trips. Workers claim runs with `FOR UPDATE SKIP LOCKED` and wait for work with
/// [`PgStore::work_listener`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    relaxed_pool: PgPool,
    listen_pool: PgPool,
    notify_pool: PgPool,
    schema: Arc<str>,
    channel: Arc<str>,
    target: Arc<str>,
    project_limits: bool,
    notifier: Arc<Notifier>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .field("project_limits", &self.project_limits)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` with the default [`PgStoreOptions`], applying
    /// pending migrations to the `public` schema.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(PgStoreOptions::new(url)).await
    }

    /// Connects with `options`: creates the schema if it is missing and
    /// applies pending migrations (safe when several workers start at once),
    /// then opens the pool. Fails with [`Error::Connect`] when the server
    /// cannot be reached.
    pub async fn connect_with(options: PgStoreOptions) -> Result<Self, Error> {
        let connect = options.connect_options()?;
        let target = describe(&connect);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections_value())
            .min_connections(options.min_connections_value())
            .acquire_timeout(options.acquire_timeout_value())
            .test_before_acquire(options.test_before_acquire_value())
            .connect_lazy_with(connect.clone());
        let schema = options.schema_name().to_string();
        {
            let mut conn = pool.acquire().await.map_err(|source| Error::Connect { target: target.clone(), source })?;
            if options.migrate_on() {
                migrations::apply(&mut conn, &schema, true).await?;
            } else {
                let found = migrations::current(&mut conn).await?;
                if found != migrations::SCHEMA_VERSION {
                    return Err(Error::Config {
                        what: "migrate",
                        message: format!(
                            "schema {schema} is at version {found}, this build needs {}; connect once with \
                             migrations on",
                            migrations::SCHEMA_VERSION
                        ),
                    });
                }
            }
        }
        Ok(Self {
            relaxed_pool: relaxed_pool(connect.clone(), &options),
            notify_pool: notify_pool(connect.clone(), options.acquire_timeout_value()),
            listen_pool: listen_pool(connect, options.acquire_timeout_value()),
            channel: format!("paid_work:{schema}").into(),
            schema: schema.into(),
            target: target.into(),
            project_limits: options.project_limits_on(),
            notifier: Arc::new(Notifier::default()),
            pool,
        })
    }

    /// The connection pool, for queries of your own.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The `LISTEN` channel that announces work: `paid_work:<schema>`.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A [`WorkListener`] that wakes when a run is queued, a lease is
    /// released, a run ends or parks, or a parked run is moved on. Starts the store's listener (one connection
    /// of its own) on first use; fails if it cannot `LISTEN` then. Once
    /// started, it reconnects by itself.
    ///
    /// ```no_run
    /// # async fn worker(store: paid_store_postgres::PgStore) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let mut work = store.work_listener().await?;
    /// loop {
    ///     // claim and drive runs until none is left, then:
    ///     work.wait(Duration::from_secs(5)).await; // a NOTIFY, or the poll interval
    /// }
    /// # }
    /// ```
    pub async fn work_listener(&self) -> Result<WorkListener, Error> {
        self.notifier.listener(&self.listen_pool, &self.channel).await
    }

    /// Waits until work may have appeared or `timeout` passes. A shortcut
    /// for one wait on a fresh [`PgStore::work_listener`]; a worker that
    /// loops should keep one listener, which also catches notifications that
    /// arrive between its waits.
    pub async fn wait_for_work(&self, timeout: Duration) -> Result<Wake, Error> {
        Ok(self.work_listener().await?.wait(timeout).await)
    }

    /// Drops the store's schema with everything in it. For tests that made
    /// a schema of their own.
    pub async fn drop_schema(self) -> Result<(), Error> {
        if self.schema.as_ref() == "public" {
            return Err(Error::Config { what: "schema", message: "refusing to drop the public schema".into() });
        }
        // The name was validated as a plain lowercase identifier.
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)))
            .execute(&self.pool)
            .await?;
        self.close().await;
        Ok(())
    }

    /// Stops the wake-up listener and closes the pools, waiting for
    /// connections in use to come back.
    pub async fn close(&self) {
        self.notifier.stop().await;
        self.listen_pool.close().await;
        self.notify_pool.close().await;
        self.relaxed_pool.close().await;
        self.pool.close().await;
    }
}

impl PgStore {
    /// Whether `t`, once applied, makes work claimable: a run left a parked
    /// state (unleased, in a state a worker claims), or, with project
    /// limits, a run ended or parked and so gave up its project's slot.
    fn announces(&self, t: &Transition) -> bool {
        t.from.is_parked() || (self.project_limits && (t.to.is_terminal() || t.to.is_parked()))
    }
}

/// Connections for `NOTIFY` alone, committing without waiting for a WAL
/// flush: a notification is not durable anyway, and a notifying commit holds
/// a database-wide lock for as long as it waits (see [`crate::notify`]).
fn notify_pool(connect: PgConnectOptions, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(connect.options([("synchronous_commit", "off")]))
}

/// Connections for writes whose loss in a *server* crash is harmless, which
/// commit without waiting for the WAL flush (`synchronous_commit = off`):
/// log appends (output a crash cuts short anyway) and the journal's
/// `started` records. A clean restart loses nothing; a crash loses at most
/// the last few hundred milliseconds of them, and never a later durable
/// write's predecessors (the WAL is flushed in order: a step's durable
/// finish makes its `started` record durable too).
///
/// A lost `started` record is the same as a worker that crashed just
/// before journaling the step: whoever drives the run next begins the step
/// again, under the same idempotency key (the engine derives keys from the
/// run, never from the journal), and no engine decision reads a `started`
/// record. A *worker* crash loses nothing: the commit is already in the
/// server's WAL buffers.
///
/// Usage records are money: they seed the proxy's budgets after a restart,
/// so they wait for the flush (the proxy writes them off the request path).
/// So do transitions, leases and heartbeats (which share no pool with bulk
/// log appends, so a busy log cannot starve them), step finishes (a
/// finished side effect is never forgotten), decisions, outcomes and the
/// audit trail.
fn relaxed_pool(connect: PgConnectOptions, options: &PgStoreOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections((options.max_connections_value() / 4).max(2))
        .acquire_timeout(options.acquire_timeout_value())
        .test_before_acquire(options.test_before_acquire_value())
        .connect_lazy_with(connect.options([("synchronous_commit", "off")]))
}

/// One connection, kept apart from the main pool, for `LISTEN`.
fn listen_pool(connect: PgConnectOptions, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(connect)
}

#[async_trait]
impl Catalog for PgStore {
    async fn put_project(&self, project: &Project) -> paid_core::Result<()> {
        Ok(projects::put(&self.pool, project).await?)
    }

    async fn project(&self, id: ProjectId) -> paid_core::Result<Project> {
        Ok(projects::get(&self.pool, id).await?)
    }

    async fn projects(&self) -> paid_core::Result<Vec<Project>> {
        Ok(projects::list(&self.pool).await?)
    }

    async fn delete_project(&self, id: ProjectId) -> paid_core::Result<()> {
        Ok(projects::delete(&self.pool, id).await?)
    }

    async fn put_issue(&self, issue: &TrackedIssue) -> paid_core::Result<()> {
        Ok(projects::put_issue(&self.pool, issue).await?)
    }

    async fn issue(&self, project: ProjectId, number: u64) -> paid_core::Result<TrackedIssue> {
        Ok(projects::issue(&self.pool, project, number).await?)
    }

    async fn issues(&self, project: ProjectId) -> paid_core::Result<Vec<TrackedIssue>> {
        Ok(projects::issues(&self.pool, project).await?)
    }

    async fn pin_author(&self, project: ProjectId, login: &str, user_id: u64, at: Timestamp) -> paid_core::Result<u64> {
        Ok(projects::pin_author(&self.pool, project, login, user_id, at).await?)
    }

    async fn author_pins(&self, project: ProjectId) -> paid_core::Result<Vec<paid_core::AuthorPin>> {
        Ok(projects::author_pins(&self.pool, project).await?)
    }

    async fn record_delivery(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> paid_core::Result<bool> {
        Ok(deliveries::record(&self.pool, key, at, forget_before).await?)
    }

    async fn claim_poll(
        &self,
        project: ProjectId,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> paid_core::Result<bool> {
        Ok(deliveries::claim_poll(&self.pool, project, owner, until, now).await?)
    }
}

#[async_trait]
impl Runs for PgStore {
    async fn create_run(&self, run: &NewRun) -> paid_core::Result<Run> {
        let run = runs::create(&self.pool, run).await?;
        notify::announce(&self.notify_pool, &self.channel).await;
        Ok(run)
    }

    async fn run(&self, id: RunId) -> paid_core::Result<Run> {
        Ok(runs::get(&self.pool, id).await?)
    }

    async fn runs(&self, filter: &RunFilter) -> paid_core::Result<Vec<Run>> {
        Ok(runs::list(&self.pool, filter).await?)
    }

    async fn transition(&self, t: &Transition) -> paid_core::Result<Run> {
        let run = runs::transition(&self.pool, t).await?;
        if self.announces(t) {
            notify::announce(&self.notify_pool, &self.channel).await;
        }
        Ok(run)
    }

    async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> paid_core::Result<Run> {
        Ok(runs::patch(&self.pool, id, owner, patch, at).await?)
    }

    async fn request_cancel(&self, id: RunId, at: Timestamp) -> paid_core::Result<Run> {
        let run = runs::request_cancel(&self.pool, id, at).await?;
        if !run.state.is_terminal() && run.lease_owner.is_none() {
            // A parked run went to cleanup: a worker may claim it.
            notify::announce(&self.notify_pool, &self.channel).await;
        }
        Ok(run)
    }

    async fn cancel_requested(&self, id: RunId) -> paid_core::Result<bool> {
        Ok(runs::cancel_requested(&self.pool, id).await?)
    }

    async fn claim(&self, req: &ClaimRequest) -> paid_core::Result<Option<Run>> {
        Ok(leases::claim(&self.pool, req, self.project_limits).await?)
    }

    async fn heartbeat(
        &self,
        id: RunId,
        owner: &str,
        lease: chrono::Duration,
        now: Timestamp,
    ) -> paid_core::Result<()> {
        Ok(leases::heartbeat(&self.pool, id, owner, lease, now).await?)
    }

    async fn release(&self, id: RunId, owner: &str) -> paid_core::Result<()> {
        if leases::release(&self.pool, id, owner).await? {
            notify::announce(&self.notify_pool, &self.channel).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Journal for PgStore {
    async fn begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> paid_core::Result<StepRecord> {
        Ok(journal::begin(&self.relaxed_pool, id, owner, step, idempotency_key, at).await?)
    }

    async fn finish_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        result: Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> paid_core::Result<StepRecord> {
        Ok(journal::finish(&self.pool, id, owner, step, result, at).await?)
    }

    async fn steps(&self, id: RunId) -> paid_core::Result<Vec<StepRecord>> {
        Ok(journal::list(&self.pool, id).await?)
    }

    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> paid_core::Result<StepRecord> {
        Ok(journal::resume_or_begin(&self.relaxed_pool, id, owner, step, idempotency_key, at).await?)
    }

    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        result: Result<serde_json::Value, String>,
    ) -> paid_core::Result<Run> {
        let run = runs::finish_and_transition(&self.pool, t, result).await?;
        if self.announces(t) {
            notify::announce(&self.notify_pool, &self.channel).await;
        }
        Ok(run)
    }
}

#[async_trait]
impl RunLog for PgStore {
    async fn append_log(&self, req: &AppendLog<'_>) -> paid_core::Result<LogAppend> {
        Ok(logs::append(&self.relaxed_pool, req).await?)
    }

    async fn logs(&self, id: RunId, after: u64) -> paid_core::Result<Vec<LogChunk>> {
        Ok(logs::after(&self.pool, id, after).await?)
    }

    async fn prune_logs(&self, finished_before: Timestamp) -> paid_core::Result<u64> {
        Ok(logs::prune(&self.pool, finished_before).await?)
    }
}

#[async_trait]
impl Ledger for PgStore {
    async fn record_usage(&self, usage: &UsageRecord) -> paid_core::Result<()> {
        Ok(records::record_usage(&self.pool, usage).await?)
    }

    async fn usage(&self, id: RunId) -> paid_core::Result<Vec<UsageRecord>> {
        Ok(records::usage(&self.pool, id).await?)
    }

    async fn spend(&self, req: &SpendQuery) -> paid_core::Result<Vec<Spend>> {
        Ok(spend::spend(&self.pool, req).await?)
    }

    async fn daily_costs(&self, req: &CostQuery) -> paid_core::Result<Vec<DailyCost>> {
        Ok(spend::daily_costs(&self.pool, req).await?)
    }

    async fn record_decision(&self, decision: &ModelDecision) -> paid_core::Result<()> {
        Ok(records::record_decision(&self.pool, decision).await?)
    }

    async fn decision(&self, id: RunId) -> paid_core::Result<Option<ModelDecision>> {
        Ok(records::decision(&self.pool, id).await?)
    }

    async fn record_outcome(&self, outcome: &Outcome) -> paid_core::Result<()> {
        Ok(records::record_outcome(&self.pool, outcome).await?)
    }

    async fn outcomes(&self, project: ProjectId) -> paid_core::Result<Vec<Outcome>> {
        Ok(records::outcomes(&self.pool, project).await?)
    }
}

#[async_trait]
impl Audit for PgStore {
    async fn audit(&self, event: &AuditEvent) -> paid_core::Result<()> {
        Ok(records::audit(&self.pool, event).await?)
    }

    async fn audit_events(&self, project: Option<ProjectId>) -> paid_core::Result<Vec<AuditEvent>> {
        Ok(records::audit_events(&self.pool, project).await?)
    }
}
