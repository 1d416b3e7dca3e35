-- A run's context (paid_core::RunContext), written in the same statement
-- that creates the run and changed only with the run.
ALTER TABLE runs ADD COLUMN context jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Runs queued by an older build kept their context in the audit log:
-- follow-up context, rebase outcome, comparison spec, human pick.
UPDATE runs SET context = jsonb_set(runs.context, '{follow_up}', e.details::jsonb)
FROM (SELECT DISTINCT ON (subject) subject, details FROM audit_events
      WHERE action = 'run.follow_up' ORDER BY subject, id DESC) e
WHERE e.subject = 'run:' || runs.id::text;

UPDATE runs SET context = jsonb_set(runs.context, '{follow_up,rebase}', e.details::jsonb)
FROM (SELECT DISTINCT ON (subject) subject, details FROM audit_events
      WHERE action = 'run.rebase' ORDER BY subject, id DESC) e
WHERE e.subject = 'run:' || runs.id::text AND runs.context ? 'follow_up';

UPDATE runs SET context = jsonb_set(runs.context, '{compare}', e.details::jsonb -> 'spec')
FROM (SELECT DISTINCT ON (subject) subject, details FROM audit_events
      WHERE action = 'run.compare' ORDER BY subject, id DESC) e
WHERE e.subject = 'run:' || runs.id::text AND e.details::jsonb ? 'spec';

-- The first pick won.
UPDATE runs SET context = jsonb_set(runs.context, '{pick}', e.details::jsonb -> 'candidate')
FROM (SELECT DISTINCT ON (subject) subject, details FROM audit_events
      WHERE action = 'run.pick' ORDER BY subject, id ASC) e
WHERE e.subject = 'run:' || runs.id::text AND e.details::jsonb ? 'candidate';

-- A project's preferred model and budgets live in its config; an older
-- build kept those of projects added through the API in the audit log.
UPDATE projects SET config = (projects.config::jsonb || jsonb_build_object('settings', e.details::jsonb))::json
FROM (SELECT DISTINCT ON (subject) subject, details FROM audit_events
      WHERE action = 'project.settings' ORDER BY subject, id DESC) e
WHERE e.subject = 'project:' || projects.id::text;
