-- Whether the reporter agreed to be texted the follow-up link (回访短信) at the phone they gave.
ALTER TABLE whistles ADD COLUMN IF NOT EXISTS reporter_sms_consent boolean NOT NULL DEFAULT false;
