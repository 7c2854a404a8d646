"""The export record in PostgreSQL: creating, reading, admitting, and every export transition.

Invariant: each transition is one short statement (or transaction) guarded by the statuses
:mod:`shared.models` allows it to leave, so concurrent or repeated calls apply at most once;
the finalizer's writes are also fenced by its attempt number. No transaction here spans a
call to S3 or Redis. Chunk rows have their own module, :mod:`shared.chunks_repo`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from shared.models import UNFINISHED, ChunkStatus, Export, ExportStatus, Upload, chunk_sources, export_sources
from shared.planning import Chunk, Plan
from shared.records import columns, fetch_all, fetch_one, fetch_tuples, fetch_value
from shared.spec import ExportSpec
from shared.webhooks import Notify

Conn = psycopg.Connection[Any]
_COLUMNS = columns(Export)
# Every status poll runs one of these: composed once, as text (composing the column list for
# each poll cost 8 % of the API's CPU per poll: 0.595 ms -> 0.547 ms, measured in-process).
_BY_ID = sql.SQL("SELECT {} FROM exports WHERE id = %s").format(_COLUMNS).as_string(None)
_BY_ID_AND_OWNER = sql.SQL("SELECT {} FROM exports WHERE id = %s AND owner = %s").format(_COLUMNS).as_string(None)
_OWNER_LOCK = 0x4F574E  # advisory lock namespace of admission: "OWN"
_QUOTA_LOCK = 0x515545  # advisory lock namespace of the queued-export quota: "QUE"
MAX_ERROR_CHARS = 2000  # an export's error message is cut to this length


def parse_export_id(export_id: str | uuid.UUID) -> uuid.UUID | None:
    """The export id as a UUID, or None unless it is written the one way ids are given out
    (lowercase, hyphenated: no braces, ``urn:uuid:``, capitals or missing hyphens)."""
    if isinstance(export_id, uuid.UUID):
        return export_id
    try:
        parsed = uuid.UUID(export_id)
    except ValueError:
        return None
    return parsed if str(parsed) == export_id else None


def request_hash(spec: ExportSpec) -> str:
    """A digest of the normalised request: what an idempotency key is bound to."""
    return hashlib.sha256(json.dumps(spec.to_json(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def create_export(
    conn: Conn, owner: str, spec: ExportSpec, idempotency_key: str | None = None, notify: Notify | None = None
) -> tuple[Export, bool]:
    """Insert a queued export; with an idempotency key, return the owner's existing one instead.

    ``notify`` (its webhook) is not part of the request an idempotency key is bound to.

    Returns:
        ``(export, created)``. With a key already used by this owner, ``export`` is that
        export and ``created`` is False — whatever its request was (the caller compares
        ``request_hash``). Concurrent identical calls create exactly one row.
    """
    digest = request_hash(spec)
    row = fetch_one(
        conn,
        Export,
        sql.SQL(
            "INSERT INTO exports (id, owner, dataset, spec, filename, status, idempotency_key, request_hash,"
            " notify_url, notify_secret) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING {}"
        ).format(_COLUMNS),
        (
            uuid.uuid4(),
            owner,
            spec.dataset,
            Jsonb(spec.to_json()),
            spec.filename,
            ExportStatus.QUEUED,
            idempotency_key,
            digest,
            notify.url if notify else None,
            notify.secret if notify else None,
        ),
    )
    if row is not None:
        return row, True
    existing = find_by_idempotency_key(conn, owner, idempotency_key or "")
    if existing is None:  # the conflicting row cannot vanish: exports are never deleted
        raise RuntimeError(f"idempotency key {idempotency_key!r} of {owner!r} conflicts with no export")
    return existing, False


def get_export(conn: Conn, export_id: str | uuid.UUID, owner: str | None = None) -> Export | None:
    """Return the export, or None; with ``owner``, None also when it belongs to someone else."""
    export_uuid = parse_export_id(export_id)
    if export_uuid is None:
        return None
    if owner is None:
        return fetch_one(conn, Export, _BY_ID, (export_uuid,))
    return fetch_one(conn, Export, _BY_ID_AND_OWNER, (export_uuid, owner))


def list_exports(conn: Conn, owner: str, limit: int, before: tuple[datetime, uuid.UUID] | None = None) -> list[Export]:
    """The owner's exports, newest first, after the ``before`` cursor (keyset pagination)."""
    if before is None:
        return fetch_all(
            conn,
            Export,
            sql.SQL("SELECT {} FROM exports WHERE owner = %s ORDER BY created_at DESC, id DESC LIMIT %s").format(
                _COLUMNS
            ),
            (owner, limit),
        )
    return fetch_all(
        conn,
        Export,
        sql.SQL(
            "SELECT {} FROM exports WHERE owner = %s AND (created_at, id) < (%s, %s)"
            " ORDER BY created_at DESC, id DESC LIMIT %s"
        ).format(_COLUMNS),
        (owner, before[0], before[1], limit),
    )


def count_queued(conn: Conn, owner: str, lock: bool = False) -> int:
    """How many of the owner's exports wait to start (``queued``).

    With ``lock``, first takes a per-owner advisory lock for the caller's transaction, so that
    concurrent creators of one owner count one after another and a quota cannot be overshot.
    """
    if lock:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_QUOTA_LOCK, owner))
    return int(
        fetch_value(conn, "SELECT count(*) FROM exports WHERE owner = %s AND status = %s", (owner, ExportStatus.QUEUED))
        or 0
    )


def find_by_idempotency_key(conn: Conn, owner: str, idempotency_key: str) -> Export | None:
    """The owner's export created with this Idempotency-Key, if any."""
    return fetch_one(
        conn,
        Export,
        sql.SQL("SELECT {} FROM exports WHERE owner = %s AND idempotency_key = %s").format(_COLUMNS),
        (owner, idempotency_key),
    )


def admit_waiting(conn: Conn, owner: str, cap: int) -> list[uuid.UUID]:
    """Admit the owner's oldest waiting exports while fewer than ``cap`` are active.

    Taken under an advisory lock per owner, so concurrent callers never overshoot the cap.

    Returns:
        The ids of the exports admitted now, oldest first: the caller enqueues their planners.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_OWNER_LOCK, owner))
        active = fetch_value(
            conn,
            "SELECT count(*) FROM exports WHERE owner = %s"
            " AND (status = %s OR (status = %s AND admitted_at IS NOT NULL))",
            (owner, ExportStatus.RUNNING, ExportStatus.QUEUED),
        )
        free = cap - int(active or 0)
        if free <= 0:
            return []
        rows = fetch_tuples(
            conn,
            "UPDATE exports SET admitted_at = now() WHERE id IN ("
            " SELECT id FROM exports WHERE owner = %s AND status = %s AND admitted_at IS NULL"
            " ORDER BY created_at, id LIMIT %s) RETURNING created_at, id",
            (owner, ExportStatus.QUEUED, free),
        )
    return [export_id for _, export_id in sorted(rows)]


def start_export(conn: Conn, export_id: uuid.UUID, plan: Plan, upload: Upload) -> bool:
    """Record the whole plan and the multipart upload; queued → running. False if no longer queued."""
    with conn.transaction():
        if not _start(conn, export_id, plan, plan.high_water, upload):
            return False
        _insert_chunks(conn, export_id, plan.chunks)
    return True


def start_streamed_export(conn: Conn, export_id: uuid.UUID, high_water: str | None, upload: Upload) -> bool:
    """Record the multipart upload of an export whose plan is streamed; queued → running.
    False if no longer queued.

    The export runs with ``parts_total`` and ``total_rows`` NULL while :func:`add_chunks`
    records its chunks, until :func:`finish_plan`: nothing finalizes it before, as
    ``parts_done = parts_total`` is never true of NULL.
    """
    return _start(conn, export_id, None, high_water, upload)


def _start(conn: Conn, export_id: uuid.UUID, plan: Plan | None, high_water: str | None, upload: Upload) -> bool:
    started = fetch_value(
        conn,
        "UPDATE exports SET status = %s, started_at = now(), updated_at = now(), total_rows = %s,"
        " parts_total = %s, key_high_water = %s, object_key = %s, upload_id = %s, part_checksum = %s"
        " WHERE id = %s AND status = ANY(%s) RETURNING id",
        (
            ExportStatus.RUNNING,
            plan.total_rows if plan else None,
            len(plan.chunks) if plan else None,
            high_water,
            upload.key,
            upload.upload_id,
            upload.part_checksum,
            export_id,
            export_sources(ExportStatus.RUNNING),
        ),
    )
    return started is not None


def _insert_chunks(conn: Conn, export_id: uuid.UUID, chunks: Sequence[Chunk]) -> None:
    """Insert pending chunks; one already there (a resumed plan cuts it again) is kept.

    One statement over arrays, not ``executemany``: psycopg sends that as a pipeline, and a
    process paused between its statements and its Sync would hold the rows it wrote, and the
    export's row, past ``idle_in_transaction_session_timeout`` (shared/db.py)."""
    conn.execute(
        "INSERT INTO export_chunks (export_id, part_number, key_lo, key_hi, planned_rows, status, layout)"
        " SELECT %s, c.part, c.lo, c.hi, c.planned, %s, c.layout"
        " FROM unnest(%s::int[], %s::text[], %s::text[], %s::bigint[], %s::jsonb[]) AS c(part, lo, hi, planned, layout)"
        " ON CONFLICT (export_id, part_number) DO NOTHING",
        (
            export_id,
            ChunkStatus.PENDING,
            [c.part_number for c in chunks],
            [c.lo for c in chunks],
            [c.hi for c in chunks],
            [c.rows for c in chunks],
            [_layout(c) for c in chunks],
        ),
    )


def _layout(chunk: Chunk) -> Jsonb | None:
    return Jsonb(chunk.layout) if chunk.layout else None


def add_chunks(conn: Conn, export_id: uuid.UUID, chunks: Sequence[Chunk]) -> bool:
    """Record more chunks of a streamed plan, which must go on from the last one recorded (the
    next part number, from its ``hi``); False when the export is no longer running, its plan
    is already finished (cancelled or failed while planning), or another planner recorded
    these part numbers first: stop planning. So two planners of one export (a planner taken
    for dead that was not) can never leave a gap or an overlap."""
    with conn.transaction():
        # The export's row first, as every writer of its chunks takes it (shared/chunks_repo.py).
        planning = fetch_value(
            conn,
            "SELECT 1 FROM exports WHERE id = %s AND status = %s AND parts_total IS NULL FOR NO KEY UPDATE",
            (export_id, ExportStatus.RUNNING),
        )
        if planning is None or not chunks:
            return planning is not None
        last_part, last_hi = planned_so_far(conn, export_id)
        if (chunks[0].part_number, chunks[0].lo) != (last_part + 1, last_hi):
            return False
        _insert_chunks(conn, export_id, chunks)
    return True


def planned_so_far(conn: Conn, export_id: uuid.UUID) -> tuple[int, str | None]:
    """The last chunk a streamed plan recorded, as ``(part number, its hi key)``; ``(0, None)``
    when none: where a resumed plan goes on."""
    rows = fetch_tuples(
        conn,
        "SELECT part_number, key_hi FROM export_chunks WHERE export_id = %s ORDER BY part_number DESC LIMIT 1",
        (export_id,),
    )
    return (int(rows[0][0]), rows[0][1]) if rows else (0, None)


def finish_plan(conn: Conn, export_id: uuid.UUID) -> bool:
    """Fix a streamed plan's totals from its chunks. True when every part is already recorded,
    so that this caller must enqueue the finalizer (:func:`shared.chunks_repo.record_part`
    saw ``parts_total`` NULL and could not)."""
    ready = fetch_value(
        conn,
        "UPDATE exports SET parts_total = c.parts, total_rows = c.planned, updated_at = now()"
        " FROM (SELECT count(*) AS parts, coalesce(sum(planned_rows), 0) AS planned FROM export_chunks"
        "  WHERE export_id = %s) AS c"
        " WHERE id = %s AND status = %s AND parts_total IS NULL RETURNING parts_done = parts_total",
        (export_id, export_id, ExportStatus.RUNNING),
    )
    return bool(ready)


def claim_finalize(conn: Conn, export_id: uuid.UUID, lease_s: int, taken_over: bool = False) -> int | None:
    """Take the finalizer's lease of a running export whose parts are all recorded.

    Returns the finalize attempt (the fencing token of :func:`complete_export`), or None when
    the export is not ready, not running, or another finalizer holds a live lease.

    Args:
        taken_over: only if an earlier attempt claimed it and its lease ran out or was ended
            (never the first claim): a take-over from a finalizer that is frozen.
    """
    attempt = fetch_value(
        conn,
        "UPDATE exports SET finalize_attempt = finalize_attempt + 1,"
        " finalize_lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE id = %s AND status = %s AND parts_done = parts_total"
        " AND (finalize_lease_expires_at IS NULL OR finalize_lease_expires_at < now())"
        " AND (NOT %s OR finalize_attempt > 0)"
        " RETURNING finalize_attempt",
        (lease_s, export_id, ExportStatus.RUNNING, taken_over),
    )
    return int(attempt) if attempt is not None else None


def renew_finalize(conn: Conn, export_id: uuid.UUID, finalize_attempt: int, lease_s: int) -> bool:
    """Extend a finalizer's lease while it composes the object; False when a newer finalize
    attempt took over or the export is no longer running."""
    return (
        fetch_value(
            conn,
            "UPDATE exports SET finalize_lease_expires_at = now() + make_interval(secs => %s)"
            " WHERE id = %s AND status = %s AND finalize_attempt = %s RETURNING 1",
            (lease_s, export_id, ExportStatus.RUNNING, finalize_attempt),
        )
        is not None
    )


def finalizers(conn: Conn) -> list[tuple[uuid.UUID, int, bool]]:
    """Every running export with all its parts recorded: ``(id, finalize attempt, whether a
    finalizer holds a live lease)``."""
    return [
        (row[0], int(row[1]), bool(row[2]))
        for row in fetch_tuples(
            conn,
            "SELECT id, finalize_attempt, coalesce(finalize_lease_expires_at >= now(), false) FROM exports"
            " WHERE status = %s AND parts_done = parts_total ORDER BY id",
            (ExportStatus.RUNNING,),
        )
    ]


def expire_finalize(conn: Conn, export_id: uuid.UUID, finalize_attempt: int) -> bool:
    """End the live lease of finalize attempt ``finalize_attempt`` (its process died, or it
    failed), so the next attempt can claim the export; False when that attempt no longer holds one."""
    return (
        fetch_value(
            conn,
            "UPDATE exports SET finalize_lease_expires_at = now() - interval '1 microsecond'"
            " WHERE id = %s AND status = %s AND finalize_attempt = %s AND finalize_lease_expires_at >= now()"
            " RETURNING 1",
            (export_id, ExportStatus.RUNNING, finalize_attempt),
        )
        is not None
    )


def complete_export(
    conn: Conn,
    export_id: uuid.UUID,
    object_bytes: int,
    rows: int,
    ttl_s: int,
    finalize_attempt: int,
    *,
    object_etag: str | None = None,
    object_crc32: int | None = None,
) -> bool:
    """running → completed with the object's size and expiry, fenced by the finalize attempt.

    Args:
        object_etag: the completed object's ETag (what the download check compares).
        object_crc32: the CRC-32 of the whole object (the parts' CRCs combined), or None when
            a part was recorded without one.
    """
    return (
        fetch_value(
            conn,
            "UPDATE exports SET status = %s, object_bytes = %s, total_rows = %s, rows_done = %s,"
            " object_etag = %s, object_crc32 = %s,"
            " finished_at = now(), updated_at = now(), expires_at = now() + make_interval(secs => %s),"
            " finalize_lease_expires_at = NULL"
            " WHERE id = %s AND status = ANY(%s) AND finalize_attempt = %s RETURNING 1",
            (
                ExportStatus.COMPLETED,
                object_bytes,
                rows,
                rows,
                object_etag,
                object_crc32,
                ttl_s,
                export_id,
                export_sources(ExportStatus.COMPLETED),
                finalize_attempt,
            ),
        )
        is not None
    )


def end_export(conn: Conn, export_id: uuid.UUID, status: ExportStatus, error: str | None = None) -> Export | None:
    """queued/running → ``status`` (failed or cancelled); its unfinished chunks are cancelled too.

    Cancelling the chunks fences out the writes of any attempt still running. Returns the
    ended export, or None when it was not queued or running (nothing changed).
    """
    if status not in (ExportStatus.FAILED, ExportStatus.CANCELLED):
        raise ValueError(f"an export is ended as failed or cancelled, not {status}")
    with conn.transaction():
        row = fetch_one(
            conn,
            Export,
            sql.SQL(
                "UPDATE exports SET status = %s, error = coalesce(%s, error), finished_at = now(), updated_at = now()"
                " WHERE id = %s AND status = ANY(%s) RETURNING {}"
            ).format(_COLUMNS),
            (status, error[:MAX_ERROR_CHARS] if error else None, export_id, export_sources(status)),
        )
        if row is not None:
            conn.execute(
                "UPDATE export_chunks SET status = %s, lease_expires_at = NULL"
                " WHERE export_id = %s AND status = ANY(%s)",
                (ChunkStatus.CANCELLED, export_id, chunk_sources(ChunkStatus.CANCELLED)),
            )
    return row


def expiring_exports(conn: Conn, limit: int) -> list[Export]:
    """Completed exports past ``expires_at``, soonest first: their objects are to be deleted."""
    return fetch_all(
        conn,
        Export,
        sql.SQL("SELECT {} FROM exports WHERE status = %s AND expires_at < now() ORDER BY expires_at LIMIT %s").format(
            _COLUMNS
        ),
        (ExportStatus.COMPLETED, limit),
    )


def mark_expired(conn: Conn, export_id: uuid.UUID) -> bool:
    """completed → expired (its object was deleted)."""
    return (
        fetch_value(
            conn,
            "UPDATE exports SET status = %s, updated_at = now() WHERE id = %s AND status = ANY(%s) RETURNING 1",
            (ExportStatus.EXPIRED, export_id, export_sources(ExportStatus.EXPIRED)),
        )
        is not None
    )


def unfinished_exports(conn: Conn) -> list[Export]:
    """Every queued or running export (what the reconciler and the janitor look after)."""
    return fetch_all(
        conn,
        Export,
        sql.SQL("SELECT {} FROM exports WHERE status = ANY(%s) ORDER BY created_at, id").format(_COLUMNS),
        ([s.value for s in UNFINISHED],),
    )
