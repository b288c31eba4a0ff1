-- Who revoked an Open311 API key (revoked_at is when); a revoked key is refused like an unknown one.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS revoked_by text;
