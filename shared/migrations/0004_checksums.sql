-- Integrity of the stored object: the CRC-32 of each part (computed while it streams,
-- recorded with the part by the attempt that holds the chunk), and the object's CRC-32
-- (the parts' CRCs combined in part order) and ETag, recorded when the export completes.
-- The ETag and size let the API tell, with one HEAD, that the object is still the one
-- Spillway wrote. NULL: written before this migration, or by a worker that did not compute it.

ALTER TABLE export_chunks ADD COLUMN IF NOT EXISTS crc32 bigint
    CHECK (crc32 BETWEEN 0 AND 4294967295);  -- unsigned 32-bit: does not fit PostgreSQL's integer

ALTER TABLE exports ADD COLUMN IF NOT EXISTS object_crc32 bigint
    CHECK (object_crc32 BETWEEN 0 AND 4294967295);
ALTER TABLE exports ADD COLUMN IF NOT EXISTS object_etag text;
