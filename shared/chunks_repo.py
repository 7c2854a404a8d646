"""The chunk records in PostgreSQL: claiming, leases, hand-backs, recoveries, parts, windows.

Invariant: a chunk is written only by the attempt that holds it. Claiming increments the
chunk's ``attempt`` — the fencing token — and every later write of that attempt (lease,
release, part record) is guarded by it and by the statuses :mod:`shared.models` allows, so
a superseded ("zombie") attempt changes nothing. Job ids are named by :mod:`shared.queue`
and stored as parameters, never composed in SQL.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql

from shared.models import Chunk, ChunkStatus, ClaimedChunk, ExportStatus, chunk_sources
from shared.queue import chunk_job_id
from shared.records import columns, fetch_all, fetch_one, fetch_tuples, fetch_value

Conn = psycopg.Connection[Any]
ATTEMPT_SLOTS = 10  # S3 part numbers reserved per chunk: attempt k of chunk n writes part (n-1)*10+k
_EXPORT_LOCK = 0x455850  # advisory lock namespace of chunk windows: "EXP"


def upload_part_number(part_number: int, attempt: int) -> int:
    """The S3 part number attempt ``attempt`` of chunk ``part_number`` writes.

    Each attempt writes its own S3 part, so a paused ("zombie") attempt can never overwrite
    the part of the attempt that took its chunk over; the finalizer lists only the parts of
    the recorded attempts. Raises ValueError past :data:`ATTEMPT_SLOTS` attempts.
    """
    if not 1 <= attempt <= ATTEMPT_SLOTS:
        raise ValueError(f"chunk {part_number} reached attempt {attempt}; at most {ATTEMPT_SLOTS} are allowed")
    return (part_number - 1) * ATTEMPT_SLOTS + attempt


def claim_chunk(conn: Conn, export_id: uuid.UUID, part_number: int, worker: str, lease_s: int) -> ClaimedChunk | None:
    """Take a chunk for a new attempt (pending, or running with an expired lease).

    Returns the chunk with its new ``attempt`` — the fencing token every later write of this
    attempt must present — or None when the chunk is done, leased by a live worker, or its
    export is not running.
    """
    return fetch_one(
        conn,
        ClaimedChunk,
        sql.SQL(
            "UPDATE export_chunks c SET status = %s, attempt = c.attempt + 1, lease_owner = %s,"
            " lease_expires_at = now() + make_interval(secs => %s), started_at = now()"
            " FROM exports e WHERE e.id = c.export_id AND e.status = %s"
            " AND c.export_id = %s AND c.part_number = %s"
            " AND (c.status = %s OR (c.status = %s AND c.lease_expires_at < now()))"
            " RETURNING {}, e.object_key, e.upload_id, e.spec, e.owner, e.part_checksum"
        ).format(columns(Chunk, "c")),
        (
            ChunkStatus.RUNNING,
            worker,
            lease_s,
            ExportStatus.RUNNING,
            export_id,
            part_number,
            ChunkStatus.PENDING,
            ChunkStatus.RUNNING,
        ),
    )


def renew_lease(conn: Conn, export_id: uuid.UUID, part_number: int, attempt: int, lease_s: int) -> bool:
    """Extend this attempt's lease; False when the attempt was superseded or the chunk ended."""
    return (
        fetch_value(
            conn,
            "UPDATE export_chunks SET lease_expires_at = now() + make_interval(secs => %s)"
            " WHERE export_id = %s AND part_number = %s AND attempt = %s AND status = %s RETURNING 1",
            (lease_s, export_id, part_number, attempt, ChunkStatus.RUNNING),
        )
        is not None
    )


def release_chunk(conn: Conn, export_id: uuid.UUID, part_number: int, attempt: int) -> bool:
    """Hand a chunk back (running → pending) after a failed attempt, so a retry can claim it."""
    return (
        fetch_value(
            conn,
            "UPDATE export_chunks SET status = %s, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE export_id = %s AND part_number = %s AND attempt = %s AND status = ANY(%s) RETURNING 1",
            (ChunkStatus.PENDING, export_id, part_number, attempt, chunk_sources(ChunkStatus.PENDING)),
        )
        is not None
    )


def next_recovery(conn: Conn, export_id: uuid.UUID, part_number: int, expected_job_id: str | None = None) -> int | None:
    """Count one more replacement job for a chunk and record its id (compare-and-set).

    Returns the recovery number the new job is named with (:func:`shared.queue.chunk_job_id`),
    or None when ``expected_job_id`` is given and no longer the chunk's job (another caller
    replaced it first).
    """
    with conn.transaction():
        current = fetch_tuples(
            conn,
            "SELECT recoveries, job_id FROM export_chunks WHERE export_id = %s AND part_number = %s FOR UPDATE",
            (export_id, part_number),
        )
        if not current or (expected_job_id is not None and current[0][1] != expected_job_id):
            return None
        recovery = int(current[0][0]) + 1
        conn.execute(
            "UPDATE export_chunks SET recoveries = %s, enqueued = true, job_id = %s"
            " WHERE export_id = %s AND part_number = %s",
            (recovery, chunk_job_id(export_id, part_number, recovery), export_id, part_number),
        )
    return recovery


def record_part(
    conn: Conn,
    export_id: uuid.UUID,
    part_number: int,
    attempt: int,
    etag: str,
    rows: int,
    size: int,
    *,
    crc32: int | None = None,
    raw_bytes: int | None = None,
    raw_crc32: int | None = None,
) -> tuple[bool, bool]:
    """Record an uploaded part and add it to the export's progress, fenced by ``attempt``.

    Args:
        crc32: the CRC-32 of the part's bytes (:func:`zlib.crc32`), recorded in the same fenced
            statement as the ETag; None only from a worker that does not compute it, and then
            the export gets no whole-object checksum.
        raw_bytes, raw_crc32: size and CRC-32 of the bytes before compression (gzip, xlsx).

    Returns:
        ``(recorded, finalize)``: whether this attempt's write was accepted, and whether it
        was the last part so that this caller must enqueue the finalizer (true exactly once).
    """
    with conn.transaction():
        # Lock order: the export's row before its chunks' rows, as ending an export takes them
        # (a cancel meeting this write the other way round was a deadlock).
        fetch_value(conn, "SELECT 1 FROM exports WHERE id = %s FOR NO KEY UPDATE", (export_id,))
        done = fetch_value(
            conn,
            "UPDATE export_chunks SET status = %s, etag = %s, rows = %s, bytes = %s, crc32 = %s, raw_bytes = %s,"
            " raw_crc32 = %s, finished_at = now(), upload_part_number = %s, lease_expires_at = NULL"
            " WHERE export_id = %s AND part_number = %s"
            " AND attempt = %s AND status = ANY(%s) RETURNING 1",
            (
                ChunkStatus.DONE,
                etag,
                rows,
                size,
                crc32,
                raw_bytes,
                raw_crc32,
                upload_part_number(part_number, attempt),
                export_id,
                part_number,
                attempt,
                chunk_sources(ChunkStatus.DONE),
            ),
        )
        if done is None:
            return False, False
        progress = fetch_tuples(
            conn,
            "UPDATE exports SET rows_done = rows_done + %s, bytes_done = bytes_done + %s,"
            " parts_done = parts_done + 1, updated_at = now() WHERE id = %s AND status = %s"
            " RETURNING parts_done, parts_total",
            (rows, size, export_id, ExportStatus.RUNNING),
        )
        if not progress:
            return True, False
        return True, progress[0][0] == progress[0][1]


def done_parts(conn: Conn, export_id: uuid.UUID) -> list[Chunk]:
    """The recorded parts in order, each with the S3 part number its attempt wrote."""
    return fetch_all(
        conn,
        Chunk,
        sql.SQL("SELECT {} FROM export_chunks WHERE export_id = %s AND status = %s ORDER BY part_number").format(
            columns(Chunk)
        ),
        (export_id, ChunkStatus.DONE),
    )


def next_chunks(conn: Conn, export_id: uuid.UUID, window: int) -> list[int]:
    """Mark the next pending chunks as enqueued, keeping at most ``window`` in flight.

    Taken under an advisory lock per export, so concurrent callers never overshoot.

    Returns:
        The part numbers to enqueue now, in order (empty if the window is full or the
        export is not running); each chunk's ``job_id`` is already recorded.
    """
    unfinished = [ChunkStatus.PENDING.value, ChunkStatus.RUNNING.value]
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_EXPORT_LOCK, str(export_id)))
        parts = [
            p
            for (p,) in fetch_tuples(
                conn,
                "SELECT c.part_number FROM export_chunks c JOIN exports e ON e.id = c.export_id"
                " WHERE c.export_id = %(id)s AND e.status = %(running)s AND NOT c.enqueued AND c.status = %(pending)s"
                " ORDER BY c.part_number LIMIT greatest(0, %(window)s - ("
                "  SELECT count(*) FROM export_chunks WHERE export_id = %(id)s AND enqueued"
                "  AND status = ANY(%(unfinished)s)))",
                {
                    "id": export_id,
                    "window": window,
                    "running": ExportStatus.RUNNING,
                    "pending": ChunkStatus.PENDING,
                    "unfinished": unfinished,
                },
            )
        ]
        if parts:  # one statement: see exports_repo._insert_chunks for why not executemany
            conn.execute(
                "UPDATE export_chunks c SET enqueued = true, job_id = j.job_id"
                " FROM unnest(%s::int[], %s::text[]) AS j(part_number, job_id)"
                " WHERE c.export_id = %s AND c.part_number = j.part_number",
                (parts, [chunk_job_id(export_id, p) for p in parts], export_id),
            )
    return parts


def recoverable_chunks(conn: Conn) -> list[Chunk]:
    """Chunks of running exports that may need a new job: enqueued and pending (is the job
    still there?) or running with an expired lease (is its worker dead?)."""
    return fetch_all(
        conn,
        Chunk,
        sql.SQL(
            "SELECT {} FROM export_chunks c JOIN exports e ON e.id = c.export_id WHERE e.status = %s"
            " AND ((c.status = %s AND c.enqueued) OR (c.status = %s AND c.lease_expires_at < now()))"
            " ORDER BY c.export_id, c.part_number"
        ).format(columns(Chunk, "c")),
        (ExportStatus.RUNNING, ChunkStatus.PENDING, ChunkStatus.RUNNING),
    )


def leased_attempts(conn: Conn) -> list[tuple[uuid.UUID, int, int]]:
    """``(export, part, attempt)`` of every running chunk of a running export whose lease has
    not expired: the attempts that should have a live process (see :mod:`shared.liveness`)."""
    return [
        (export_id, part_number, attempt)
        for export_id, part_number, attempt in fetch_tuples(
            conn,
            "SELECT c.export_id, c.part_number, c.attempt FROM export_chunks c JOIN exports e ON e.id = c.export_id"
            " WHERE e.status = %s AND c.status = %s AND c.lease_expires_at >= now()",
            (ExportStatus.RUNNING, ChunkStatus.RUNNING),
        )
    ]


def expire_lease(conn: Conn, export_id: uuid.UUID, part_number: int, attempt: int) -> bool:
    """End the lease of an attempt whose process died (its chunk is then recoverable at once);
    False when that attempt no longer holds the chunk or the chunk is no longer running."""
    return (
        fetch_value(
            conn,
            "UPDATE export_chunks SET lease_expires_at = now() - interval '1 microsecond'"
            " WHERE export_id = %s AND part_number = %s AND attempt = %s AND status = %s RETURNING 1",
            (export_id, part_number, attempt, ChunkStatus.RUNNING),
        )
        is not None
    )
