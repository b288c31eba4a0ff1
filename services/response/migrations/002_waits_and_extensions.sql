-- Waiting on the resident, and a pending extension request (延期申请) awaiting a supervisor.
ALTER TABLE summons ADD COLUMN IF NOT EXISTS waiting boolean NOT NULL DEFAULT false;
ALTER TABLE summons ADD COLUMN IF NOT EXISTS extension jsonb;
