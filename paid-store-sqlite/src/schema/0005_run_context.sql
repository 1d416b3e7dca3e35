-- A run's context (paid_core::RunContext as JSON), written in the same
-- statement that creates the run and changed only with the run.
ALTER TABLE runs ADD COLUMN context TEXT NOT NULL DEFAULT '{}';

-- Runs queued by an older build kept their context in the audit log:
-- follow-up context, rebase outcome, comparison spec, human pick.
UPDATE runs SET context = json_set(context, '$.follow_up', json((
    SELECT a.details FROM audit_events a
    WHERE a.action = 'run.follow_up' AND a.subject = 'run:' || runs.id ORDER BY a.id DESC LIMIT 1)))
WHERE EXISTS (SELECT 1 FROM audit_events a WHERE a.action = 'run.follow_up' AND a.subject = 'run:' || runs.id);

UPDATE runs SET context = json_set(context, '$.follow_up.rebase', json((
    SELECT a.details FROM audit_events a
    WHERE a.action = 'run.rebase' AND a.subject = 'run:' || runs.id ORDER BY a.id DESC LIMIT 1)))
WHERE json_extract(context, '$.follow_up') IS NOT NULL
  AND EXISTS (SELECT 1 FROM audit_events a WHERE a.action = 'run.rebase' AND a.subject = 'run:' || runs.id);

UPDATE runs SET context = json_set(context, '$.compare', json((
    SELECT json_extract(a.details, '$.spec') FROM audit_events a
    WHERE a.action = 'run.compare' AND a.subject = 'run:' || runs.id ORDER BY a.id DESC LIMIT 1)))
WHERE EXISTS (SELECT 1 FROM audit_events a WHERE a.action = 'run.compare' AND a.subject = 'run:' || runs.id);

-- The first pick won.
UPDATE runs SET context = json_set(context, '$.pick', (
    SELECT json_extract(a.details, '$.candidate') FROM audit_events a
    WHERE a.action = 'run.pick' AND a.subject = 'run:' || runs.id ORDER BY a.id ASC LIMIT 1))
WHERE EXISTS (SELECT 1 FROM audit_events a WHERE a.action = 'run.pick' AND a.subject = 'run:' || runs.id);

-- A project's preferred model and budgets live in its config; an older
-- build kept those of projects added through the API in the audit log.
UPDATE projects SET config = json_set(config, '$.settings', json((
    SELECT a.details FROM audit_events a
    WHERE a.action = 'project.settings' AND a.subject = 'project:' || projects.id ORDER BY a.id DESC LIMIT 1)))
WHERE EXISTS (SELECT 1 FROM audit_events a WHERE a.action = 'project.settings' AND a.subject = 'project:' || projects.id);
