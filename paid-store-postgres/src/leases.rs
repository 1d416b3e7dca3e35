//! Leases: claim, heartbeat, release.
//!
//! A lease is held while `now < lease_expires_at`. `now` is the caller's
//! clock (as in the port), so workers need roughly synchronized clocks: a
//! skew of `s` seconds shortens or lengthens leases by `s`.

use chrono::Duration;
use paid_core::{ClaimRequest, Run, RunId, Timestamp};
use sqlx::PgPool;

use crate::error::{OpError, OpResult};
use crate::rows::{self, run_columns};
use crate::runs;

/// Who holds a run's lease.
pub(crate) struct Holder<'a> {
    owner: Option<&'a str>,
    until: Option<Timestamp>,
}

impl<'a> Holder<'a> {
    pub(crate) fn of(run: &'a Run) -> Self {
        Self { owner: run.lease_owner.as_deref(), until: run.lease_expires_at }
    }

    /// Whether `owner` holds an unexpired lease at `now`.
    pub(crate) fn holds(&self, owner: &str, now: Timestamp) -> bool {
        self.owner == Some(owner) && self.until.is_some_and(|until| now < until)
    }
}

pub(crate) fn lease_lost(run: RunId, owner: &str) -> OpError {
    OpError::Refused(paid_core::Error::LeaseLost { run: run.to_string(), owner: owner.into() })
}

/// The parked states' names, bound as a `text[]` wherever SQL must leave
/// parked runs out: built from [`paid_core::RunState::parked`], never
/// spelled out in SQL.
pub(crate) fn parked_states() -> Vec<&'static str> {
    paid_core::RunState::parked().map(paid_core::RunState::as_str).collect()
}

/// How often a claim that lost the race for a project's last slot looks
/// again (the next look skips the full project).
const CLAIM_ATTEMPTS: usize = 4;

/// Leases the runnable run with the highest priority, then the oldest, then
/// the lowest id, in one statement: the sub-select locks the candidate with
/// `FOR UPDATE SKIP LOCKED`, so concurrent claimers take different runs
/// without waiting on each other.
///
/// With per-project limits, the candidate's project must have fewer active
/// leased runs than its `max_concurrent_runs`. The sub-select skips projects
/// that are full as of the statement's snapshot (cheap, possibly stale);
/// `paid_project_has_room` then checks the one project again under a
/// per-project advisory lock with a fresh snapshot, which makes the limit
/// exact under concurrency.
///
/// Parked runs ([`paid_core::RunState::is_parked`]) are never claimed, and
/// hold no lease, so they do not count against their project's limit.
///
/// The full projects are an array computed once (`<> ALL (ARRAY(…))`), not
/// a join: a join lets the planner read and sort every runnable run per
/// claim (it did, 100 times slower, on tables without statistics), where
/// the array keeps the index scan in claim order that stops at the first
/// free run.
pub(crate) async fn claim(pool: &PgPool, req: &ClaimRequest, project_limits: bool) -> OpResult<Option<Run>> {
    let until = req.now + req.lease;
    if !project_limits {
        let row = sqlx::query(concat!(
            "UPDATE runs SET lease_owner = $1, lease_expires_at = $2
             WHERE id = (
                 SELECT id FROM runs
                 WHERE finished_at IS NULL
                   AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= $3)
                   AND state <> ALL($4)
                 ORDER BY priority DESC, created_at, id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             RETURNING ",
            run_columns!()
        ))
        .bind(&req.owner)
        .bind(until)
        .bind(req.now)
        .bind(parked_states())
        .fetch_optional(pool)
        .await?;
        return row.as_ref().map(rows::run).transpose();
    }
    for _ in 0..CLAIM_ATTEMPTS {
        let claimed = sqlx::query(concat!(
            "WITH candidate AS (
                 SELECT r.id FROM runs r
                 WHERE r.finished_at IS NULL
                   AND (r.lease_owner IS NULL OR r.lease_expires_at IS NULL OR r.lease_expires_at <= $3)
                   AND r.state <> ALL($4)
                   AND r.project_id <> ALL (ARRAY(
                       SELECT p.id FROM projects p
                       WHERE p.max_concurrent_runs <= (
                           SELECT count(*) FROM runs l
                           WHERE l.project_id = p.id AND l.finished_at IS NULL
                             AND l.lease_owner IS NOT NULL AND l.lease_expires_at > $3
                       )
                   ))
                 ORDER BY r.priority DESC, r.created_at, r.id
                 LIMIT 1
                 FOR UPDATE OF r SKIP LOCKED
             ),
             leased AS (
                 UPDATE runs SET lease_owner = $1, lease_expires_at = $2
                 WHERE id = (SELECT id FROM candidate) AND paid_project_has_room(project_id, $3)
                 RETURNING ",
            run_columns!(),
            "
             )
             SELECT (SELECT count(*) FROM candidate) AS candidates, leased.* FROM (SELECT 1) one
             LEFT JOIN leased ON TRUE"
        ))
        .bind(&req.owner)
        .bind(until)
        .bind(req.now)
        .bind(parked_states())
        .fetch_one(pool)
        .await?;
        let candidates: i64 = sqlx::Row::try_get(&claimed, 0)?;
        if candidates == 0 {
            return Ok(None);
        }
        let id: Option<uuid::Uuid> = sqlx::Row::try_get(&claimed, 1)?;
        if id.is_some() {
            return rows::run_at(&claimed, 1).map(Some);
        }
        // Another worker took the project's last slot first; look again.
    }
    Ok(None)
}

pub(crate) async fn heartbeat(pool: &PgPool, id: RunId, owner: &str, lease: Duration, now: Timestamp) -> OpResult<()> {
    let renewed = sqlx::query(
        "UPDATE runs SET lease_expires_at = $3 WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > $4",
    )
    .bind(id.0)
    .bind(owner)
    .bind(now + lease)
    .bind(now)
    .execute(pool)
    .await?;
    if renewed.rows_affected() == 1 {
        return Ok(());
    }
    runs::require(pool, id).await?;
    Err(lease_lost(id, owner))
}

/// The recorded owner may always release (even after expiry); releasing an
/// unleased run does nothing; releasing someone else's lease fails. Returns
/// whether an active run became claimable.
pub(crate) async fn release(pool: &PgPool, id: RunId, owner: &str) -> OpResult<bool> {
    let released: Option<bool> = sqlx::query_scalar(
        "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2
         RETURNING finished_at IS NULL",
    )
    .bind(id.0)
    .bind(owner)
    .fetch_optional(pool)
    .await?;
    if let Some(active) = released {
        return Ok(active);
    }
    let holder: Option<Option<String>> =
        sqlx::query_scalar("SELECT lease_owner FROM runs WHERE id = $1").bind(id.0).fetch_optional(pool).await?;
    match holder {
        None => Err(runs::not_found(id)),
        Some(None) => Ok(false),
        Some(Some(_)) => Err(lease_lost(id, owner)),
    }
}
