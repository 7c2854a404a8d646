-- Crash safety: which RQ job a chunk is waiting for (so a lost one can be replaced), the S3
-- part number each attempt writes (attempts never overwrite each other), and a fenced,
-- leased finalizer.

ALTER TABLE export_chunks ADD COLUMN IF NOT EXISTS job_id text;
ALTER TABLE export_chunks ADD COLUMN IF NOT EXISTS recoveries integer NOT NULL DEFAULT 0;
ALTER TABLE export_chunks ADD COLUMN IF NOT EXISTS upload_part_number integer;

ALTER TABLE exports ADD COLUMN IF NOT EXISTS finalize_attempt integer NOT NULL DEFAULT 0;
ALTER TABLE exports ADD COLUMN IF NOT EXISTS finalize_lease_expires_at timestamptz;
CREATE INDEX IF NOT EXISTS exports_expiring ON exports (expires_at) WHERE status = 'completed';
