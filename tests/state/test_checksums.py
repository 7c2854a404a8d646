"""Checksums in the state machine: a part's CRC-32 is recorded only by the attempt that holds
its chunk, and the export's CRC-32 and ETag only by the finalize attempt that completes it."""

from __future__ import annotations

import zlib

from shared import chunks_repo, exports_repo
from tests.support.factories import (
    ROW_BYTES,
    ROWS_PER_CHUNK,
    from_now,
    make_chunks,
    make_export,
    make_running_export,
    part_bytes,
)
from worker.finalizer import object_crc32


def crc_of(export_id, part_number, conn) -> int | None:
    row = conn.execute(
        "SELECT crc32 FROM export_chunks WHERE export_id = %s AND part_number = %s", (export_id, part_number)
    ).fetchone()
    return row["crc32"]


def test_only_the_attempt_holding_the_chunk_records_its_crc(state_conn):
    export_id = make_export(state_conn, status="running", parts_total=2, object_key="k", upload_id="u")
    make_chunks(state_conn, export_id, 1, "running", lease_expires_at=from_now(-1))  # attempt 1 looks dead
    make_chunks(state_conn, export_id, 1, "pending", first=2)
    taken = chunks_repo.claim_chunk(state_conn, export_id, 1, "new:2", 30)
    assert taken is not None and taken.attempt == 2
    zombie, fresh = zlib.crc32(b"zombie bytes"), zlib.crc32(b"fresh bytes")
    assert chunks_repo.record_part(state_conn, export_id, 1, 1, '"z"', 5, 12, crc32=zombie) == (False, False)
    assert crc_of(export_id, 1, state_conn) is None  # the superseded attempt wrote nothing
    assert chunks_repo.record_part(state_conn, export_id, 1, 2, '"f"', 5, 11, crc32=fresh) == (True, False)
    assert chunks_repo.record_part(state_conn, export_id, 1, 2, '"f"', 5, 11, crc32=zombie) == (False, False)
    (part,) = chunks_repo.done_parts(state_conn, export_id)
    assert (part.crc32, part.etag, part.bytes) == (fresh, '"f"', 11)


def test_a_crc_recorded_after_a_cancel_is_refused(state_conn):
    export_id = make_running_export(state_conn, parts=1, running=1)
    exports_repo.end_export(state_conn, export_id, exports_repo.ExportStatus.CANCELLED)
    assert chunks_repo.record_part(state_conn, export_id, 1, 1, '"late"', 1, 10, crc32=1) == (False, False)
    assert crc_of(export_id, 1, state_conn) is None


def test_the_unsigned_range_of_crc32_fits(state_conn):
    export_id = make_running_export(state_conn, parts=1, running=1)
    assert chunks_repo.record_part(state_conn, export_id, 1, 1, '"e"', 1, 10, crc32=0xFFFFFFFF)[0]
    assert crc_of(export_id, 1, state_conn) == 0xFFFFFFFF


def test_the_finalizer_combines_the_recorded_crcs_in_part_order(state_conn):
    export_id = make_running_export(state_conn, parts=3, done=3)
    parts = chunks_repo.done_parts(state_conn, export_id)
    whole = b"".join(part_bytes(n, ROWS_PER_CHUNK * ROW_BYTES) for n in (1, 2, 3))
    assert object_crc32(parts) == zlib.crc32(whole)


def test_a_part_without_a_crc_leaves_the_export_without_a_checksum(state_conn):
    export_id = make_running_export(state_conn, parts=2, done=1, running=1)
    assert chunks_repo.record_part(state_conn, export_id, 2, 1, '"old-worker"', 1000, 100_000) == (True, True)
    assert object_crc32(chunks_repo.done_parts(state_conn, export_id)) is None  # none rather than a wrong one


def test_only_the_finalize_attempt_that_completes_records_the_checksum_and_etag(state_conn):
    export_id = make_running_export(state_conn, parts=2, done=2)
    first = exports_repo.claim_finalize(state_conn, export_id, 30)
    state_conn.execute(
        "UPDATE exports SET finalize_lease_expires_at = now() - interval '1 second' WHERE id = %s", (export_id,)
    )
    second = exports_repo.claim_finalize(state_conn, export_id, 30)
    assert first is not None and second is not None
    stale = exports_repo.complete_export(
        state_conn, export_id, 10, 2, 60, first, object_etag='"stale-2"', object_crc32=1
    )
    assert not stale
    assert exports_repo.complete_export(
        state_conn, export_id, 10, 2, 60, second, object_etag='"abc-2"', object_crc32=0xCAFE
    )
    export = exports_repo.get_export(state_conn, export_id)
    assert export is not None and (export.object_etag, export.object_crc32) == ('"abc-2"', 0xCAFE)
