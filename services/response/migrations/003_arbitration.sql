-- A summons a supervisor assigned after two returns (审定) cannot be returned again.
ALTER TABLE summons ADD COLUMN IF NOT EXISTS arbitrated boolean NOT NULL DEFAULT false;
