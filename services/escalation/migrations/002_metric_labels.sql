-- Tier and responder kind, for bounded metric labels (breaches by tier and department).
ALTER TABLE clocks ADD COLUMN IF NOT EXISTS tier text NOT NULL DEFAULT 'routine';
ALTER TABLE clocks ADD COLUMN IF NOT EXISTS responder_kind text NOT NULL DEFAULT 'member';
