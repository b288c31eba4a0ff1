CREATE TABLE IF NOT EXISTS whistles (
    id          uuid PRIMARY KEY,
    category    text        NOT NULL,
    description text        NOT NULL,
    location    jsonb       NOT NULL,
    tier        text        NOT NULL,
    source      text        NOT NULL,
    raised_by   text        NOT NULL,
    raised_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS whistles_raised_at ON whistles (raised_at);
