-- 12345 work orders already imported: the external order id makes a re-import change nothing.
CREATE TABLE IF NOT EXISTS hotline_orders (
    external_id text PRIMARY KEY,
    whistle_id  uuid        NOT NULL,
    received_at timestamptz NOT NULL,
    imported_at timestamptz NOT NULL
);
