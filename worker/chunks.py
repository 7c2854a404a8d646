"""Exporting one chunk: one COPY of its key range into one multipart part.

Invariant: a chunk's bytes depend only on the export's spec and the chunk's key range, so a
re-run produces the same bytes into the same part number; its part record and progress are
written only if this attempt still holds the chunk (fencing by attempt number). Memory is
bounded: rows are gathered into blocks of ``BLOCK_BYTES`` and spooled to a temporary file
beyond ``SPOOL_BYTES``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from dataclasses import dataclass

from redis import Redis

from shared import exports_repo as repo
from shared.db import connect_source, connect_state
from shared.query import chunk_copy, header_bytes
from shared.queue import enqueue_finalize
from shared.settings import Settings
from shared.spec import ExportSpec
from worker.uploads import upload_part

log = logging.getLogger(__name__)

BLOCK_BYTES = 1024 * 1024  # rows are joined into blocks of this size before writing
SPOOL_BYTES = 32 * 1024 * 1024  # a part larger than this is buffered on disk, not in memory


@dataclass
class ChunkResult:
    """What one chunk attempt produced."""

    rows: int
    size: int
    etag: str
    recorded: bool


def read_chunk(settings: Settings, export_id: uuid.UUID, spec: ExportSpec, part_number: int,
               lo: int | None, hi: int | None, out) -> tuple[int, int, bytes]:
    """COPY the chunk's rows as CSV into ``out``; return (rows, bytes, md5 digest).

    Part 1 starts with the optional BOM and the header row.
    """
    md5 = hashlib.md5()
    size = 0
    block = bytearray(header_bytes(spec) if part_number == 1 else b"")
    query, params = chunk_copy(spec.source, spec, lo, hi)
    with connect_source(settings, f"spillway:export:{export_id}:part:{part_number}") as source:
        with source.cursor() as cur:
            with cur.copy(query, params) as copy:
                for data in copy:
                    block += data
                    if len(block) >= BLOCK_BYTES:
                        out.write(block)
                        md5.update(block)
                        size += len(block)
                        block.clear()
            rows = cur.rowcount
    out.write(block)
    md5.update(block)
    size += len(block)
    return rows, size, md5.digest()


def export_chunk(settings: Settings, redis: Redis, export_id: uuid.UUID, part_number: int, worker: str) -> str:
    """Claim, read, upload and record one chunk; enqueue the finalizer after the last one."""
    with connect_state(settings, f"spillway:export:{export_id}:part:{part_number}") as state:
        chunk = repo.claim_chunk(state, export_id, part_number, worker, settings.lease_s)
    if chunk is None:
        return "skipped: chunk done, leased elsewhere, or export not running"
    spec = ExportSpec.from_json(chunk["spec"])
    try:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:
            rows, size, md5 = read_chunk(settings, export_id, spec, part_number, chunk["key_lo"], chunk["key_hi"],
                                         buffer)
            buffer.seek(0)
            etag = upload_part(settings, chunk["object_key"], chunk["upload_id"], part_number, buffer, size, md5)
    except BaseException:
        with connect_state(settings, f"spillway:export:{export_id}:part:{part_number}") as state:
            repo.release_chunk(state, export_id, part_number, chunk["attempt"])
        raise
    with connect_state(settings, f"spillway:export:{export_id}:part:{part_number}") as state:
        recorded, finalize = repo.record_part(state, export_id, part_number, chunk["attempt"], etag, rows, size)
    if finalize:
        enqueue_finalize(redis, settings, export_id)
    if not recorded:
        log.warning("export %s part %d attempt %d: superseded, write rejected", export_id, part_number,
                    chunk["attempt"])
        return "rejected: a newer attempt holds this chunk"
    return f"part {part_number}: {rows} rows, {size} bytes"
