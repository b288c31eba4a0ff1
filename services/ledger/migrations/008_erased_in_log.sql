-- A reporter erased on request (whistle.reporter_erased): the event log's copy of what they gave (the
-- whistle's whistle.blown, in the EVENTS stream) is deleted too, once every consumer has taken it
-- (services/ledger/erasure.py); until then the whistle waits here.
CREATE TABLE IF NOT EXISTS erased_in_log (
    whistle_id uuid PRIMARY KEY,
    erased_at  timestamptz NOT NULL,
    deleted_at timestamptz,
    messages   integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS erased_in_log_pending ON erased_in_log (erased_at) WHERE deleted_at IS NULL;
