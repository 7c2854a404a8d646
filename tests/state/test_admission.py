"""Admission (per-owner cap, creation order) and the per-export window of chunks in flight."""

from __future__ import annotations

from shared import chunks_repo, exports_repo
from shared.queue import chunk_job_id
from tests.support.factories import from_now, make_chunks, make_export, make_running_export


def test_an_owner_is_admitted_up_to_the_cap_oldest_first(state_conn, owner):
    running = make_running_export(state_conn, owner=owner)
    waiting = [make_export(state_conn, owner=owner, created_at=from_now(-60 + i)) for i in range(4)]
    make_export(state_conn, owner="someone-else")  # another owner's export never counts
    assert exports_repo.admit_waiting(state_conn, owner, cap=3) == waiting[:2]
    assert exports_repo.admit_waiting(state_conn, owner, cap=3) == []  # full: 1 running + 2 admitted
    exports_repo.end_export(state_conn, running, exports_repo.ExportStatus.CANCELLED)
    assert exports_repo.admit_waiting(state_conn, owner, cap=3) == [waiting[2]]


def test_the_window_keeps_at_most_n_chunks_in_flight_and_records_their_job_ids(state_conn):
    export_id = make_running_export(state_conn, parts=6, done=1, running=1)
    assert chunks_repo.next_chunks(state_conn, export_id, window=3) == [3, 4]
    assert chunks_repo.next_chunks(state_conn, export_id, window=3) == []
    jobs = state_conn.execute(
        "SELECT part_number, job_id FROM export_chunks WHERE export_id = %s AND enqueued ORDER BY part_number",
        (export_id,),
    ).fetchall()
    assert {j["part_number"]: j["job_id"] for j in jobs} == {n: chunk_job_id(export_id, n) for n in (1, 2, 3, 4)}
    chunks_repo.record_part(state_conn, export_id, 2, 1, '"e"', 1, 10)
    assert chunks_repo.next_chunks(state_conn, export_id, window=3) == [5]


def test_no_window_for_an_export_that_is_not_running(state_conn):
    export_id = make_export(state_conn, status="cancelled")
    make_chunks(state_conn, export_id, 2)
    assert chunks_repo.next_chunks(state_conn, export_id, window=4) == []
