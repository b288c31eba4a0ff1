-- Console sign-in: one account per person (dispatcher, supervisor, each responder), argon2 hashes only.
CREATE TABLE IF NOT EXISTS accounts (
    username      text PRIMARY KEY,
    role          text        NOT NULL,
    subject_id    text        NOT NULL,
    password_hash text        NOT NULL,
    updated_at    timestamptz NOT NULL,
    updated_by    text        NOT NULL
);
-- Wrong passwords per user name, whether or not the name exists (so a lockout reveals nothing).
CREATE TABLE IF NOT EXISTS signin_failures (
    username     text PRIMARY KEY,
    failures     integer     NOT NULL,
    last_failure timestamptz NOT NULL,
    locked_until timestamptz
);
