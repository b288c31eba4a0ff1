-- When each whistle was last struck off and reopened (whistle.closed / whistle.reopened), and when what the
-- notifier held of its reporter (whether to text them, the masked number its SMS attempts went to) went:
-- WHISTLE_REPORTER_RETENTION_DAYS after a close not followed by a reopen, or on whistle.reporter_erased.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS closed_at timestamptz;
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reopened_at timestamptz;
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_removed_at timestamptz;
CREATE INDEX IF NOT EXISTS whistles_reporter_retained ON whistles (closed_at)
    WHERE reporter_removed_at IS NULL AND closed_at IS NOT NULL;
