-- Contact rules (PUT /v1/responders/{id}/contacts): steps, quiet hours, language, as validated JSON.
CREATE TABLE IF NOT EXISTS contact_rules (
    recipient_id text PRIMARY KEY,
    rule         jsonb       NOT NULL,
    updated_by   text        NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- What the messages say: the whistle as blown (place, category, tier) and whether its reporter
-- agreed to be texted the follow-up link (the number itself stays with intake).
CREATE TABLE IF NOT EXISTS whistles (
    id          uuid PRIMARY KEY,
    category    text NOT NULL,
    tier        text NOT NULL,
    location    jsonb,
    contactable boolean NOT NULL DEFAULT false
);

-- Each summons: who, the superior, the deadlines escalation announced, and whether it was
-- reported (or returned, transferred): then its remaining steps are stopped. Written from both
-- summons.issued and sla.* (separate consumers, either may come first): only the id is sure.
CREATE TABLE IF NOT EXISTS summons (
    id               uuid PRIMARY KEY,
    whistle_id       uuid,
    responder_id     text,
    responder_name   text,
    superior_id      text,
    category         text,
    tier             text,
    report_deadline  timestamptz,
    on_site_deadline timestamptz,
    resolve_deadline timestamptz,
    stopped          boolean NOT NULL DEFAULT false
);

-- One row per message to send: written in the consuming transaction with a deterministic id
-- (event, recipient, step), so a redelivered event makes no second one. `next_at` is when it is
-- due: the sender claims due rows by moving it past the send's timeout (a lease), so the rows of
-- a process that died come due again. `attempts` counts claims; `attempt_log` holds each answer.
CREATE TABLE IF NOT EXISTS notifications (
    id              uuid PRIMARY KEY,
    cause_id        uuid        NOT NULL,
    kind            text        NOT NULL,
    whistle_id      uuid        NOT NULL,
    summons_id      uuid,
    recipient_id    text        NOT NULL,
    step            text        NOT NULL,
    channel         text        NOT NULL,
    target          jsonb       NOT NULL,
    details         jsonb       NOT NULL,
    locale          text        NOT NULL,
    tier            text,
    stops_on_report boolean     NOT NULL,
    state           text        NOT NULL,
    due_at          timestamptz NOT NULL,
    next_at         timestamptz NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    attempt_log     jsonb       NOT NULL DEFAULT '[]',
    answer          text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS notifications_pending_summons ON notifications (summons_id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS notifications_page ON notifications (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS notifications_by_whistle ON notifications (whistle_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS notifications_by_recipient ON notifications (recipient_id, created_at DESC, id DESC);
