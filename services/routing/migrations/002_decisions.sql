-- Why each whistle was routed as it was: the rule, every candidate looked at, chosen or skipped.
CREATE TABLE IF NOT EXISTS decisions (
    whistle_id  uuid PRIMARY KEY,
    rule        text,
    explanation jsonb       NOT NULL,
    decided_at  timestamptz NOT NULL
);
ALTER TABLE assignments ADD COLUMN IF NOT EXISTS role text NOT NULL DEFAULT 'lead';
CREATE INDEX IF NOT EXISTS assignments_by_issue ON assignments (issued_at);
