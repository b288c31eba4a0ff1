-- What waits on a supervisor (the console's inbox): each summons' pending extension request (延期申请),
-- set by summons.extension_requested and cleared by its grant or refusal.
ALTER TABLE summons ADD COLUMN IF NOT EXISTS extension jsonb;
CREATE INDEX IF NOT EXISTS summons_extension_pending ON summons (updated_at DESC, id DESC) WHERE extension IS NOT NULL;
CREATE INDEX IF NOT EXISTS whistles_awaiting_arbitration ON whistles (raised_at DESC) WHERE status = 'awaiting_arbitration';

-- Backfill from the timeline: the summons whose latest extension event is a request.
UPDATE summons s SET extension = jsonb_build_object('clock', t.data->>'clock', 'new_deadline', t.data->>'new_deadline',
                                                    'reason', t.data->>'reason', 'requested_at', t.occurred_at)
  FROM (SELECT DISTINCT ON (data->>'summons_id') (data->>'summons_id')::uuid AS id, subject, data, occurred_at
          FROM timeline
         WHERE subject IN ('summons.extension_requested', 'summons.extension_granted', 'summons.extension_refused')
         ORDER BY data->>'summons_id', seq DESC) t
 WHERE s.id = t.id AND t.subject = 'summons.extension_requested';
