-- Runs parked in `awaiting_choice` (a comparison waiting for a human pick)
-- used to keep a ten-year lease so that no worker claimed them, and 0003
-- taught `paid_project_has_room` not to count them. Now claim skips parked
-- states and a parked run holds no lease, so the count needs no exception:
-- the function is back to counting leased runs. Runs parked by an older
-- build are brought into that shape; those a human already decided on
-- (which used to wait, unleased, for a worker to claim them in
-- `awaiting_choice`) are moved on as a pick or cancel now does.
CREATE OR REPLACE FUNCTION paid_project_has_room(project uuid, now timestamptz) RETURNS boolean
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

-- A parked run holds no lease.
UPDATE runs
   SET lease_owner = NULL, lease_expires_at = NULL
 WHERE state = 'awaiting_choice' AND finished_at IS NULL;

-- Cancelled while parked: to cleanup, with the failure the engine records.
UPDATE runs
   SET state = 'cleaning',
       failure = json_build_object('step', 'awaiting_choice', 'code', 'cancelled', 'message', 'cancelled')
 WHERE state = 'awaiting_choice' AND finished_at IS NULL AND cancel_requested;

-- Picked: to `committing`, where the claiming worker applies the pick.
UPDATE runs
   SET state = 'committing'
 WHERE state = 'awaiting_choice' AND finished_at IS NULL
   AND EXISTS (SELECT 1 FROM audit_events a WHERE a.action = 'run.pick' AND a.subject = 'run:' || runs.id::text);
