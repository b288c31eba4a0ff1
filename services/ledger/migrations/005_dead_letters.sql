-- Dead letters a supervisor can act on: where each message came from (stream, sequence, consumer),
-- whose it is (whistle, event type), how often it was tried, and its replays.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS stream text;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS consumer text;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS deliveries integer;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS whistle_id uuid;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS event_type text;
-- 'runtime': the consumer dead-lettered it with its error; 'advisory': only the server's
-- max-deliveries advisory told of it (no error known)
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS source text;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS replays integer NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS replayed_at timestamptz;

-- One row per message and consumer: the runtime's dead letter and the server's advisory about the
-- same delivery meet here. Rows from before this migration have no stream (NULLs never collide).
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_origin ON dead_letters (stream, stream_seq, consumer);
CREATE INDEX IF NOT EXISTS dead_letters_by_whistle ON dead_letters (whistle_id) WHERE whistle_id IS NOT NULL;

-- Older rows: what their reason tells. Whistle and event type are read from the body when shown.
UPDATE dead_letters
   SET source = 'advisory',
       deliveries = substring(reason FROM '^failed ([0-9]+) deliveries to consumer ')::integer,
       consumer = substring(reason FROM '^failed [0-9]+ deliveries to consumer (.+)$')
 WHERE source IS NULL AND reason ~ '^failed [0-9]+ deliveries to consumer .+$';
UPDATE dead_letters SET source = 'runtime' WHERE source IS NULL;
