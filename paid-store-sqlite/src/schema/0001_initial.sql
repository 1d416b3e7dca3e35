-- The initial schema.
--
-- Ids are hyphenated UUID text, times are Unix milliseconds, enums are their
-- snake_case names. Settings that queries never look inside are JSON text.
-- A run is active exactly while `finished_at IS NULL`; the store sets
-- `finished_at` in the same statement that moves a run to an end state.

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    repo_owner  TEXT NOT NULL,
    repo_name   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    config      TEXT NOT NULL               -- JSON: every other Project field
) STRICT;

CREATE INDEX projects_by_age ON projects (created_at, id);

CREATE TABLE issues (
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    author      TEXT NOT NULL,
    labels      TEXT NOT NULL,              -- JSON array of strings
    state       TEXT NOT NULL,
    url         TEXT NOT NULL,
    trusted     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (project_id, number)
) STRICT, WITHOUT ROWID;

CREATE TABLE runs (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    issue_number      INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    state             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    branch            TEXT,
    model             TEXT,
    pr_url            TEXT,
    iterations        INTEGER NOT NULL DEFAULT 0,
    failure           TEXT,                 -- JSON Failure
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    log_bytes         INTEGER NOT NULL DEFAULT 0,
    log_truncated     INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    finished_at       INTEGER
) STRICT;

-- At most one active run per issue and kind.
CREATE UNIQUE INDEX runs_one_active ON runs (project_id, issue_number, kind) WHERE finished_at IS NULL;
-- The claim query: highest priority, then oldest, among active runs.
CREATE INDEX runs_claimable ON runs (priority DESC, created_at, id) WHERE finished_at IS NULL;
CREATE INDEX runs_by_issue ON runs (project_id, issue_number, created_at);
CREATE INDEX runs_by_age ON runs (created_at, id);
CREATE INDEX runs_by_lease ON runs (lease_owner, lease_expires_at);

CREATE TABLE steps (
    run_id           TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    step             TEXT NOT NULL,
    idempotency_key  TEXT,
    status           TEXT NOT NULL,
    output           TEXT NOT NULL,         -- JSON
    error            TEXT,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE run_logs (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    stream  TEXT NOT NULL,
    text    TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE usage_records (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    provider     TEXT NOT NULL,
    model        TEXT NOT NULL,
    input        INTEGER NOT NULL,
    cache_read   INTEGER NOT NULL,
    cache_write  INTEGER NOT NULL,
    output       INTEGER NOT NULL,
    reasoning    INTEGER NOT NULL,
    cost_micros  INTEGER,
    latency_ms   INTEGER NOT NULL,
    status       TEXT NOT NULL,
    at           INTEGER NOT NULL
) STRICT;

CREATE INDEX usage_by_run ON usage_records (run_id, at, id);

CREATE TABLE model_decisions (
    run_id         TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    selector       TEXT NOT NULL,
    reasoning      TEXT NOT NULL,
    candidates     TEXT NOT NULL,           -- JSON array of ModelCandidate
    budget_micros  INTEGER,
    complexity     REAL,
    at             INTEGER NOT NULL
) STRICT;

CREATE TABLE outcomes (
    run_id         TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    project_id     TEXT NOT NULL,           -- goes with the run
    pr_merged      INTEGER,
    ci_passed      INTEGER,
    lint_clean     INTEGER,
    tests_passing  INTEGER,
    human_vote     INTEGER,
    iterations     INTEGER NOT NULL,
    cost_micros    INTEGER,
    quality_score  REAL,
    recorded_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX outcomes_by_project ON outcomes (project_id, recorded_at);

-- No foreign key: the audit trail outlives what it is about.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    project_id  TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    details     TEXT NOT NULL               -- JSON
) STRICT;

CREATE INDEX audit_by_time ON audit_events (at, id);
CREATE INDEX audit_by_project ON audit_events (project_id, at, id);
