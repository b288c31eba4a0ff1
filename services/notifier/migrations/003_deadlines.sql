-- The deadlines get a table of their own: the summons.> and sla.> consumers take the same burst at
-- the same time, and when both upserted the same summons row each waited on the other's lock.
-- Now each consumer writes only its own table; the messages read both.
CREATE TABLE IF NOT EXISTS deadlines (
    summons_id       uuid PRIMARY KEY,
    report_deadline  timestamptz,
    on_site_deadline timestamptz,
    resolve_deadline timestamptz
);

INSERT INTO deadlines (summons_id, report_deadline, on_site_deadline, resolve_deadline)
SELECT id, report_deadline, on_site_deadline, resolve_deadline FROM summons
WHERE report_deadline IS NOT NULL OR on_site_deadline IS NOT NULL OR resolve_deadline IS NOT NULL
ON CONFLICT (summons_id) DO NOTHING;

ALTER TABLE summons DROP COLUMN IF EXISTS report_deadline, DROP COLUMN IF EXISTS on_site_deadline,
    DROP COLUMN IF EXISTS resolve_deadline;
