-- Outbox rows JetStream will never take (too big, no stream for the subject, a refused header):
-- set aside whole, with the reason, so the rows behind them go on (a dead letter says so too).
CREATE TABLE IF NOT EXISTS outbox_dead (
    seq         bigint PRIMARY KEY,
    subject     text        NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}',
    body        bytea       NOT NULL,
    reason      text        NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now()
);
