-- The facts the three rates are computed from (services/ledger/rates.py).
-- Deadlines as columns: the latest non-null one escalation announced (the jsonb `deadlines` keeps a
-- paused clock's null, which the rates must not see).
ALTER TABLE summons ADD COLUMN IF NOT EXISTS report_deadline timestamptz;
ALTER TABLE summons ADD COLUMN IF NOT EXISTS resolve_deadline timestamptz;
ALTER TABLE summons ADD COLUMN IF NOT EXISTS reported_at timestamptz;
ALTER TABLE summons ADD COLUMN IF NOT EXISTS resolved_at timestamptz;
CREATE INDEX IF NOT EXISTS summons_by_report_deadline ON summons (report_deadline);
CREATE INDEX IF NOT EXISTS summons_by_resolve_deadline ON summons (resolve_deadline);
CREATE INDEX IF NOT EXISTS summons_by_resolved_at ON summons (resolved_at);
CREATE INDEX IF NOT EXISTS whistles_by_closed_at ON whistles (closed_at);

-- 回访: one row per whistle.followed_up event.
CREATE TABLE IF NOT EXISTS followups (
    event_id     uuid PRIMARY KEY,
    whistle_id   uuid        NOT NULL,
    solved       boolean     NOT NULL,
    satisfaction text        NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS followups_by_at ON followups (at);
CREATE INDEX IF NOT EXISTS followups_by_whistle ON followups (whistle_id, at);

-- Backfill from the timeline, which holds every event projected before this migration.
UPDATE summons s SET reported_at = t.at
  FROM (SELECT (data->>'summons_id')::uuid AS id, min(occurred_at) AS at FROM timeline
         WHERE subject = 'summons.reported' GROUP BY 1) t
 WHERE s.id = t.id;
UPDATE summons s SET resolved_at = t.at
  FROM (SELECT (data->>'summons_id')::uuid AS id, min(occurred_at) AS at FROM timeline
         WHERE subject = 'summons.resolved' GROUP BY 1) t
 WHERE s.id = t.id;
UPDATE summons s SET report_deadline = (t.data->'deadlines'->>'report')::timestamptz,
                     resolve_deadline = (t.data->'deadlines'->>'resolve')::timestamptz
  FROM timeline t
 WHERE t.subject = 'sla.started' AND (t.data->>'summons_id')::uuid = s.id;
UPDATE summons s SET report_deadline = t.deadline
  FROM (SELECT DISTINCT ON (data->>'summons_id') (data->>'summons_id')::uuid AS id,
               (data->>'deadline')::timestamptz AS deadline
          FROM timeline
         WHERE subject = 'sla.rescheduled' AND data->>'clock' = 'report' AND data->>'deadline' IS NOT NULL
         ORDER BY data->>'summons_id', seq DESC) t
 WHERE s.id = t.id;
UPDATE summons s SET resolve_deadline = t.deadline
  FROM (SELECT DISTINCT ON (data->>'summons_id') (data->>'summons_id')::uuid AS id,
               (data->>'deadline')::timestamptz AS deadline
          FROM timeline
         WHERE subject = 'sla.rescheduled' AND data->>'clock' = 'resolve' AND data->>'deadline' IS NOT NULL
         ORDER BY data->>'summons_id', seq DESC) t
 WHERE s.id = t.id;
INSERT INTO followups (event_id, whistle_id, solved, satisfaction, at)
SELECT event_id, whistle_id, (data->>'solved')::boolean, data->>'satisfaction', occurred_at
  FROM timeline WHERE subject = 'whistle.followed_up'
ON CONFLICT (event_id) DO NOTHING;
