-- Open311 API keys, issued by a supervisor to a named client; only the SHA-256 of a key is kept.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash   text PRIMARY KEY,
    client     text        NOT NULL,
    note       text,
    issued_by  text        NOT NULL,
    issued_at  timestamptz NOT NULL,
    revoked_at timestamptz
);
