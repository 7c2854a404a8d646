-- Per-owner admission (at most N running exports an owner; the rest wait, oldest first)
-- and a per-export window of chunk jobs in flight.

ALTER TABLE exports ADD COLUMN IF NOT EXISTS admitted_at timestamptz;  -- its planner was enqueued
CREATE INDEX IF NOT EXISTS exports_owner_waiting ON exports (owner, created_at, id)
    WHERE status = 'queued' AND admitted_at IS NULL;

ALTER TABLE export_chunks ADD COLUMN IF NOT EXISTS enqueued boolean NOT NULL DEFAULT false;
