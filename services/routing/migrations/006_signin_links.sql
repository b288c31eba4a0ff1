-- One-time sign-in links (发送登录链接): only a hash of the token is kept; a link is spent once,
-- by an UPDATE that sets used_at while it is unused and unexpired.
CREATE TABLE IF NOT EXISTS signin_links (
    id         uuid PRIMARY KEY,
    token_hash bytea       NOT NULL UNIQUE,
    username   text        NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX IF NOT EXISTS signin_links_expiry ON signin_links (expires_at);
-- Link requests per user name, known or not, slowed like wrong passwords (signin_failures).
CREATE TABLE IF NOT EXISTS signin_link_requests (
    username     text PRIMARY KEY,
    failures     integer     NOT NULL,
    last_failure timestamptz NOT NULL,
    locked_until timestamptz
);
