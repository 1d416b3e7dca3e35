//! Inbound delivery keys (webhook replay protection) and poll leases.

use paid_core::Timestamp;
use sqlx::PgPool;

use crate::error::OpResult;

/// `Catalog::record_delivery` in one statement. Concurrent inserts of one
/// key serialize on its primary key: the loser's `DO UPDATE` finds the
/// winner's fresh row and changes nothing. Old keys are pruned with `SKIP
/// LOCKED`, so two recorders never wait on (or deadlock over) each other's
/// pruning.
pub(crate) async fn record(pool: &PgPool, key: &str, at: Timestamp, forget_before: Timestamp) -> OpResult<bool> {
    let done = sqlx::query(
        "WITH pruned AS (
             DELETE FROM webhook_deliveries WHERE key IN (
                 SELECT key FROM webhook_deliveries WHERE received_at < $3 AND key <> $1
                 FOR UPDATE SKIP LOCKED))
         INSERT INTO webhook_deliveries (key, received_at) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET received_at = excluded.received_at
         WHERE webhook_deliveries.received_at < $3",
    )
    .bind(key)
    .bind(at)
    .bind(forget_before)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `Catalog::claim_poll` in one statement: the row is taken when free,
/// expired, or already `owner`'s. Concurrent claims serialize on the
/// primary key; a loser's `DO UPDATE` sees the winner's lease and changes
/// nothing.
pub(crate) async fn claim_poll(
    pool: &PgPool,
    project: paid_core::ProjectId,
    owner: &str,
    until: Timestamp,
    now: Timestamp,
) -> OpResult<bool> {
    let done = sqlx::query(
        "INSERT INTO poll_leases (project_id, owner, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (project_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
         WHERE poll_leases.owner = excluded.owner OR poll_leases.expires_at <= $4",
    )
    .bind(project.0)
    .bind(owner)
    .bind(until)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
