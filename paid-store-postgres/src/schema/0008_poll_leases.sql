-- Who polls each project: one node of a cluster at a time, until its lease
-- runs out (Catalog::claim_poll). Rows of deleted projects are harmless.
CREATE TABLE IF NOT EXISTS poll_leases (
    project_id  uuid PRIMARY KEY,
    owner       text NOT NULL,
    expires_at  timestamptz NOT NULL
);
