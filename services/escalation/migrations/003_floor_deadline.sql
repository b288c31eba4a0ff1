-- A granted extension's deadline: with working time, the clock never breaches before it.
ALTER TABLE clocks ADD COLUMN IF NOT EXISTS floor_deadline timestamptz;
