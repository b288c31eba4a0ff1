-- Revoked bearer tokens (the gateways keep this list in memory, services/gateway/revocations.py):
-- one token by its id, kept until it would have expired anyway...
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti        text        PRIMARY KEY,
    subject    text        NOT NULL,  -- role:id the token named
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL,
    revoked_by text        NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens (expires_at);

-- ...and every token of a responder issued at or before its "not before".
CREATE TABLE IF NOT EXISTS token_floors (
    responder_id text        PRIMARY KEY,
    not_before   timestamptz NOT NULL,
    revoked_at   timestamptz NOT NULL,
    revoked_by   text        NOT NULL
);

-- Any change to the list, and a responder deactivated or active again, NOTIFYs on commit (never
-- before: a rolled-back change tells nobody); routing publishes it on core NATS to every gateway.
CREATE OR REPLACE FUNCTION tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('whistle_tokens', TG_TABLE_NAME);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS revoked_tokens_changed ON revoked_tokens;
CREATE TRIGGER revoked_tokens_changed AFTER INSERT OR UPDATE ON revoked_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION tokens_changed();
DROP TRIGGER IF EXISTS token_floors_changed ON token_floors;
CREATE TRIGGER token_floors_changed AFTER INSERT OR UPDATE ON token_floors
    FOR EACH STATEMENT EXECUTE FUNCTION tokens_changed();

DROP TRIGGER IF EXISTS responders_activity_changed ON responders;
CREATE TRIGGER responders_activity_changed AFTER UPDATE ON responders
    FOR EACH ROW WHEN (coalesce((OLD.data ->> 'active')::boolean, true)
                       IS DISTINCT FROM coalesce((NEW.data ->> 'active')::boolean, true))
    EXECUTE FUNCTION tokens_changed();
DROP TRIGGER IF EXISTS responders_added_inactive ON responders;
CREATE TRIGGER responders_added_inactive AFTER INSERT ON responders
    FOR EACH ROW WHEN (NOT coalesce((NEW.data ->> 'active')::boolean, true))
    EXECUTE FUNCTION tokens_changed();
DROP TRIGGER IF EXISTS responders_removed ON responders;
CREATE TRIGGER responders_removed AFTER DELETE ON responders
    FOR EACH STATEMENT EXECUTE FUNCTION tokens_changed();
