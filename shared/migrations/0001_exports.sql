-- Export state: API keys, exports, and the chunks (multipart parts) of each export.
-- Postgres is the source of truth for an export; Redis/RQ only triggers work.

CREATE TABLE IF NOT EXISTS api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text        NOT NULL CHECK (owner <> ''),
    key_hash    text        NOT NULL UNIQUE,          -- sha256 hex of the key; keys are never stored
    key_prefix  text        NOT NULL,                 -- first characters, to tell keys apart in listings
    is_admin    boolean     NOT NULL DEFAULT false,   -- operators: may cancel any export
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE IF NOT EXISTS exports (
    id               uuid        PRIMARY KEY,
    owner            text        NOT NULL,
    dataset          text        NOT NULL,
    spec             jsonb       NOT NULL,            -- the validated, normalised request
    filename         text        NOT NULL,
    status           text        NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'expired')),
    total_rows       bigint,                          -- known once planned
    rows_done        bigint      NOT NULL DEFAULT 0,
    bytes_done       bigint      NOT NULL DEFAULT 0,
    parts_total      integer,
    parts_done       integer     NOT NULL DEFAULT 0,
    key_high_water   bigint,                          -- rows with a larger key are not exported
    object_key       text,
    upload_id        text,
    object_bytes     bigint,
    error            text,
    idempotency_key  text,
    request_hash     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    expires_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS exports_owner_created ON exports (owner, created_at DESC, id DESC);
CREATE UNIQUE INDEX IF NOT EXISTS exports_owner_idempotency
    ON exports (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS exports_unfinished ON exports (status) WHERE status IN ('queued', 'running');

CREATE TABLE IF NOT EXISTS export_chunks (
    export_id        uuid        NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    part_number      integer     NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    key_lo           bigint,                          -- exclusive lower bound; NULL: from the start
    key_hi           bigint,                          -- inclusive upper bound; NULL: empty export
    planned_rows     bigint      NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'done', 'cancelled')),
    attempt          integer     NOT NULL DEFAULT 0,  -- fencing token: only the newest attempt may write
    lease_owner      text,
    lease_expires_at timestamptz,
    etag             text,
    rows             bigint,
    bytes            bigint,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (export_id, part_number)
);
CREATE INDEX IF NOT EXISTS export_chunks_leases ON export_chunks (lease_expires_at) WHERE status = 'running';
