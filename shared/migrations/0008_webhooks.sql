-- Webhooks: where an export's owner is told that it ended, and each delivery's state.
-- The secret signs the deliveries (HMAC-SHA256); it is never returned by the API.

ALTER TABLE exports ADD COLUMN IF NOT EXISTS notify_url text;
ALTER TABLE exports ADD COLUMN IF NOT EXISTS notify_secret text;

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              uuid PRIMARY KEY,                        -- X-Spillway-Delivery: the same on every retry
    export_id       uuid NOT NULL UNIQUE REFERENCES exports (id),  -- an export ends once: one delivery
    event           text NOT NULL,                           -- export.completed, export.failed, export.cancelled
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz,                            -- an attempt in progress holds it
    last_status_code integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- The reconciler's backstop looks for recently ended exports with a webhook and no delivery.
CREATE INDEX IF NOT EXISTS exports_notify_ended ON exports (finished_at) WHERE notify_url IS NOT NULL;
