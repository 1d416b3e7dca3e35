//! Inbound delivery keys (webhook replay protection).

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
