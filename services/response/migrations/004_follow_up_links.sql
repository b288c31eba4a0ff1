-- One-time links a resident answers the follow-up through (回访链接); only a hash of the token is kept.
CREATE TABLE IF NOT EXISTS follow_up_links (
    token_hash text PRIMARY KEY,
    whistle_id uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    used_at    timestamptz
);
