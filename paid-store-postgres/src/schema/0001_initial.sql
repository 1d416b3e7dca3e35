-- The initial schema.
--
-- Tables live in the store's schema (the connection's `search_path`), so
-- several stores can share one database. Ids are `uuid`, times `timestamptz`,
-- enums their snake_case names. Values no query looks inside are `json`
-- (kept byte for byte, and able to hold "\u0000", unlike `jsonb`). Log text is
-- `bytea`: command output may hold NUL characters, which `text` refuses.
-- A run is active exactly while `finished_at IS NULL`; the store sets
-- `finished_at` in the same statement that moves a run to an end state.

CREATE TABLE projects (
    id                   uuid PRIMARY KEY,
    repo_owner           text NOT NULL,
    repo_name            text NOT NULL,
    -- Copied out of `config`: the claim query reads it.
    max_concurrent_runs  integer NOT NULL CHECK (max_concurrent_runs >= 0),
    created_at           timestamptz NOT NULL,
    config               json NOT NULL
);

CREATE INDEX projects_by_age ON projects (created_at, id);

CREATE TABLE issues (
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    number      bigint NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    author      text NOT NULL,
    labels      json NOT NULL,
    state       text NOT NULL,
    url         text NOT NULL,
    trusted     boolean NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (project_id, number)
);

CREATE TABLE runs (
    id                uuid PRIMARY KEY,
    project_id        uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    issue_number      bigint NOT NULL,
    kind              text NOT NULL,
    state             text NOT NULL,
    priority          integer NOT NULL,
    branch            text,
    model             text,
    pr_url            text,
    iterations        bigint NOT NULL DEFAULT 0,
    failure           json,
    lease_owner       text,
    lease_expires_at  timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    -- Counters that make appends and journal writes one statement each.
    step_seq          bigint NOT NULL DEFAULT 0,
    log_seq           bigint NOT NULL DEFAULT 0,
    log_bytes         bigint NOT NULL DEFAULT 0,
    log_truncated     boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    finished_at       timestamptz
);

-- At most one active run per issue and kind.
CREATE UNIQUE INDEX runs_one_active ON runs (project_id, issue_number, kind) WHERE finished_at IS NULL;
-- The claim query: highest priority, then oldest, among active runs.
CREATE INDEX runs_claimable ON runs (priority DESC, created_at, id) WHERE finished_at IS NULL;
-- Per-project concurrency: the active runs holding a lease.
CREATE INDEX runs_leased ON runs (project_id, lease_expires_at) WHERE finished_at IS NULL AND lease_owner IS NOT NULL;
CREATE INDEX runs_by_issue ON runs (project_id, issue_number, created_at);
CREATE INDEX runs_by_age ON runs (created_at, id);

CREATE TABLE steps (
    run_id           uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq              bigint NOT NULL,
    step             text NOT NULL,
    idempotency_key  text,
    status           text NOT NULL,
    output           json NOT NULL,
    error            json,                -- a JSON string
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE run_logs (
    run_id  uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    stream  text NOT NULL,
    text    bytea NOT NULL,               -- UTF-8
    at      timestamptz NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE usage_records (
    id           bigserial PRIMARY KEY,
    run_id       uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    provider     text NOT NULL,
    model        text NOT NULL,
    input        bigint NOT NULL,
    cache_read   bigint NOT NULL,
    cache_write  bigint NOT NULL,
    output       bigint NOT NULL,
    reasoning    bigint NOT NULL,
    cost_micros  bigint,
    latency_ms   bigint NOT NULL,
    status       text NOT NULL,
    at           timestamptz NOT NULL
);

CREATE INDEX usage_by_run ON usage_records (run_id, at, id);

CREATE TABLE model_decisions (
    run_id         uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    provider       text NOT NULL,
    model          text NOT NULL,
    selector       text NOT NULL,
    reasoning      text NOT NULL,
    candidates     json NOT NULL,
    budget_micros  bigint,
    complexity     double precision,
    at             timestamptz NOT NULL
);

CREATE TABLE outcomes (
    run_id         uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    project_id     uuid NOT NULL,         -- goes with the run
    pr_merged      boolean,
    ci_passed      boolean,
    lint_clean     boolean,
    tests_passing  boolean,
    human_vote     smallint,
    iterations     bigint NOT NULL,
    cost_micros    bigint,
    quality_score  double precision,
    recorded_at    timestamptz NOT NULL
);

CREATE INDEX outcomes_by_project ON outcomes (project_id, recorded_at);

-- No foreign key: the audit trail outlives what it is about.
CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    project_id  uuid,
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    details     json NOT NULL
);

CREATE INDEX audit_by_time ON audit_events (at, id);
CREATE INDEX audit_by_project ON audit_events (project_id, at, id);

-- Whether a project may take one more leased run at `now`. The claim
-- statement calls this for the one run it is about to lease. It serializes
-- claims per project on a transaction-scoped advisory lock and, being
-- VOLATILE, counts with a fresh snapshot taken after the lock: it sees every
-- claim committed before it, so two workers cannot both take the last slot.
CREATE FUNCTION paid_project_has_room(project uuid, now timestamptz) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    allowed integer;
    leased  bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), hashtext(project::text));
    SELECT max_concurrent_runs INTO allowed FROM projects WHERE id = project;
    SELECT count(*) INTO leased FROM runs
     WHERE project_id = project AND finished_at IS NULL AND lease_owner IS NOT NULL AND lease_expires_at > now;
    RETURN leased < coalesce(allowed, 0);
END
$$;
