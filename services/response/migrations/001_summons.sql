CREATE TABLE IF NOT EXISTS summons (
    id             uuid PRIMARY KEY,
    whistle_id     uuid        NOT NULL,
    responder_id   text        NOT NULL,
    responder_kind text        NOT NULL,
    responder_name text        NOT NULL,
    role           text        NOT NULL,
    category       text        NOT NULL,
    tier           text        NOT NULL,
    state          text        NOT NULL,
    issued_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS summons_by_responder ON summons (responder_id, issued_at DESC);
CREATE INDEX IF NOT EXISTS summons_by_whistle ON summons (whistle_id);

CREATE TABLE IF NOT EXISTS whistles (
    id        uuid PRIMARY KEY,
    closed    boolean     NOT NULL DEFAULT false,
    closed_at timestamptz
);
