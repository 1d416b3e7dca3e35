//! Leases: claim, heartbeat, release, and the check every lease-guarded
//! write makes.
//!
//! A lease is held while `now < lease_expires_at`.

use chrono::Duration;
use paid_core::{ClaimRequest, Run, RunId, Timestamp};
use rusqlite::{Connection, params};

use crate::error::OpError;
use crate::rows::{self, RUN_COLUMNS, millis};
use crate::runs;

/// Whether anyone holds an unexpired lease on `run` at `now`.
pub(crate) fn lease_held(run: &Run, now: Timestamp) -> bool {
    run.lease_owner.is_some() && run.lease_expires_at.is_some_and(|until| now < until)
}

/// Fails with `LeaseLost` unless `owner` holds an unexpired lease on `run`.
pub(crate) fn check_lease(run: &Run, owner: &str, now: Timestamp) -> Result<(), OpError> {
    if lease_held(run, now) && run.lease_owner.as_deref() == Some(owner) {
        Ok(())
    } else {
        Err(lease_lost(run.id, owner))
    }
}

fn lease_lost(run: RunId, owner: &str) -> OpError {
    OpError::Refused(paid_core::Error::LeaseLost { run: run.to_string(), owner: owner.into() })
}

/// Leases the runnable run with the highest priority, then the oldest, then
/// the lowest id, among projects below their `max_concurrent_runs`, in one
/// statement.
///
/// Parked runs ([`paid_core::RunState::is_parked`]) are never claimed; they
/// hold no lease, so they count for nothing either. A project's load is its
/// active runs holding an unexpired lease, so a run whose lease expired
/// (including one its own worker lost) counts for nothing and can be
/// claimed again. Writes are serialized (`BEGIN
/// IMMEDIATE`), so the limit is exact however many handles claim at once.
/// The full projects are computed once per statement (few projects, and
/// only leased runs are counted, through `runs_by_lease`), then the claim
/// order's index is walked to the first run outside them.
pub(crate) fn claim(c: &Connection, req: &ClaimRequest) -> Result<Option<Run>, OpError> {
    let now = millis(req.now);
    let parked = parked_states();
    let mut stmt = c.prepare_cached(&format!(
        "UPDATE runs SET lease_owner = ?1, lease_expires_at = ?2
         WHERE id = (
             SELECT id FROM runs
             WHERE finished_at IS NULL AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?3)
               AND state NOT IN ({parked})
               AND project_id NOT IN (
                   SELECT p.id FROM projects p
                   WHERE json_extract(p.config, '$.max_concurrent_runs') <= (
                       SELECT count(*) FROM runs l INDEXED BY runs_by_lease
                       WHERE l.lease_owner IS NOT NULL AND l.lease_expires_at > ?3
                         AND l.project_id = p.id AND l.finished_at IS NULL
                   )
               )
             ORDER BY priority DESC, created_at, id
             LIMIT 1
         )
         RETURNING {RUN_COLUMNS}"
    ))?;
    rows::first(&mut stmt, params![req.owner, now + req.lease.num_milliseconds(), now], rows::run)
}

/// The parked states as an SQL list (`'awaiting_choice', …`), from
/// [`paid_core::RunState::parked`]: the names are fixed identifiers.
fn parked_states() -> String {
    let quoted: Vec<String> = paid_core::RunState::parked().map(|s| format!("'{}'", s.as_str())).collect();
    quoted.join(", ")
}

pub(crate) fn heartbeat(
    c: &Connection,
    id: RunId,
    owner: &str,
    lease: Duration,
    now: Timestamp,
) -> Result<(), OpError> {
    let mut run = runs::get(c, id)?;
    check_lease(&run, owner, now)?;
    run.lease_expires_at = Some(now + lease);
    runs::save(c, &run)
}

/// The recorded owner may always release (even after expiry); releasing an
/// unleased run does nothing.
pub(crate) fn release(c: &Connection, id: RunId, owner: &str) -> Result<(), OpError> {
    let mut run = runs::get(c, id)?;
    match run.lease_owner.as_deref() {
        None => Ok(()),
        Some(holder) if holder == owner => {
            run.lease_owner = None;
            run.lease_expires_at = None;
            runs::save(c, &run)
        }
        Some(_) => Err(lease_lost(id, owner)),
    }
}
