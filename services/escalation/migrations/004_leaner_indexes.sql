-- UNIQUE (summons_id, kind) already finds a summons' clocks; the pending clocks are found by id
-- (reconcile pages through them in id order, the gauge counts them), never by fire_at: one index
-- fewer to write per clock, and the one left changes only when a clock starts or stops running.
DROP INDEX IF EXISTS clocks_by_summons;
DROP INDEX IF EXISTS clocks_pending;
CREATE INDEX IF NOT EXISTS clocks_running ON clocks (id) WHERE state = 'running' AND fire_at IS NOT NULL;
