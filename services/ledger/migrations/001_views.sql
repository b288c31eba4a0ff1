CREATE TABLE IF NOT EXISTS timeline (
    seq         bigserial PRIMARY KEY,
    whistle_id  uuid        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    subject     text        NOT NULL,
    actor       text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_by_whistle ON timeline (whistle_id, seq);

CREATE TABLE IF NOT EXISTS whistles (
    id          uuid PRIMARY KEY,
    category    text,
    description text,
    location    jsonb,
    tier        text,
    source      text,
    status      text        NOT NULL,
    raised_by   text,
    raised_at   timestamptz,
    updated_at  timestamptz NOT NULL,
    closed_at   timestamptz
);
CREATE INDEX IF NOT EXISTS whistles_open ON whistles (raised_at DESC) WHERE status <> 'closed';

CREATE TABLE IF NOT EXISTS summons (
    id             uuid PRIMARY KEY,
    whistle_id     uuid        NOT NULL,
    responder_id   text        NOT NULL,
    responder_kind text        NOT NULL,
    responder_name text        NOT NULL,
    role           text        NOT NULL,
    state          text        NOT NULL,
    breached       boolean     NOT NULL DEFAULT false,
    escalations    integer     NOT NULL DEFAULT 0,
    issued_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_summons_by_whistle ON summons (whistle_id);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          bigserial PRIMARY KEY,
    key         uuid        NOT NULL UNIQUE,
    service     text        NOT NULL,
    subject     text        NOT NULL,
    reason      text        NOT NULL,
    stream_seq  bigint,
    body        bytea,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
