-- The first reply to a command sent with an Idempotency-Key, written in the command's own
-- transaction: a retry (the gateway timed out, the client asks again) gets it back, not a second effect.
CREATE TABLE IF NOT EXISTS command_replies (
    actor      text        NOT NULL,
    key        text        NOT NULL,
    subject    text        NOT NULL,
    reply      jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key)
);
