-- The complainant as given (the only place the whole phone number is kept), attachments,
-- and Idempotency-Key records: the same key and body give the same whistle.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_name text;
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_phone text;
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS attachments jsonb NOT NULL DEFAULT '[]';
CREATE TABLE IF NOT EXISTS idempotency (
    actor      text        NOT NULL,
    key        text        NOT NULL,
    body_hash  text        NOT NULL,
    whistle_id uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (actor, key)
);
