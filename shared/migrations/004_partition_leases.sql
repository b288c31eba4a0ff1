-- The replicas of this service and which one holds each partition (shared/leases.py).
-- A replica is alive while it keeps `seen_at` fresh; a lease is good while its holder is alive.
CREATE TABLE IF NOT EXISTS replicas (
    replica    text        PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL
);

-- One row per partition, changed only when it changes hands (`epoch` + 1): a batch's transaction
-- reads its row FOR SHARE, so a takeover waits for the old holder's transactions in flight.
CREATE TABLE IF NOT EXISTS partition_leases (
    partition  int         PRIMARY KEY,
    holder     text,
    epoch      bigint      NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);
