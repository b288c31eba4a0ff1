-- One row per summons routing issued; the load of a responder is its open rows.
CREATE TABLE IF NOT EXISTS assignments (
    summons_id   uuid PRIMARY KEY,
    whistle_id   uuid        NOT NULL,
    responder_id text        NOT NULL,
    rule         text        NOT NULL,
    issued_at    timestamptz NOT NULL,
    open         boolean     NOT NULL DEFAULT true
);
CREATE INDEX IF NOT EXISTS assignments_open_by_responder ON assignments (responder_id) WHERE open;
CREATE TABLE IF NOT EXISTS unroutable (
    whistle_id uuid PRIMARY KEY,
    reason     text        NOT NULL,
    at         timestamptz NOT NULL
);
