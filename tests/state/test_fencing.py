"""Fencing: a superseded attempt, or a stale finalizer, changes nothing."""

from __future__ import annotations

from shared import chunks_repo, exports_repo
from shared.queue import chunk_job_id, chunk_queue
from tests.support.factories import from_now, make_chunks, make_export, make_running_export
from worker import reconciler
from worker.chunks import hand_back


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


def _expire_lease(conn, export_id) -> None:
    conn.execute(
        "UPDATE export_chunks SET lease_expires_at = now() - interval '1 second' WHERE export_id = %s", (export_id,)
    )


def _claimable(conn):
    """A running export whose one chunk's attempt 1 lost its lease: the next claim takes it."""
    export_id = make_running_export(conn, parts=1, running=1)
    _expire_lease(conn, export_id)
    return export_id


def _chunk_job(conn, export_id) -> tuple[str, int]:
    row = conn.execute(
        "SELECT job_id, recoveries FROM export_chunks WHERE export_id = %s AND part_number = 1", (export_id,)
    ).fetchone()
    return row["job_id"], row["recoveries"]


def test_a_chunk_handed_back_at_shutdown_gets_one_new_job(state_conn, redis, quiet):
    export_id = _claimable(state_conn)
    chunk = chunks_repo.claim_chunk(state_conn, export_id, 1, "host:1", 30)
    assert chunk is not None
    assert hand_back(state_conn, redis, quiet, chunk) == 1
    assert _chunk_job(state_conn, export_id) == (chunk_job_id(export_id, 1, 1), 1)
    assert chunk_queue(redis, quiet).get_job_position(chunk_job_id(export_id, 1, 1)) is not None
    assert chunks_repo.claim_chunk(state_conn, export_id, 1, "host:2", 30) is not None  # pending: claimable


def test_a_paused_attempt_whose_job_the_reconciler_replaced_hands_back_no_second_job(state_conn, redis, quiet):
    """Paused past its lease (a frozen VM, then a SIGTERM): the reconciler replaced its job
    meanwhile. Its hand-back releases the chunk for that job and enqueues nothing more."""
    export_id = _claimable(state_conn)
    chunk = chunks_repo.claim_chunk(state_conn, export_id, 1, "host:1", 30)
    assert chunk is not None
    _expire_lease(state_conn, export_id)
    assert reconciler.recover_chunks(state_conn, redis, quiet) >= 1  # the lease expired: a new job
    replaced = _chunk_job(state_conn, export_id)
    assert hand_back(state_conn, redis, quiet, chunk) is None
    assert _chunk_job(state_conn, export_id) == replaced  # no second replacement
    assert chunk_queue(redis, quiet).count == 1


def test_a_superseded_attempt_hands_back_nothing(state_conn, redis, quiet):
    export_id = _claimable(state_conn)
    old = chunks_repo.claim_chunk(state_conn, export_id, 1, "host:1", 30)
    _expire_lease(state_conn, export_id)
    new = chunks_repo.claim_chunk(state_conn, export_id, 1, "host:2", 30)
    assert old is not None and new is not None and new.attempt == old.attempt + 1
    before = _chunk_job(state_conn, export_id)
    assert hand_back(state_conn, redis, quiet, old) is None
    assert _chunk_job(state_conn, export_id) == before and chunk_queue(redis, quiet).count == 0
    status = state_conn.execute("SELECT status FROM export_chunks WHERE export_id = %s", (export_id,)).fetchone()
    assert status["status"] == "running"  # still the new attempt's
