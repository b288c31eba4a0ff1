-- A link's token is the HMAC of this nonce under the service's secret: it can be given again to the
-- notifier (which texts it to the resident) while the table alone still yields no working link.
ALTER TABLE follow_up_links ADD COLUMN IF NOT EXISTS nonce text;
