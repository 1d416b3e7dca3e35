-- A run parked in `awaiting_choice` (a comparison waiting for a human pick)
-- keeps a long lease so no worker claims it, but it uses no worker: it does
-- not count against its project's `max_concurrent_runs`.
CREATE OR REPLACE FUNCTION paid_project_has_room(project uuid, now timestamptz) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    allowed integer;
    leased  bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), hashtext(project::text));
    SELECT max_concurrent_runs INTO allowed FROM projects WHERE id = project;
    SELECT count(*) INTO leased FROM runs
     WHERE project_id = project AND finished_at IS NULL AND lease_owner IS NOT NULL AND lease_expires_at > now
       AND state <> 'awaiting_choice';
    RETURN leased < coalesce(allowed, 0);
END
$$;
