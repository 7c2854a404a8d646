"""Admission and windows: who may run now, and which chunks may be queued now.

Invariant: an owner never has more than ``max_running_per_owner`` exports admitted and not
finished (the rest wait in creation order), and an export never has more than
``max_chunks_in_flight`` chunk jobs queued or running. Both decisions are taken under an
advisory lock, so concurrent callers cannot overshoot; the callers enqueue what these
functions return after the transaction commits. Connections must return rows as dicts.
"""

from __future__ import annotations

import uuid

import psycopg

_OWNER_LOCK = 0x4F574E  # advisory lock namespace: "OWN"
_EXPORT_LOCK = 0x455850  # advisory lock namespace: "EXP"


def admit_waiting(conn: psycopg.Connection, owner: str, cap: int) -> list[uuid.UUID]:
    """Admit the owner's oldest waiting exports while fewer than ``cap`` are active.

    Returns:
        The ids of the exports admitted now: the caller enqueues their planners.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_OWNER_LOCK, owner))
        active = conn.execute(
            "SELECT count(*) AS n FROM exports WHERE owner = %s"
            " AND (status = 'running' OR (status = 'queued' AND admitted_at IS NOT NULL))", (owner,)).fetchone()
        free = cap - active["n"]
        if free <= 0:
            return []
        rows = conn.execute(
            "UPDATE exports SET admitted_at = now() WHERE id IN ("
            " SELECT id FROM exports WHERE owner = %s AND status = 'queued' AND admitted_at IS NULL"
            " ORDER BY created_at, id LIMIT %s) RETURNING id, created_at", (owner, free)).fetchall()
    return [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]


def next_chunks(conn: psycopg.Connection, export_id: uuid.UUID, window: int) -> list[int]:
    """Mark the next pending chunks as enqueued, keeping at most ``window`` in flight.

    Returns:
        The part numbers to enqueue now, in order (empty if the window is full or the
        export is not running).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_EXPORT_LOCK, str(export_id)))
        rows = conn.execute(
            "UPDATE export_chunks SET enqueued = true, job_id = %(job)s || lpad(part_number::text, 5, '0')"
            " WHERE export_id = %(id)s AND part_number IN ("
            " SELECT c.part_number FROM export_chunks c JOIN exports e ON e.id = c.export_id"
            " WHERE c.export_id = %(id)s AND e.status = 'running' AND NOT c.enqueued AND c.status = 'pending'"
            " ORDER BY c.part_number LIMIT greatest(0, %(window)s - ("
            "  SELECT count(*) FROM export_chunks WHERE export_id = %(id)s AND enqueued"
            "  AND status IN ('pending', 'running'))))"
            " RETURNING part_number", {"id": export_id, "window": window, "job": f"export-{export_id}-part-"}).fetchall()
    return sorted(r["part_number"] for r in rows)
