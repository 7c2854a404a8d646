-- When each API key was last used (kept to the minute: written at most once a minute per key
-- and API process, when the key is checked rather than taken from the auth cache).

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS last_used_at timestamptz;
