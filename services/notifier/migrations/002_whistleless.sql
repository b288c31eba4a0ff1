-- A notification about no whistle (a sign-in link, account.signin_link): its attempts are kept in
-- its attempt_log, and it queues no timeline event (there is no whistle to put it on).
ALTER TABLE notifications ALTER COLUMN whistle_id DROP NOT NULL;
