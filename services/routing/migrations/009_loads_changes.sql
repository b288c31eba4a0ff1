-- Each routing process keeps the load book in memory and reads only the rows changed since its last read
-- (services/routing/store.py, LoadCache): reading the whole table in every decision costs as much as the
-- district has members. Every write to `loads` takes a number from `loads_changes` while it holds the loads
-- lock (until it commits), so the numbers a reader sees under that lock were all committed before, and none
-- below them is still to come; and it marks its transaction (a transaction-local setting, undone with a
-- rolled-back savepoint), so a read that may see the transaction's own uncommitted writes is not kept.
CREATE SEQUENCE IF NOT EXISTS loads_changes;
ALTER TABLE loads ADD COLUMN IF NOT EXISTS changed bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS loads_changed ON loads (changed);

CREATE OR REPLACE FUNCTION loads_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the writers take the lock before they touch a row (store.py); this makes sure of it
    PERFORM pg_advisory_xact_lock(32210697599938151);  -- store.LOADS_LOCK
    PERFORM set_config('routing.loads_written', 'yes', true);
    NEW.changed := nextval('loads_changes');
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS loads_changed ON loads;
CREATE TRIGGER loads_changed BEFORE INSERT OR UPDATE ON loads FOR EACH ROW EXECUTE FUNCTION loads_changed();
