-- Each clock's truth; JetStream schedules only carry the firing (with the generation).
CREATE TABLE IF NOT EXISTS clocks (
    id                 uuid PRIMARY KEY,
    summons_id         uuid        NOT NULL,
    whistle_id         uuid        NOT NULL,
    kind               text        NOT NULL,
    responder_id       text        NOT NULL,
    superior_id        text,
    basis              text        NOT NULL,
    budget             interval    NOT NULL,
    warn_at            double precision,
    ladder             jsonb       NOT NULL,
    ladder_repeats     integer     NOT NULL,
    deadline           timestamptz,
    segment_started_at timestamptz,
    consumed           interval    NOT NULL,
    state              text        NOT NULL,
    generation         integer     NOT NULL,
    warned             boolean     NOT NULL,
    breached           boolean     NOT NULL,
    steps_done         integer     NOT NULL,
    next_step_at       timestamptz,
    fire_at            timestamptz,
    UNIQUE (summons_id, kind)
);
CREATE INDEX IF NOT EXISTS clocks_pending ON clocks (fire_at) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS clocks_by_summons ON clocks (summons_id);
