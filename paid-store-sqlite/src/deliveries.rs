//! Inbound delivery keys (webhook replay protection) and poll leases.

use paid_core::Timestamp;
use rusqlite::{Connection, params};

use crate::error::OpError;
use crate::rows::millis;

/// `Catalog::record_delivery`, inside the caller's `BEGIN IMMEDIATE`
/// transaction (so concurrent recorders of one key queue on the lock).
pub(crate) fn record(c: &Connection, key: &str, at: Timestamp, forget_before: Timestamp) -> Result<bool, OpError> {
    let cutoff = millis(forget_before);
    c.prepare_cached("DELETE FROM webhook_deliveries WHERE received_at < ?1 AND key <> ?2")?
        .execute(params![cutoff, key])?;
    // A key recorded before the cutoff is taken again (the window passed).
    let changed = c
        .prepare_cached(
            "INSERT INTO webhook_deliveries (key, received_at) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET received_at = excluded.received_at
             WHERE webhook_deliveries.received_at < ?3",
        )?
        .execute(params![key, millis(at), cutoff])?;
    Ok(changed == 1)
}

/// `Catalog::claim_poll`, inside the caller's `BEGIN IMMEDIATE` transaction:
/// the row is taken when free, expired, or already `owner`'s.
pub(crate) fn claim_poll(
    c: &Connection,
    project: paid_core::ProjectId,
    owner: &str,
    until: Timestamp,
    now: Timestamp,
) -> Result<bool, OpError> {
    let changed = c
        .prepare_cached(
            "INSERT INTO poll_leases (project_id, owner, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (project_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE poll_leases.owner = excluded.owner OR poll_leases.expires_at <= ?4",
        )?
        .execute(params![project.to_string(), owner, millis(until), millis(now)])?;
    Ok(changed == 1)
}
