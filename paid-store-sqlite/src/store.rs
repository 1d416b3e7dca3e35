//! [`SqliteStore`]: opening the database, running calls off the async
//! runtime, and the [`Store`] implementation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use paid_core::store::prelude::*;
use paid_core::{
    AppendLog, AuditEvent, ClaimRequest, CostQuery, DailyCost, LogAppend, LogChunk, ModelDecision, NewRun, Outcome,
    Project, ProjectId, Run, RunFilter, RunId, RunPatch, RunState, Spend, SpendQuery, StepRecord, Timestamp,
    TrackedIssue, Transition, UsageRecord,
};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::OpError;
use crate::{Error, deliveries, journal, leases, logs, migrations, projects, records, runs, spend};

/// A [`Store`] on one SQLite database: a file in WAL mode, or memory.
///
/// Each handle owns one connection. Every call runs on tokio's blocking
/// pool, so the async runtime never waits on SQLite; writes run in one
/// `BEGIN IMMEDIATE` transaction each. Several handles (or processes) may
/// open the same file: writers queue on SQLite's lock for up to
/// [`SqliteStore::BUSY_TIMEOUT`], after which the call fails with a
/// retryable error. Cloning a handle shares its connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// How long a call waits for another connection's write lock.
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

    /// Opens (creating if needed) the database file at `path`, switches it
    /// to WAL mode and applies pending schema migrations.
    ///
    /// This blocks while it does so; from async code, call it before the
    /// runtime starts or inside `tokio::task::spawn_blocking`. The directory
    /// must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let open_err = |source| Error::Open { path: path.to_path_buf(), source };
        let mut conn = Connection::open(path).map_err(open_err)?;
        configure(&conn, true).map_err(open_err)?;
        migrations::apply(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: Some(path.to_path_buf()) })
    }

    /// A fresh database in memory, private to this handle and its clones.
    pub fn open_in_memory() -> Result<Self, Error> {
        let open_err = |source| Error::Open { path: PathBuf::from(":memory:"), source };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        configure(&conn, false).map_err(open_err)?;
        migrations::apply(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: None })
    }

    /// The database file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> paid_core::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, OpError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let result = tokio::task::spawn_blocking(move || {
            // A panic mid-call rolled its transaction back as it unwound, so
            // the connection is still sound.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await;
        match result {
            Ok(r) => r.map_err(Into::into),
            Err(e) => Err(Error::Task(e).into()),
        }
    }

    /// Runs a read.
    pub(crate) async fn read<T, F>(&self, f: F) -> paid_core::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, OpError> + Send + 'static,
    {
        self.call(move |conn| f(conn)).await
    }

    /// Runs a write in one `BEGIN IMMEDIATE` transaction, committed only if
    /// `f` succeeds.
    pub(crate) async fn write<T, F>(&self, f: F) -> paid_core::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, OpError> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }
}

/// Per-connection settings. WAL lets readers run beside the one writer, and
/// `synchronous = NORMAL` is durable across application crashes in WAL mode.
fn configure(conn: &Connection, file: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(SqliteStore::BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    if file {
        // Switching a new file to WAL takes an exclusive lock and SQLite does
        // not run the busy handler for it, so handles opening the same new
        // file at once can get SQLITE_BUSY here: wait it out like any lock.
        let deadline = std::time::Instant::now() + SqliteStore::BUSY_TIMEOUT;
        let mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite refused WAL mode; concurrent readers will wait on writers");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(())
}

#[async_trait]
impl Catalog for SqliteStore {
    async fn put_project(&self, project: &Project) -> paid_core::Result<()> {
        let project = project.clone();
        self.write(move |c| projects::put(c, &project)).await
    }

    async fn project(&self, id: ProjectId) -> paid_core::Result<Project> {
        self.read(move |c| projects::get(c, id)).await
    }

    async fn projects(&self) -> paid_core::Result<Vec<Project>> {
        self.read(projects::list).await
    }

    async fn delete_project(&self, id: ProjectId) -> paid_core::Result<()> {
        self.write(move |c| projects::delete(c, id)).await
    }

    async fn put_issue(&self, issue: &TrackedIssue) -> paid_core::Result<()> {
        let issue = issue.clone();
        self.write(move |c| projects::put_issue(c, &issue)).await
    }

    async fn issue(&self, project: ProjectId, number: u64) -> paid_core::Result<TrackedIssue> {
        self.read(move |c| projects::issue(c, project, number)).await
    }

    async fn issues(&self, project: ProjectId) -> paid_core::Result<Vec<TrackedIssue>> {
        self.read(move |c| projects::issues(c, project)).await
    }

    async fn pin_author(&self, project: ProjectId, login: &str, user_id: u64, at: Timestamp) -> paid_core::Result<u64> {
        let login = login.to_string();
        self.write(move |c| projects::pin_author(c, project, &login, user_id, at)).await
    }

    async fn author_pins(&self, project: ProjectId) -> paid_core::Result<Vec<paid_core::AuthorPin>> {
        self.read(move |c| projects::author_pins(c, project)).await
    }

    async fn record_delivery(&self, key: &str, at: Timestamp, forget_before: Timestamp) -> paid_core::Result<bool> {
        let key = key.to_string();
        self.write(move |c| deliveries::record(c, &key, at, forget_before)).await
    }

    async fn claim_poll(
        &self,
        project: ProjectId,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> paid_core::Result<bool> {
        let owner = owner.to_string();
        self.write(move |c| deliveries::claim_poll(c, project, &owner, until, now)).await
    }
}

#[async_trait]
impl Runs for SqliteStore {
    async fn create_run(&self, run: &NewRun) -> paid_core::Result<Run> {
        let run = run.clone();
        self.write(move |c| runs::create(c, &run)).await
    }

    async fn run(&self, id: RunId) -> paid_core::Result<Run> {
        self.read(move |c| runs::get(c, id)).await
    }

    async fn runs(&self, filter: &RunFilter) -> paid_core::Result<Vec<Run>> {
        let filter = filter.clone();
        self.read(move |c| runs::list(c, &filter)).await
    }

    async fn transition(&self, t: &Transition) -> paid_core::Result<Run> {
        let t = t.clone();
        self.write(move |c| runs::transition(c, &t)).await
    }

    async fn patch_run(&self, id: RunId, owner: &str, patch: &RunPatch, at: Timestamp) -> paid_core::Result<Run> {
        let (owner, patch) = (owner.to_string(), patch.clone());
        self.write(move |c| runs::patch(c, id, &owner, &patch, at)).await
    }

    async fn request_cancel(&self, id: RunId, at: Timestamp) -> paid_core::Result<Run> {
        self.write(move |c| runs::request_cancel(c, id, at)).await
    }

    async fn cancel_requested(&self, id: RunId) -> paid_core::Result<bool> {
        self.read(move |c| runs::cancel_requested(c, id)).await
    }

    async fn claim(&self, req: &ClaimRequest) -> paid_core::Result<Option<Run>> {
        let req = req.clone();
        self.write(move |c| leases::claim(c, &req)).await
    }

    async fn heartbeat(
        &self,
        id: RunId,
        owner: &str,
        lease: chrono::Duration,
        now: Timestamp,
    ) -> paid_core::Result<()> {
        let owner = owner.to_string();
        self.write(move |c| leases::heartbeat(c, id, &owner, lease, now)).await
    }

    async fn release(&self, id: RunId, owner: &str) -> paid_core::Result<()> {
        let owner = owner.to_string();
        self.write(move |c| leases::release(c, id, &owner)).await
    }
}

#[async_trait]
impl Journal for SqliteStore {
    async fn begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> paid_core::Result<StepRecord> {
        let (owner, key) = (owner.to_string(), idempotency_key.map(str::to_string));
        self.write(move |c| journal::begin(c, id, &owner, step, key.as_deref(), at)).await
    }

    async fn finish_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        result: Result<serde_json::Value, String>,
        at: Timestamp,
    ) -> paid_core::Result<StepRecord> {
        let owner = owner.to_string();
        self.write(move |c| journal::finish(c, id, &owner, step, result, at)).await
    }

    async fn steps(&self, id: RunId) -> paid_core::Result<Vec<StepRecord>> {
        self.read(move |c| journal::list(c, id)).await
    }

    async fn resume_or_begin_step(
        &self,
        id: RunId,
        owner: &str,
        step: RunState,
        idempotency_key: Option<&str>,
        at: Timestamp,
    ) -> paid_core::Result<StepRecord> {
        let (owner, key) = (owner.to_string(), idempotency_key.map(str::to_string));
        self.write(move |c| journal::resume_or_begin(c, id, &owner, step, key.as_deref(), at)).await
    }

    async fn finish_step_and_transition(
        &self,
        t: &Transition,
        result: Result<serde_json::Value, String>,
    ) -> paid_core::Result<Run> {
        let t = t.clone();
        self.write(move |c| {
            journal::finish(c, t.run_id, &t.owner, t.from, result, t.at)?;
            runs::transition(c, &t)
        })
        .await
    }
}

#[async_trait]
impl RunLog for SqliteStore {
    async fn append_log(&self, req: &AppendLog<'_>) -> paid_core::Result<LogAppend> {
        let (run_id, stream, text, cap_bytes, at) =
            (req.run_id, req.stream, req.text.to_string(), req.cap_bytes, req.at);
        self.write(move |c| logs::append(c, &AppendLog { run_id, stream, text: &text, cap_bytes, at })).await
    }

    async fn logs(&self, id: RunId, after: u64) -> paid_core::Result<Vec<LogChunk>> {
        self.read(move |c| logs::after(c, id, after)).await
    }

    async fn prune_logs(&self, finished_before: Timestamp) -> paid_core::Result<u64> {
        self.write(move |c| logs::prune(c, finished_before)).await
    }
}

#[async_trait]
impl Ledger for SqliteStore {
    async fn record_usage(&self, usage: &UsageRecord) -> paid_core::Result<()> {
        let usage = usage.clone();
        self.write(move |c| records::record_usage(c, &usage)).await
    }

    async fn usage(&self, id: RunId) -> paid_core::Result<Vec<UsageRecord>> {
        self.read(move |c| records::usage(c, id)).await
    }

    async fn spend(&self, req: &SpendQuery) -> paid_core::Result<Vec<Spend>> {
        let req = req.clone();
        self.read(move |c| spend::spend(c, &req)).await
    }

    async fn daily_costs(&self, req: &CostQuery) -> paid_core::Result<Vec<DailyCost>> {
        let req = req.clone();
        self.read(move |c| spend::daily_costs(c, &req)).await
    }

    async fn record_decision(&self, decision: &ModelDecision) -> paid_core::Result<()> {
        let decision = decision.clone();
        self.write(move |c| records::record_decision(c, &decision)).await
    }

    async fn decision(&self, id: RunId) -> paid_core::Result<Option<ModelDecision>> {
        self.read(move |c| records::decision(c, id)).await
    }

    async fn record_outcome(&self, outcome: &Outcome) -> paid_core::Result<()> {
        let outcome = outcome.clone();
        self.write(move |c| records::record_outcome(c, &outcome)).await
    }

    async fn outcomes(&self, project: ProjectId) -> paid_core::Result<Vec<Outcome>> {
        self.read(move |c| records::outcomes(c, project)).await
    }
}

#[async_trait]
impl Audit for SqliteStore {
    async fn audit(&self, event: &AuditEvent) -> paid_core::Result<()> {
        let event = event.clone();
        self.write(move |c| records::audit(c, &event)).await
    }

    async fn audit_events(&self, project: Option<ProjectId>) -> paid_core::Result<Vec<AuditEvent>> {
        self.read(move |c| records::audit_events(c, project)).await
    }
}
