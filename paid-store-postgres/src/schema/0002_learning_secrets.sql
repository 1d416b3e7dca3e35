-- The opt-in capabilities: the learning loop
-- (paid_core::ports::learning::LearningStore) and encrypted credentials at
-- rest (paid_core::SecretStore).
--
-- "Oldest first" lists break ties on `seq`, an identity that grows with
-- every insert; a replaced sample or score takes a new one (`seq = DEFAULT`),
-- so it lists as the newest. Values no query looks inside are `json`.

CREATE TABLE prompts (
    slug             text PRIMARY KEY,
    description      text NOT NULL,
    active_version   uuid,
    last_evolved_at  timestamptz,
    created_at       timestamptz NOT NULL,
    seq              bigint GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX prompts_by_age ON prompts (created_at, seq);

-- Immutable: rows are inserted, never updated.
CREATE TABLE prompt_versions (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL REFERENCES prompts (slug),
    version     bigint NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
    template    text NOT NULL,
    variables   json NOT NULL,  -- array of dotted paths
    parent      uuid REFERENCES prompt_versions (id),
    created_by  json NOT NULL,
    created_at  timestamptz NOT NULL,
    UNIQUE (slug, version)
);

-- The experiment itself is `body`; the other columns are what queries
-- filter and sort on, copied out of it on every write.
CREATE TABLE experiments (
    id          uuid PRIMARY KEY,
    subject     text NOT NULL,
    active      boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    body        json NOT NULL,
    seq         bigint GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX experiments_by_subject ON experiments (subject, created_at, seq);
CREATE INDEX experiments_by_age ON experiments (created_at, seq);

-- First write wins: rows are inserted with ON CONFLICT DO NOTHING.
CREATE TABLE experiment_assignments (
    experiment_id  uuid NOT NULL REFERENCES experiments (id),
    issue_key      text NOT NULL,
    arm            text NOT NULL,
    run_id         uuid NOT NULL,
    assigned_at    timestamptz NOT NULL,
    PRIMARY KEY (experiment_id, issue_key)
);

CREATE TABLE experiment_samples (
    experiment_id  uuid NOT NULL REFERENCES experiments (id),
    run_id         uuid NOT NULL,
    arm            text NOT NULL,
    score          double precision NOT NULL,
    recorded_at    timestamptz NOT NULL,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (experiment_id, run_id)
);

CREATE INDEX experiment_samples_by_age ON experiment_samples (experiment_id, recorded_at, seq);

CREATE TABLE run_scores (
    run_id      uuid PRIMARY KEY,
    version_id  uuid NOT NULL REFERENCES prompt_versions (id),
    project_id  uuid NOT NULL,
    score       double precision NOT NULL,
    feedback    json NOT NULL,
    scored_at   timestamptz NOT NULL,
    seq         bigint GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX run_scores_by_version ON run_scores (version_id, scored_at, seq);

-- Opaque ciphertext and the id of the key that made it; the store never
-- sees a key or a plaintext. `version` counts writes, from 1, and makes
-- compare-and-set writes one statement each.
CREATE TABLE secrets (
    name        text PRIMARY KEY CHECK (name <> ''),
    key_id      text NOT NULL,
    ciphertext  bytea NOT NULL,
    version     bigint NOT NULL CHECK (version >= 1),
    updated_at  timestamptz NOT NULL
);
