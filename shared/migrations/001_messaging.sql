-- Outbox: events written in the same transaction as the state change; the relay publishes them.
CREATE TABLE IF NOT EXISTS outbox (
    seq        bigserial PRIMARY KEY,
    subject    text        NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}',
    body       bytea       NOT NULL,
    msg_id     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Inbox: event ids already handled, recorded in the same transaction as their effect.
CREATE TABLE IF NOT EXISTS inbox (
    event_id     uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
