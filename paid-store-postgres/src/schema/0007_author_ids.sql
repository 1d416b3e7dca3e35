-- The author's numeric forge user id (GitHub's `user.id`) on tracked
-- issues; NULL for issues seen by an older build (or a forge without ids).
ALTER TABLE issues ADD COLUMN IF NOT EXISTS author_id bigint;

-- Allowlisted logins pinned to the user id they had when Paid first saw
-- them: an account that later takes over a given-up login is not trusted.
-- The first pin of a login stays.
CREATE TABLE IF NOT EXISTS author_pins (
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    login       text NOT NULL,              -- lowercase
    user_id     bigint NOT NULL,
    pinned_at   timestamptz NOT NULL,
    PRIMARY KEY (project_id, login)
);
