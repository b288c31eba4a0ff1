-- Keyset pages of GET /v1/summons: newest first, ties broken by id; everyone's (dispatchers,
-- supervisors) and a responder's own. The second replaces the index without the tie-breaker.
CREATE INDEX IF NOT EXISTS summons_page ON summons (issued_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS summons_page_by_responder ON summons (responder_id, issued_at DESC, id DESC);
DROP INDEX IF EXISTS summons_by_responder;
