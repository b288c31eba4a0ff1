-- Consent to publication on the Open311 edge (公开同意), as given with the rest of the reporter.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_public_consent boolean NOT NULL DEFAULT false;
-- When the whistle was last struck off (whistle.closed) and last reopened (whistle.reopened), from the
-- events: its reporter's data is purged WHISTLE_REPORTER_RETENTION_DAYS after a close not followed by a reopen.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS closed_at timestamptz;
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reopened_at timestamptz;
-- Whether the reporter's data is gone, why ('retention' or 'erasure', on request) and when.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_removed text;
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_removed_at timestamptz;
CREATE INDEX IF NOT EXISTS whistles_reporter_retained ON whistles (closed_at)
    WHERE reporter_removed_at IS NULL AND closed_at IS NOT NULL;
