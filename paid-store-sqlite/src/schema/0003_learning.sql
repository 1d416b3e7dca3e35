-- The learning loop (paid_core::ports::learning::LearningStore): prompts and
-- their immutable versions, experiments, sticky assignments, arm samples and
-- scored runs. Ties in "oldest first" lists fall back to rowid, which grows
-- with every insert (a replaced sample or score is a new row).
CREATE TABLE prompts (
    slug             TEXT PRIMARY KEY,
    description      TEXT NOT NULL,
    active_version   TEXT,
    last_evolved_at  INTEGER,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE prompt_versions (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL REFERENCES prompts (slug),
    version     INTEGER NOT NULL CHECK (version >= 0),
    template    TEXT NOT NULL,
    variables   TEXT NOT NULL,  -- JSON array of dotted paths
    parent      TEXT REFERENCES prompt_versions (id),
    created_by  TEXT NOT NULL,  -- JSON
    created_at  INTEGER NOT NULL,
    UNIQUE (slug, version)
) STRICT;

-- The experiment itself is JSON; the columns are what queries filter on.
CREATE TABLE experiments (
    id          TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    active      INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at  INTEGER NOT NULL,
    body        TEXT NOT NULL
) STRICT;
CREATE INDEX experiments_by_subject ON experiments (subject, created_at);

CREATE TABLE experiment_assignments (
    experiment_id  TEXT NOT NULL REFERENCES experiments (id),
    issue_key      TEXT NOT NULL,
    arm            TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    assigned_at    INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, issue_key)
) STRICT;

CREATE TABLE experiment_samples (
    experiment_id  TEXT NOT NULL REFERENCES experiments (id),
    run_id         TEXT NOT NULL,
    arm            TEXT NOT NULL,
    score          REAL NOT NULL,
    recorded_at    INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, run_id)
) STRICT;

CREATE TABLE run_scores (
    run_id      TEXT PRIMARY KEY,
    version_id  TEXT NOT NULL REFERENCES prompt_versions (id),
    project_id  TEXT NOT NULL,
    score       REAL NOT NULL,
    feedback    TEXT NOT NULL,  -- JSON
    scored_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX run_scores_by_version ON run_scores (version_id, scored_at);
