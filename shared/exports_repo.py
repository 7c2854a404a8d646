"""The export record in PostgreSQL: creating, reading, and every state transition.

Invariant: each transition is one short statement guarded by the state it leaves (and, for
chunks, by the attempt number that fences out older workers), so concurrent or repeated
calls apply at most once; no transaction here spans a call to S3 or Redis.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.planning import Plan
from shared.spec import ExportSpec

TERMINAL = ("completed", "failed", "cancelled", "expired")
Row = dict[str, Any]


def create_export(conn: psycopg.Connection, owner: str, spec: ExportSpec) -> Row:
    """Insert a queued export and return its row."""
    return conn.execute(
        "INSERT INTO exports (id, owner, dataset, spec, filename) VALUES (%s, %s, %s, %s, %s) RETURNING *",
        (uuid.uuid4(), owner, spec.dataset, Jsonb(spec.to_json()), spec.filename),
    ).fetchone()


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
            " lease_expires_at = NULL WHERE export_id = %s AND part_number = %s AND attempt = %s"
            " AND status = 'running' RETURNING 1", (etag, rows, size, export_id, part_number, attempt)).fetchone()
        if done is None:
            return False, False
        row = conn.execute(
            "UPDATE exports SET rows_done = rows_done + %s, bytes_done = bytes_done + %s,"
            " parts_done = parts_done + 1, updated_at = now() WHERE id = %s AND status = 'running'"
            " RETURNING parts_done, parts_total", (rows, size, export_id)).fetchone()
        if row is None:
            return True, False
        if row["parts_done"] < row["parts_total"]:
            return True, False
        claimed = conn.execute("UPDATE exports SET finalizing = true WHERE id = %s AND NOT finalizing RETURNING 1",
                               (export_id,)).fetchone()
        return True, claimed is not None


def done_parts(conn: psycopg.Connection, export_id: uuid.UUID) -> list[Row]:
    """The recorded parts in part order."""
    return conn.execute(
        "SELECT part_number, etag, rows, bytes FROM export_chunks WHERE export_id = %s AND status = 'done'"
        " ORDER BY part_number", (export_id,)).fetchall()


def complete_export(conn: psycopg.Connection, export_id: uuid.UUID, object_bytes: int, rows: int,
                    ttl_s: int) -> bool:
    """running → completed with the object's size and expiry; False if it was not running."""
    return conn.execute(
        "UPDATE exports SET status = 'completed', object_bytes = %s, total_rows = %s, rows_done = %s,"
        " finished_at = now(), updated_at = now(), expires_at = now() + make_interval(secs => %s)"
        " WHERE id = %s AND status = 'running' RETURNING 1",
        (object_bytes, rows, rows, ttl_s, export_id)).fetchone() is not None


def cancel_export(conn: psycopg.Connection, export_id: uuid.UUID) -> Row | None:
    """queued/running → cancelled; its unfinished chunks are cancelled too (fencing out their writes).

    Returns the row, or None when the export was not queued or running.
    """
    with conn.transaction():
        row = conn.execute(
            "UPDATE exports SET status = 'cancelled', finished_at = now(), updated_at = now()"
            " WHERE id = %s AND status IN ('queued', 'running') RETURNING *", (export_id,)).fetchone()
        if row is not None:
            conn.execute("UPDATE export_chunks SET status = 'cancelled', lease_expires_at = NULL"
                         " WHERE export_id = %s AND status IN ('pending', 'running')", (export_id,))
    return row


def fail_export(conn: psycopg.Connection, export_id: uuid.UUID, error: str) -> Row | None:
    """queued/running → failed with ``error``; return the row (for cleanup) or None if terminal."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE exports SET status = 'failed', error = %s, finished_at = now(), updated_at = now()"
            " WHERE id = %s AND status IN ('queued', 'running') RETURNING *", (error[:2000], export_id)).fetchone()
        if row is not None:
            conn.execute("UPDATE export_chunks SET status = 'cancelled', lease_expires_at = NULL"
                         " WHERE export_id = %s AND status IN ('pending', 'running')", (export_id,))
    return row
