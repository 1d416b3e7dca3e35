-- Who polls each project: one node of a cluster at a time, until its lease
-- runs out (Catalog::claim_poll). Rows of deleted projects are harmless.
CREATE TABLE IF NOT EXISTS poll_leases (
    project_id  TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
