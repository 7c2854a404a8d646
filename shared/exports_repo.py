"""The export record in PostgreSQL: creating, reading, and every state transition.

Invariant: each transition is one short statement guarded by the state it leaves (and, for
chunks, by the attempt number that fences out older workers), so concurrent or repeated
calls apply at most once; no transaction here spans a call to S3 or Redis.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.planning import Plan
from shared.spec import ExportSpec

TERMINAL = ("completed", "failed", "cancelled", "expired")
ATTEMPT_SLOTS = 10  # S3 part numbers reserved per chunk: attempt k of chunk n writes part (n-1)*10+k
Row = dict[str, Any]


def upload_part_number(part_number: int, attempt: int) -> int:
    """The S3 part number attempt ``attempt`` of chunk ``part_number`` writes.

    Each attempt writes its own S3 part, so a paused ("zombie") attempt can never overwrite
    the part of the attempt that took its chunk over; the finalizer lists only the parts of
    the recorded attempts. Raises ValueError past :data:`ATTEMPT_SLOTS` attempts.
    """
    if not 1 <= attempt <= ATTEMPT_SLOTS:
        raise ValueError(f"chunk {part_number} reached attempt {attempt}; at most {ATTEMPT_SLOTS} are allowed")
    return (part_number - 1) * ATTEMPT_SLOTS + attempt


def request_hash(spec: ExportSpec) -> str:
    """A digest of the normalised request: what an idempotency key is bound to."""
    return hashlib.sha256(json.dumps(spec.to_json(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def create_export(conn: psycopg.Connection, owner: str, spec: ExportSpec,
                  idempotency_key: str | None = None) -> tuple[Row, bool]:
    """Insert a queued export; with an idempotency key, return the owner's existing one instead.

    Returns:
        ``(row, created)``. With a key already used by this owner, ``row`` is that export
        and ``created`` is False — whatever its request was (the caller compares
        ``request_hash``). Concurrent identical calls create exactly one row.
    """
    digest = request_hash(spec)
    row = conn.execute(
        "INSERT INTO exports (id, owner, dataset, spec, filename, idempotency_key, request_hash)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *",
        (uuid.uuid4(), owner, spec.dataset, Jsonb(spec.to_json()), spec.filename, idempotency_key, digest),
    ).fetchone()
    if row is not None:
        return row, True
    existing = conn.execute("SELECT * FROM exports WHERE owner = %s AND idempotency_key = %s",
                            (owner, idempotency_key)).fetchone()
    return existing, False


def get_export(conn: psycopg.Connection, export_id: str | uuid.UUID, owner: str | None = None) -> Row | None:
    """Return the export, or None; with ``owner``, None also when it belongs to someone else."""
    try:
        export_uuid = uuid.UUID(str(export_id))
    except ValueError:
        return None
    if owner is None:
        return conn.execute("SELECT * FROM exports WHERE id = %s", (export_uuid,)).fetchone()
    return conn.execute("SELECT * FROM exports WHERE id = %s AND owner = %s", (export_uuid, owner)).fetchone()


def list_exports(conn: psycopg.Connection, owner: str, limit: int,
                 before: tuple[datetime, uuid.UUID] | None = None) -> list[Row]:
    """The owner's exports, newest first, after the ``before`` cursor (keyset pagination)."""
    if before is None:
        return conn.execute("SELECT * FROM exports WHERE owner = %s ORDER BY created_at DESC, id DESC LIMIT %s",
                            (owner, limit)).fetchall()
    return conn.execute(
        "SELECT * FROM exports WHERE owner = %s AND (created_at, id) < (%s, %s)"
        " ORDER BY created_at DESC, id DESC LIMIT %s", (owner, before[0], before[1], limit)).fetchall()


def start_export(conn: psycopg.Connection, export_id: uuid.UUID, plan: Plan, object_key: str,
                 upload_id: str) -> bool:
    """Record the plan and the multipart upload; queued → running. False if no longer queued."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE exports SET status = 'running', started_at = now(), updated_at = now(),"
            " total_rows = %s, parts_total = %s, key_high_water = %s, object_key = %s, upload_id = %s"
            " WHERE id = %s AND status = 'queued' RETURNING id",
            (plan.total_rows, len(plan.chunks), plan.high_water, object_key, upload_id, export_id)).fetchone()
        if row is None:
            return False
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO export_chunks (export_id, part_number, key_lo, key_hi, planned_rows)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(export_id, c.part_number, c.lo, c.hi, c.rows) for c in plan.chunks])
    return True


def claim_chunk(conn: psycopg.Connection, export_id: uuid.UUID, part_number: int, worker: str,
                lease_s: int) -> Row | None:
    """Take a chunk for a new attempt (pending, or running with an expired lease).

    Returns the chunk row with its new ``attempt`` — the fencing token every later write of
    this attempt must present — or None when the chunk is done, leased by a live worker, or
    its export is not running.
    """
    return conn.execute(
        "UPDATE export_chunks c SET status = 'running', attempt = c.attempt + 1, lease_owner = %s,"
        " lease_expires_at = now() + make_interval(secs => %s), started_at = now()"
        " FROM exports e WHERE e.id = c.export_id AND e.status = 'running'"
        " AND c.export_id = %s AND c.part_number = %s"
        " AND (c.status = 'pending' OR (c.status = 'running' AND c.lease_expires_at < now()))"
        " RETURNING c.*, e.object_key, e.upload_id, e.spec",
        (worker, lease_s, export_id, part_number)).fetchone()


def renew_lease(conn: psycopg.Connection, export_id: uuid.UUID, part_number: int, attempt: int,
                lease_s: int) -> bool:
    """Extend this attempt's lease; False when the attempt was superseded or the chunk ended."""
    return conn.execute(
        "UPDATE export_chunks SET lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE export_id = %s AND part_number = %s AND attempt = %s AND status = 'running' RETURNING 1",
        (lease_s, export_id, part_number, attempt)).fetchone() is not None


def release_chunk(conn: psycopg.Connection, export_id: uuid.UUID, part_number: int, attempt: int) -> bool:
    """Hand a chunk back (running → pending) after a failed attempt, so a retry can claim it."""
    return conn.execute(
        "UPDATE export_chunks SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL"
        " WHERE export_id = %s AND part_number = %s AND attempt = %s AND status = 'running' RETURNING 1",
        (export_id, part_number, attempt)).fetchone() is not None


def next_recovery(conn: psycopg.Connection, export_id: uuid.UUID, part_number: int,
                  expected_job_id: str | None = None) -> int | None:
    """Count one more replacement job for a chunk and record its id (compare-and-set).

    Returns the recovery number to name the new job with, or None when ``expected_job_id``
    is given and no longer the chunk's job (another caller replaced it first).
    """
    row = conn.execute(
        "UPDATE export_chunks SET recoveries = recoveries + 1, enqueued = true,"
        " job_id = 'export-' || export_id || '-part-' || lpad(part_number::text, 5, '0') || '-r' || (recoveries + 1)"
        " WHERE export_id = %s AND part_number = %s AND (%s::text IS NULL OR job_id IS NOT DISTINCT FROM %s)"
        " RETURNING recoveries", (export_id, part_number, expected_job_id, expected_job_id)).fetchone()
    return row["recoveries"] if row else None


def record_part(conn: psycopg.Connection, export_id: uuid.UUID, part_number: int, attempt: int,
                etag: str, rows: int, size: int) -> tuple[bool, bool]:
    """Record an uploaded part and add it to the export's progress, fenced by ``attempt``.

    Returns:
        ``(recorded, finalize)``: whether this attempt's write was accepted, and whether it
        was the last part so that this caller must enqueue the finalizer (true exactly once).
    """
    with conn.transaction():
        done = conn.execute(
            "UPDATE export_chunks SET status = 'done', etag = %s, rows = %s, bytes = %s, finished_at = now(),"
            " upload_part_number = %s, lease_expires_at = NULL WHERE export_id = %s AND part_number = %s"
            " AND attempt = %s AND status = 'running' RETURNING 1",
            (etag, rows, size, upload_part_number(part_number, attempt), export_id, part_number, attempt)).fetchone()
        if done is None:
            return False, False
        row = conn.execute(
            "UPDATE exports SET rows_done = rows_done + %s, bytes_done = bytes_done + %s,"
            " parts_done = parts_done + 1, updated_at = now() WHERE id = %s AND status = 'running'"
            " RETURNING parts_done, parts_total", (rows, size, export_id)).fetchone()
        if row is None:
            return True, False
        return True, row["parts_done"] == row["parts_total"]


def done_parts(conn: psycopg.Connection, export_id: uuid.UUID) -> list[Row]:
    """The recorded parts in order, each with the S3 part number its attempt wrote."""
    return conn.execute(
        "SELECT part_number, upload_part_number, etag, rows, bytes FROM export_chunks"
        " WHERE export_id = %s AND status = 'done' ORDER BY part_number", (export_id,)).fetchall()


def claim_finalize(conn: psycopg.Connection, export_id: uuid.UUID, lease_s: int) -> int | None:
    """Take the finalizer's lease of a running export whose parts are all recorded.

    Returns the finalize attempt (the fencing token of :func:`complete_export`), or None when
    the export is not ready, not running, or another finalizer holds a live lease.
    """
    row = conn.execute(
        "UPDATE exports SET finalize_attempt = finalize_attempt + 1,"
        " finalize_lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE id = %s AND status = 'running' AND parts_done = parts_total"
        " AND (finalize_lease_expires_at IS NULL OR finalize_lease_expires_at < now())"
        " RETURNING finalize_attempt", (lease_s, export_id)).fetchone()
    return row["finalize_attempt"] if row else None


def complete_export(conn: psycopg.Connection, export_id: uuid.UUID, object_bytes: int, rows: int,
                    ttl_s: int, finalize_attempt: int) -> bool:
    """running → completed with the object's size and expiry, fenced by the finalize attempt."""
    return conn.execute(
        "UPDATE exports SET status = 'completed', object_bytes = %s, total_rows = %s, rows_done = %s,"
        " finished_at = now(), updated_at = now(), expires_at = now() + make_interval(secs => %s),"
        " finalize_lease_expires_at = NULL"
        " WHERE id = %s AND status = 'running' AND finalize_attempt = %s RETURNING 1",
        (object_bytes, rows, rows, ttl_s, export_id, finalize_attempt)).fetchone() is not None


def _end_export(conn: psycopg.Connection, export_id: uuid.UUID, status: str, error: str | None) -> Row | None:
    """queued/running → ``status``; its unfinished chunks are cancelled too (fencing out their writes)."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE exports SET status = %s, error = coalesce(%s, error), finished_at = now(), updated_at = now()"
            " WHERE id = %s AND status IN ('queued', 'running') RETURNING *", (status, error, export_id)).fetchone()
        if row is not None:
            conn.execute("UPDATE export_chunks SET status = 'cancelled', lease_expires_at = NULL"
                         " WHERE export_id = %s AND status IN ('pending', 'running')", (export_id,))
    return row


def cancel_export(conn: psycopg.Connection, export_id: uuid.UUID) -> Row | None:
    """queued/running → cancelled; return the row, or None when it was not queued or running."""
    return _end_export(conn, export_id, "cancelled", None)


def fail_export(conn: psycopg.Connection, export_id: uuid.UUID, error: str) -> Row | None:
    """queued/running → failed with ``error``; return the row (for cleanup) or None if terminal."""
    return _end_export(conn, export_id, "failed", error[:2000])
