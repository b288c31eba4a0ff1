-- One follow-up (回访) per closure: set by the first answer, a dispatcher's or a resident's link, and
-- cleared when the whistle is struck off again after a reopen (重办); a second answer is refused, so the
-- satisfaction rate counts each closure once.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS followed_up_at timestamptz;
-- closures answered through their link before this column: the newest link of a closed whistle, used
UPDATE whistles w SET followed_up_at = l.used_at
  FROM follow_up_links l
 WHERE l.whistle_id = w.id AND w.closed AND w.followed_up_at IS NULL AND l.used_at IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM follow_up_links n WHERE n.whistle_id = l.whistle_id AND n.created_at > l.created_at);
