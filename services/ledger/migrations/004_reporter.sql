-- What the ledger shows of the complainant (phone already masked) and the attachments.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter jsonb;
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS attachments jsonb NOT NULL DEFAULT '[]';
