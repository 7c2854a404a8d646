"""Fencing: a superseded attempt, or a stale finalizer, changes nothing."""

from __future__ import annotations

from shared import chunks_repo, exports_repo
from shared.queue import chunk_job_id
from tests.support.factories import from_now, make_chunks, make_export, make_running_export


def test_a_superseded_attempt_writes_nothing(state_conn):
    export_id = make_running_export(state_conn, parts=2, running=1)
    state_conn.execute(
        "UPDATE export_chunks SET lease_expires_at = now() - interval '1 second'"
        " WHERE export_id = %s AND part_number = 1",
        (export_id,),
    )
    taken = chunks_repo.claim_chunk(state_conn, export_id, 1, "new:2", 30)
    assert taken is not None and taken.attempt == 2 and taken.object_key and taken.upload_id
    # the old attempt 1 wakes up: every write it tries is refused
    assert not chunks_repo.renew_lease(state_conn, export_id, 1, 1, 30)
    assert not chunks_repo.release_chunk(state_conn, export_id, 1, 1)
    assert chunks_repo.record_part(state_conn, export_id, 1, 1, '"zombie"', 5, 50) == (False, False)
    # the new attempt's write counts, once
    assert chunks_repo.record_part(state_conn, export_id, 1, 2, '"fresh"', 1000, 100_000) == (True, False)
    assert chunks_repo.record_part(state_conn, export_id, 1, 2, '"again"', 1000, 100_000) == (False, False)
    export = exports_repo.get_export(state_conn, export_id)
    assert export is not None and (export.parts_done, export.rows_done) == (1, 1000)
    (part,) = chunks_repo.done_parts(state_conn, export_id)
    assert (part.etag, part.upload_part_number) == ('"fresh"', chunks_repo.upload_part_number(1, 2))


def test_the_last_part_asks_for_the_finalizer_exactly_once(state_conn):
    export_id = make_running_export(state_conn, parts=3, done=1, running=2)
    assert chunks_repo.record_part(state_conn, export_id, 2, 1, '"a"', 1, 10) == (True, False)
    assert chunks_repo.record_part(state_conn, export_id, 3, 1, '"b"', 1, 10) == (True, True)
    assert chunks_repo.record_part(state_conn, export_id, 3, 1, '"b"', 1, 10) == (False, False)


def test_a_part_recorded_after_the_export_ended_is_refused(state_conn):
    export_id = make_running_export(state_conn, parts=2, running=2)
    exports_repo.end_export(state_conn, export_id, exports_repo.ExportStatus.CANCELLED)
    assert chunks_repo.record_part(state_conn, export_id, 1, 1, '"late"', 1, 10) == (False, False)
    assert not chunks_repo.renew_lease(state_conn, export_id, 2, 1, 30)


def test_one_finalizer_at_a_time_and_a_stale_one_cannot_complete(state_conn):
    export_id = make_running_export(state_conn, parts=2, done=2)
    first = exports_repo.claim_finalize(state_conn, export_id, 30)
    assert first == 1
    assert exports_repo.claim_finalize(state_conn, export_id, 30) is None  # lease held
    state_conn.execute(
        "UPDATE exports SET finalize_lease_expires_at = now() - interval '1 second' WHERE id = %s", (export_id,)
    )
    second = exports_repo.claim_finalize(state_conn, export_id, 30)
    assert second == 2
    assert not exports_repo.complete_export(state_conn, export_id, 10, 2, 60, first)  # fenced out
    assert exports_repo.complete_export(state_conn, export_id, 10, 2, 60, second)
    assert not exports_repo.complete_export(state_conn, export_id, 10, 2, 60, second)  # once


def test_a_finalizer_is_not_claimed_before_every_part_is_recorded(state_conn):
    export_id = make_running_export(state_conn, parts=2, done=1, running=1)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) is None


def test_recovery_is_a_compare_and_set_on_the_job_id(state_conn):
    export_id = make_export(state_conn, status="running", parts_total=1, object_key="k", upload_id="u")
    make_chunks(state_conn, export_id, 1, "running", lease_expires_at=from_now(-1))
    first = chunks_repo.next_recovery(state_conn, export_id, 1, chunk_job_id(export_id, 1))
    assert first == 1
    assert chunks_repo.next_recovery(state_conn, export_id, 1, chunk_job_id(export_id, 1)) is None  # raced
    job = state_conn.execute(
        "SELECT job_id, recoveries FROM export_chunks WHERE export_id = %s", (export_id,)
    ).fetchone()
    assert (job["job_id"], job["recoveries"]) == (chunk_job_id(export_id, 1, 1), 1)
    assert chunks_repo.next_recovery(state_conn, export_id, 1) == 2  # a hand-back names no job
