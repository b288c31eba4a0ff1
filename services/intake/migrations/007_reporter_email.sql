-- The complainant's email (Open311 `email`), whole here; events and every read carry it masked.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_email text;
