-- Runs parked in `awaiting_choice` (a comparison waiting for a human pick)
-- used to keep a ten-year lease so that no worker claimed them. Now claim
-- skips parked states and a parked run holds no lease. Runs parked by an
-- older build are brought into that shape; those a human already decided
-- on (which used to wait, unleased, for a worker to claim them in
-- `awaiting_choice`) are moved on as a pick or cancel now does.

-- A parked run holds no lease.
UPDATE runs
   SET lease_owner = NULL, lease_expires_at = NULL
 WHERE state = 'awaiting_choice' AND finished_at IS NULL;

-- Cancelled while parked: to cleanup, with the failure the engine records.
UPDATE runs
   SET state = 'cleaning',
       failure = json_object('step', 'awaiting_choice', 'code', 'cancelled', 'message', 'cancelled')
 WHERE state = 'awaiting_choice' AND finished_at IS NULL AND cancel_requested <> 0;

-- Picked: to `committing`, where the claiming worker applies the pick.
UPDATE runs
   SET state = 'committing'
 WHERE state = 'awaiting_choice' AND finished_at IS NULL
   AND EXISTS (SELECT 1 FROM audit_events a WHERE a.action = 'run.pick' AND a.subject = 'run:' || runs.id);
