//! The step journal: a record before each side effect, marked after it.
//!
//! Both writes are one statement each: a CTE locks the run row only if the
//! caller holds its lease (re-checked on the newest row version under
//! `READ COMMITTED`), and the journal write joins it, so a worker whose
//! lease was taken over writes nothing.
//!
//! `started` records go through the relaxed pool (they commit without
//! waiting for the WAL flush; see `store::relaxed_pool` for why losing one
//! in a server crash is safe); finishes wait for it.

use paid_core::{RunId, RunState, StepRecord, StepStatus, Timestamp};
use sqlx::{PgConnection, PgPool};

use crate::error::{OpError, OpResult};
use crate::leases::lease_lost;
use crate::rows::{self, json, step_columns};
use crate::runs;

pub(crate) async fn begin(
    pool: &PgPool,
    id: RunId,
    owner: &str,
    step: RunState,
    idempotency_key: Option<&str>,
    at: Timestamp,
) -> OpResult<StepRecord> {
    let row = sqlx::query(concat!(
        "WITH held AS (
             UPDATE runs SET step_seq = step_seq + 1
             WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > $3
             RETURNING id, step_seq
         )
         INSERT INTO steps (run_id, seq, step, idempotency_key, status, output, error, started_at, finished_at)
         SELECT id, step_seq, $4, $5, $6, 'null'::json, NULL, $3, NULL FROM held
         RETURNING ",
        step_columns!()
    ))
    .bind(id.0)
    .bind(owner)
    .bind(at)
    .bind(step.as_str())
    .bind(idempotency_key)
    .bind(rows::status_str(StepStatus::Started))
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => rows::step(&row),
        None => {
            runs::require(pool, id).await?;
            Err(lease_lost(id, owner))
        }
    }
}

/// In one statement: the journal's last record if it is `step` and done;
/// otherwise, if the caller holds the lease, a new `started` record.
pub(crate) async fn resume_or_begin(
    pool: &PgPool,
    id: RunId,
    owner: &str,
    step: RunState,
    idempotency_key: Option<&str>,
    at: Timestamp,
) -> OpResult<StepRecord> {
    let row = sqlx::query(concat!(
        "WITH last AS (
             SELECT seq FROM steps WHERE run_id = $1 AND step = $4 AND status = $7
               AND seq = (SELECT max(seq) FROM steps WHERE run_id = $1)
         ),
         held AS (
             UPDATE runs SET step_seq = step_seq + 1
             WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > $3 AND NOT EXISTS (SELECT 1 FROM last)
             RETURNING id, step_seq
         ),
         begun AS (
             INSERT INTO steps (run_id, seq, step, idempotency_key, status, output, error, started_at, finished_at)
             SELECT id, step_seq, $4, $5, $6, 'null'::json, NULL, $3, NULL FROM held
             RETURNING ",
        step_columns!(),
        "
         )
         SELECT * FROM begun
         UNION ALL
         SELECT ",
        step_columns!(),
        " FROM steps WHERE run_id = $1 AND seq = (SELECT seq FROM last)"
    ))
    .bind(id.0)
    .bind(owner)
    .bind(at)
    .bind(step.as_str())
    .bind(idempotency_key)
    .bind(rows::status_str(StepStatus::Started))
    .bind(rows::status_str(StepStatus::Done))
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => rows::step(&row),
        None => {
            runs::require(pool, id).await?;
            Err(lease_lost(id, owner))
        }
    }
}

/// Marks the latest record of `step` that is still `started`.
pub(crate) async fn finish(
    pool: &PgPool,
    id: RunId,
    owner: &str,
    step: RunState,
    result: Result<serde_json::Value, String>,
    at: Timestamp,
) -> OpResult<StepRecord> {
    let mut conn = pool.acquire().await?;
    match finish_on(&mut conn, id, owner, step, result, at).await? {
        Some(record) => Ok(record),
        None => Err(why_not_finished(pool, id, owner, step, at).await),
    }
}

/// The statement of [`finish`] on one connection (or transaction): `None`
/// when it changed nothing, which [`why_not_finished`] explains.
pub(crate) async fn finish_on(
    conn: &mut PgConnection,
    id: RunId,
    owner: &str,
    step: RunState,
    result: Result<serde_json::Value, String>,
    at: Timestamp,
) -> OpResult<Option<StepRecord>> {
    let (status, output, error) = match result {
        Ok(output) => (StepStatus::Done, json("step output", &output)?, None),
        Err(error) => (StepStatus::Failed, "null".to_string(), Some(json("step error", &error)?)),
    };
    let row = sqlx::query(concat!(
        "WITH held AS (
             SELECT id FROM runs WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > $3 FOR UPDATE
         ),
         target AS (
             SELECT s.run_id, s.seq FROM steps s, held
             WHERE s.run_id = held.id AND s.step = $4 AND s.status = $5
             ORDER BY s.seq DESC LIMIT 1
         )
         UPDATE steps s SET status = $6, output = $7::json, error = $8::json, finished_at = $3
         FROM target t WHERE s.run_id = t.run_id AND s.seq = t.seq
         RETURNING ",
        // Qualified: `target` has a run_id and seq too.
        "s.run_id, s.seq, s.step, s.idempotency_key, s.status, s.output::text, s.error::text, s.started_at, \
         s.finished_at"
    ))
    .bind(id.0)
    .bind(owner)
    .bind(at)
    .bind(step.as_str())
    .bind(rows::status_str(StepStatus::Started))
    .bind(rows::status_str(status))
    .bind(output)
    .bind(error)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(rows::step).transpose()
}

/// Why a finish changed nothing: the run is missing, the lease is not
/// held, or no record of `step` is `started`.
pub(crate) async fn why_not_finished(pool: &PgPool, id: RunId, owner: &str, step: RunState, at: Timestamp) -> OpError {
    let run = match runs::get(pool, id).await {
        Ok(run) => run,
        Err(e) => return e,
    };
    if !crate::leases::Holder::of(&run).holds(owner, at) {
        return lease_lost(id, owner);
    }
    OpError::Refused(paid_core::Error::NotFound { entity: "step", id: format!("{step} (started) of run {id}") })
}

pub(crate) async fn list(pool: &PgPool, id: RunId) -> OpResult<Vec<StepRecord>> {
    let all = sqlx::query(concat!("SELECT ", step_columns!(), " FROM steps WHERE run_id = $1 ORDER BY seq"))
        .bind(id.0)
        .fetch_all(pool)
        .await?;
    all.iter().map(rows::step).collect()
}
