-- Keys of any type (issue 11): chunk bounds and the high-water mark hold the key's text form
-- (PostgreSQL's output of the key type, cast back with ::<type> in every query), so uuid,
-- text, date and timestamp keys are stored as exactly as integers. Existing bigint bounds
-- convert to the same text.
ALTER TABLE export_chunks ALTER COLUMN key_lo TYPE text USING key_lo::text;
ALTER TABLE export_chunks ALTER COLUMN key_hi TYPE text USING key_hi::text;
ALTER TABLE exports ALTER COLUMN key_high_water TYPE text USING key_high_water::text;

-- Attributes of an API key ({"tenant": "42"}): a scoped dataset binds its row scope to them.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS attributes jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(attributes) = 'object');
