-- The responder registry, seeded from data/registry.json on first start, edited by supervisors.
CREATE TABLE IF NOT EXISTS responders (
    id         text PRIMARY KEY,
    data       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL DEFAULT 'seed'
);
CREATE TABLE IF NOT EXISTS grids (
    id        text PRIMARY KEY,
    buildings text[] NOT NULL
);
