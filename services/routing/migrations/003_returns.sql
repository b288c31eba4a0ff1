-- What routing needs to reroute a returned summons: the whistle as blown, and who gave it back.
CREATE TABLE IF NOT EXISTS whistles (
    id    uuid PRIMARY KEY,
    blown jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS returns (
    summons_id   uuid PRIMARY KEY,
    whistle_id   uuid        NOT NULL,
    responder_id text        NOT NULL,
    reason_code  text        NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS returns_by_whistle ON returns (whistle_id);
CREATE TABLE IF NOT EXISTS arbitrations (
    whistle_id    uuid PRIMARY KEY,
    responder_id  text        NOT NULL,
    supervisor_id text        NOT NULL,
    at            timestamptz NOT NULL
);
