-- Each clock's truth; JetStream schedules only carry the firing.
CREATE TABLE IF NOT EXISTS clocks (
    id           uuid PRIMARY KEY,
    summons_id   uuid        NOT NULL,
    whistle_id   uuid        NOT NULL,
    kind         text        NOT NULL,
    responder_id text        NOT NULL,
    superior_id  text,
    deadline     timestamptz NOT NULL,
    ladder       jsonb       NOT NULL,
    state        text        NOT NULL,
    generation   integer     NOT NULL,
    breached     boolean     NOT NULL DEFAULT false,
    steps_done   integer     NOT NULL DEFAULT 0,
    fire_at      timestamptz,
    UNIQUE (summons_id, kind)
);
CREATE INDEX IF NOT EXISTS clocks_running ON clocks (fire_at) WHERE state = 'running';
