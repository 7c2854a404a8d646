"""Plain factories of state rows: exports, their chunks and API keys, inserted directly.

Invariant: a factory writes only through the connection it is given, inside the caller's
transaction (it never commits, enqueues or calls S3), so a test that rolls back leaves
nothing behind. A row looks like what the worker code would have written at that point of
an export's life; any column can be given instead. Timestamps are computed by PostgreSQL
from ``now()`` (see :func:`from_now`), so they agree with the ``now()`` of the SQL under test.
"""

from __future__ import annotations

import uuid
import zlib
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from shared.chunks_repo import upload_part_number
from shared.exports_repo import request_hash
from shared.keys import create_key, hash_key
from shared.models import ExportStatus
from shared.queue import chunk_job_id
from shared.settings import Settings
from shared.spec import parse_spec
from shared.storage import object_key

ROWS_PER_CHUNK = 1_000  # planned rows of a factory chunk; chunk n holds keys ((n-1)*1000, n*1000]
ROW_BYTES = 100  # a made-up CSV row width: a done chunk of 1,000 rows recorded 100,000 bytes
LEASE_S = 30  # a factory lease: live for the length of any test unless a test says otherwise
EXPIRY_S = 86_400  # a completed factory export expires in a day: not during a test
LEASE_OWNER = "factory-host:0"  # who holds a factory chunk's lease (a worker's "host:pid")
STARTED = (ExportStatus.RUNNING, ExportStatus.COMPLETED, ExportStatus.EXPIRED)  # planned and started
FINISHED = tuple(s for s in ExportStatus if s.finished)


def part_bytes(part_number: int, size: int) -> bytes:
    """The made-up bytes of a factory part: what a done chunk's ``crc32`` is the CRC-32 of."""
    pattern = f"{part_number},factory row\n".encode()
    return (pattern * (size // len(pattern) + 1))[:size]


def from_now(seconds: float) -> sql.Composable:
    """A column value: the transaction's ``now()`` plus ``seconds`` (negative: in the past).

    Example: ``make_export(conn, created_at=from_now(-60))``, ``lease_expires_at=from_now(-1)``.
    """
    return sql.SQL("now() + make_interval(secs => {})").format(sql.Literal(seconds))


def make_export(
    conn: psycopg.Connection,
    owner: str = "alice",
    status: str = "queued",
    dataset: str = "products",
    spec: dict[str, Any] | None = None,
    admitted: bool = False,
    **columns: Any,
) -> uuid.UUID:
    """Insert an export; return its id.

    Args:
        conn: a connection to the state database (any row factory).
        owner: whose export it is.
        status: its status; the timestamps of that status are set (``started_at`` from
            running on, ``finished_at`` once it ended, ``expires_at`` a day ahead when completed
            and just past when expired).
        dataset: the dataset of the default request ``{"dataset": dataset}``.
        spec: the request body instead, validated by :func:`shared.spec.parse_spec`.
        admitted: whether a queued export's planner was enqueued (``admitted_at`` set);
            an export past ``queued`` was always admitted.
        **columns: other columns of ``exports`` (``id``, ``created_at``, ``error``, ...), as
            values or as SQL such as :func:`from_now`.
    """
    parsed = parse_spec(spec if spec is not None else {"dataset": dataset})
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "owner": owner,
        "dataset": parsed.dataset,
        "spec": Jsonb(parsed.to_json()),
        "filename": parsed.filename,
        "status": status,
        "request_hash": request_hash(parsed),
        "admitted_at": from_now(0) if admitted or status != "queued" else None,
        "started_at": from_now(0) if status in STARTED else None,
        "finished_at": from_now(0) if status in FINISHED else None,
        "expires_at": {"completed": from_now(EXPIRY_S), "expired": from_now(-1)}.get(status),
    }
    return _insert(conn, "exports", {**values, **columns}, "id")


def make_chunks(
    conn: psycopg.Connection,
    export_id: uuid.UUID,
    count: int,
    status: str = "pending",
    first: int = 1,
    rows_per_chunk: int = ROWS_PER_CHUNK,
    **columns: Any,
) -> list[int]:
    """Insert ``count`` chunks of an export, numbered from ``first``; return their part numbers.

    Chunk ``n`` covers the keys ``((n-1) * rows_per_chunk, n * rows_per_chunk]`` (part 1 from
    the start). By status:

    - ``pending``: never claimed (attempt 0), not enqueued.
    - ``running``: attempt 1 holds a live lease (:data:`LEASE_S`), its first job enqueued.
    - ``done``: attempt 1 recorded its part (etag, rows, bytes, CRC-32 of :func:`part_bytes`,
      S3 part number).
    - ``cancelled``: attempt 0, ended with its export.

    Args:
        **columns: other columns of ``export_chunks``, the same for every chunk (``attempt``,
            ``lease_expires_at=from_now(-1)`` for an expired lease, ``enqueued``, ...).
    """
    parts = list(range(first, first + count))
    for n in parts:
        claimed = status in ("running", "done")
        values: dict[str, Any] = {
            "export_id": export_id,
            "part_number": n,
            "status": status,
            "key_lo": str((n - 1) * rows_per_chunk) if n > 1 else None,  # keys in their text form
            "key_hi": str(n * rows_per_chunk),
            "planned_rows": rows_per_chunk,
            "attempt": 1 if claimed else 0,
            "enqueued": claimed,
            "job_id": chunk_job_id(export_id, n) if claimed else None,
            "started_at": from_now(0) if claimed else None,
        }
        if status == "running":
            values.update(lease_owner=LEASE_OWNER, lease_expires_at=from_now(LEASE_S))
        if status == "done":
            values.update(
                etag=f'"factory-etag-{n}"',
                rows=rows_per_chunk,
                bytes=rows_per_chunk * ROW_BYTES,
                crc32=zlib.crc32(part_bytes(n, rows_per_chunk * ROW_BYTES)),
                upload_part_number=upload_part_number(n, 1),
                finished_at=from_now(0),
            )
        _insert(conn, "export_chunks", {**values, **columns}, "part_number")
    return parts


def make_running_export(
    conn: psycopg.Connection,
    parts: int = 3,
    done: int = 0,
    running: int = 0,
    settings: Settings | None = None,
    rows_per_chunk: int = ROWS_PER_CHUNK,
    **columns: Any,
) -> uuid.UUID:
    """Insert a planned, running export with its chunks; return its id.

    Chunks ``1..done`` are done, the next ``running`` are held by a live lease, the rest are
    pending; the export's progress counts the done ones. Its ``object_key`` follows the
    planner's layout under ``settings.s3_prefix``; its ``upload_id`` is made up (no upload
    exists on S3: give ``upload_id=`` of a real one to test what touches S3).

    Args:
        settings: where the object key lives (the default settings' prefix when omitted).
        **columns: other columns of ``exports`` (``owner``, ``spec``, ...), as for :func:`make_export`.
    """
    if done + running > parts:
        raise ValueError(f"{done} done and {running} running chunks do not fit in {parts}")
    export_id = columns.pop("id", None) or uuid.uuid4()
    spec = parse_spec(columns.get("spec") or {"dataset": columns.get("dataset", "products")})
    progress = {
        "total_rows": parts * rows_per_chunk,
        "parts_total": parts,
        "key_high_water": str(parts * rows_per_chunk),
        "parts_done": done,
        "rows_done": done * rows_per_chunk,
        "bytes_done": done * rows_per_chunk * ROW_BYTES,
        "object_key": object_key(settings or Settings(), export_id, spec.filename),
        "upload_id": f"factory-upload-{export_id}",
    }
    with conn.transaction():
        make_export(conn, status="running", id=export_id, **{**progress, **columns})
        make_chunks(conn, export_id, done, "done", rows_per_chunk=rows_per_chunk)
        make_chunks(conn, export_id, running, "running", first=done + 1, rows_per_chunk=rows_per_chunk)
        make_chunks(
            conn, export_id, parts - done - running, "pending", first=done + running + 1, rows_per_chunk=rows_per_chunk
        )
    return export_id


def make_api_key(conn: psycopg.Connection, owner: str = "alice", admin: bool = False, revoked: bool = False) -> str:
    """Create an API key (stored hashed, as :func:`shared.keys.create_key` does); return the key."""
    key = create_key(conn, owner, admin)
    if revoked:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_hash = %s", (hash_key(key),))
    return key


def _insert(conn: psycopg.Connection, table: str, values: dict[str, Any], returning: str) -> Any:
    """INSERT one row: plain values as parameters, :class:`psycopg.sql.Composable` ones as SQL."""
    expressions = [v if isinstance(v, sql.Composable) else sql.Placeholder() for v in values.values()]
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(expressions),
        sql.Identifier(returning),
    )
    params = [v for v in values.values() if not isinstance(v, sql.Composable)]
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchone()[0]
