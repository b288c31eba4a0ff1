-- When the reporter's personal data left the ledger (retention or erasure on request, shared/privacy.py):
-- a whistle.blown projected again afterwards (a replay) must not bring it back.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_removed_at timestamptz;
CREATE INDEX IF NOT EXISTS whistles_reporter_retained ON whistles (closed_at)
    WHERE status = 'closed' AND reporter IS NOT NULL AND reporter_removed_at IS NULL;
-- The audit of a month (GET /v1/audit): the timeline in event time, a page at a time.
CREATE INDEX IF NOT EXISTS timeline_by_time ON timeline (occurred_at, seq);
