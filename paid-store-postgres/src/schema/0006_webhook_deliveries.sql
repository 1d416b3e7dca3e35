-- Inbound deliveries (GitHub webhooks) already accepted, by key (the digest
-- of the signed body), so a replay is refused after a restart and by every
-- node sharing the database. Keys older than the replay window are dropped
-- as new ones are recorded.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    key          text PRIMARY KEY,
    received_at  timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS webhook_deliveries_by_age ON webhook_deliveries (received_at);
