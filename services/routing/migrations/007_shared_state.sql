-- What every routing replica decides from, in one place: open summons per responder and when each
-- was last summoned (the load book), and a version of the registry that any edit moves.
CREATE TABLE IF NOT EXISTS loads (
    responder_id text   PRIMARY KEY,
    open         int    NOT NULL DEFAULT 0 CHECK (open >= 0),
    last_tick    bigint NOT NULL DEFAULT 0
);

INSERT INTO loads (responder_id, open, last_tick)
SELECT responder_id, count(*) FILTER (WHERE open), row_number() OVER (ORDER BY max(issued_at))
FROM assignments GROUP BY responder_id
ON CONFLICT (responder_id) DO NOTHING;

CREATE TABLE IF NOT EXISTS registry_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint  NOT NULL
);
INSERT INTO registry_version (version) VALUES (1) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION registry_edited() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_version SET version = version + 1;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS responders_edited ON responders;
CREATE TRIGGER responders_edited AFTER INSERT OR UPDATE OR DELETE ON responders
    FOR EACH STATEMENT EXECUTE FUNCTION registry_edited();
DROP TRIGGER IF EXISTS grids_edited ON grids;
CREATE TRIGGER grids_edited AFTER INSERT OR UPDATE OR DELETE ON grids
    FOR EACH STATEMENT EXECUTE FUNCTION registry_edited();
