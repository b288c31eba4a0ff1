-- Where each partitioned consumer stands in the event stream, per partition: every message of the
-- partition up to `stream_seq` is handled. Written by each batch's own transaction, beside the lease
-- check (shared/leases.py `fence_many`), so the position commits with the work or not at all; a
-- partition's next holder (or the same replica after NATS lost its in-memory consumers) starts just
-- after it (shared/partitioned.py).
-- `stream_created` names the stream the sequence is of: a stream made again (NATS's store lost) starts
-- its sequences over, and a floor of the one before means nothing in it.
CREATE TABLE IF NOT EXISTS consumer_floors (
    durable        text        NOT NULL,
    partition      int         NOT NULL,
    stream_seq     bigint      NOT NULL,
    stream_created timestamptz NOT NULL,
    PRIMARY KEY (durable, partition)
);
