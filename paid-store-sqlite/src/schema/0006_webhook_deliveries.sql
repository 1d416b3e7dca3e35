-- Inbound deliveries (GitHub webhooks) already accepted, by key (the digest
-- of the signed body), so a replay is refused after a restart and by every
-- process sharing the database. Keys older than the replay window are
-- dropped as new ones are recorded.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    key          TEXT PRIMARY KEY,
    received_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS webhook_deliveries_by_age ON webhook_deliveries (received_at);
