-- Deadlines per clock as escalation announces them, and whether the summons waits on the resident.
ALTER TABLE summons ADD COLUMN IF NOT EXISTS deadlines jsonb NOT NULL DEFAULT '{}';
ALTER TABLE summons ADD COLUMN IF NOT EXISTS waiting boolean NOT NULL DEFAULT false;
ALTER TABLE summons ADD COLUMN IF NOT EXISTS warned boolean NOT NULL DEFAULT false;
