"""Every export and chunk transition: the repository moves a row exactly along the declared edges."""

from __future__ import annotations

import uuid

import pytest

from shared import chunks_repo, exports_repo
from shared.models import CHUNK_TRANSITIONS, EXPORT_TRANSITIONS, ChunkStatus, ExportStatus, Upload
from shared.planning import Chunk as PlannedChunk
from shared.planning import Plan
from tests.support.factories import from_now, make_chunks, make_export, make_running_export

E, C = ExportStatus, ChunkStatus


def _status(conn, export_id: uuid.UUID) -> ExportStatus:
    export = exports_repo.get_export(conn, export_id)
    assert export is not None
    return export.status


def _move_export(conn, export_id: uuid.UUID, target: ExportStatus) -> bool:
    """Ask the repository for ``target``; return whether it says it moved."""
    if target == E.RUNNING:
        plan = Plan("10", (PlannedChunk(1, None, "10", 10, 100),))
        return exports_repo.start_export(conn, export_id, plan, Upload("key", "upload"))
    if target == E.COMPLETED:
        return exports_repo.complete_export(conn, export_id, 100, 10, 60, finalize_attempt=0)
    if target in (E.FAILED, E.CANCELLED):
        return exports_repo.end_export(conn, export_id, target, "why") is not None
    if target == E.EXPIRED:
        return exports_repo.mark_expired(conn, export_id)
    raise AssertionError(f"no repository call moves an export to {target}")


@pytest.mark.parametrize("source", list(ExportStatus))
@pytest.mark.parametrize("target", [s for s in ExportStatus if s != E.QUEUED])
def test_an_export_moves_exactly_along_the_declared_edges(state_conn, source, target):
    export_id = make_export(state_conn, status=source)
    allowed = target in EXPORT_TRANSITIONS[source]
    assert _move_export(state_conn, export_id, target) is allowed
    assert _status(state_conn, export_id) == (target if allowed else source)


def test_ending_an_export_cancels_its_unfinished_chunks_and_keeps_the_done_ones(state_conn):
    export_id = make_running_export(state_conn, parts=4, done=1, running=1)
    ended = exports_repo.end_export(state_conn, export_id, E.FAILED, "x" * 5000)
    assert ended is not None and ended.status == E.FAILED and ended.finished_at is not None
    assert ended.error == "x" * exports_repo.MAX_ERROR_CHARS
    statuses = [c.status for c in chunks_repo.done_parts(state_conn, export_id)]
    assert statuses == [C.DONE]
    rows = state_conn.execute(
        "SELECT status, count(*) AS n FROM export_chunks WHERE export_id = %s GROUP BY status", (export_id,)
    ).fetchall()
    assert {r["status"]: r["n"] for r in rows} == {"done": 1, "cancelled": 3}
    assert exports_repo.end_export(state_conn, export_id, E.CANCELLED) is None  # already ended: no change


def test_an_export_is_ended_only_as_failed_or_cancelled(state_conn):
    export_id = make_export(state_conn)
    for status in (E.COMPLETED, E.EXPIRED, E.RUNNING, E.QUEUED):
        with pytest.raises(ValueError):
            exports_repo.end_export(state_conn, export_id, status)
    assert _status(state_conn, export_id) == E.QUEUED


def test_start_records_the_plan_once(state_conn):
    export_id = make_export(state_conn, admitted=True)
    plan = Plan("30", (PlannedChunk(1, None, "10", 10, 100), PlannedChunk(2, "10", "30", 20, 200)))
    assert exports_repo.start_export(state_conn, export_id, plan, Upload("k", "u"))
    assert not exports_repo.start_export(state_conn, export_id, plan, Upload("k", "u2"))  # a second planner
    export = exports_repo.get_export(state_conn, export_id)
    assert export is not None and (export.total_rows, export.parts_total, export.upload_id) == (30, 2, "u")
    chunks = state_conn.execute(
        "SELECT part_number, key_lo, key_hi, status FROM export_chunks WHERE export_id = %s ORDER BY part_number",
        (export_id,),
    ).fetchall()
    assert [(c["part_number"], c["key_lo"], c["key_hi"], c["status"]) for c in chunks] == [
        (1, None, "10", "pending"),
        (2, "10", "30", "pending"),
    ]


def _move_chunk(conn, export_id: uuid.UUID, target: ChunkStatus, attempt: int) -> bool:
    if target == C.RUNNING:
        return chunks_repo.claim_chunk(conn, export_id, 1, "me:1", 30) is not None
    if target == C.PENDING:
        return chunks_repo.release_chunk(conn, export_id, 1, attempt)
    if target == C.DONE:
        return chunks_repo.record_part(conn, export_id, 1, attempt, '"etag"', 10, 100)[0]
    if target == C.CANCELLED:
        return exports_repo.end_export(conn, export_id, E.CANCELLED) is not None
    raise AssertionError(target)


@pytest.mark.parametrize("source", list(ChunkStatus))
@pytest.mark.parametrize("target", list(ChunkStatus))
def test_a_chunk_moves_exactly_along_the_declared_edges(state_conn, source, target):
    export_id = make_export(state_conn, status=E.RUNNING, parts_total=1, object_key="k", upload_id="u")
    # running → running is a take-over: only of an expired lease
    lease = {"lease_expires_at": from_now(-1)} if source == C.RUNNING else {}
    make_chunks(state_conn, export_id, 1, source, **lease)
    attempt = 1  # the attempt a factory chunk was claimed by (unclaimed ones refuse it by their status)
    allowed = target in CHUNK_TRANSITIONS[source]
    moved = _move_chunk(state_conn, export_id, target, attempt)
    after = state_conn.execute("SELECT status FROM export_chunks WHERE export_id = %s", (export_id,)).fetchone()
    if target == C.CANCELLED and source in (C.DONE, C.CANCELLED):
        assert after["status"] == source  # ending the export leaves finished chunks as they are
    else:
        assert moved is allowed, (source, target)
        assert after["status"] == (target if allowed else source)


def test_a_live_lease_cannot_be_taken_over(state_conn):
    export_id = make_running_export(state_conn, parts=1, running=1)
    assert chunks_repo.claim_chunk(state_conn, export_id, 1, "other:2", 30) is None


def test_chunks_of_an_export_that_is_not_running_are_never_claimed(state_conn):
    for status in (E.QUEUED, E.CANCELLED, E.FAILED, E.COMPLETED):
        export_id = make_export(state_conn, status=status)
        make_chunks(state_conn, export_id, 1)
        assert chunks_repo.claim_chunk(state_conn, export_id, 1, "me:1", 30) is None, status


def _record(conn, export_id: uuid.UUID, part: int) -> tuple[bool, bool]:
    claimed = chunks_repo.claim_chunk(conn, export_id, part, "w:1", 30)
    assert claimed is not None
    return chunks_repo.record_part(conn, export_id, part, claimed.attempt, f"etag-{part}", 10, 100, crc32=part)


def test_a_streamed_plan_runs_its_chunks_before_its_totals_are_known(state_conn):
    export_id = make_export(state_conn, admitted=True)
    assert exports_repo.start_streamed_export(state_conn, export_id, "30", Upload("k", "u"))
    assert not exports_repo.start_streamed_export(state_conn, export_id, "30", Upload("k", "u2"))  # a second planner
    export = exports_repo.get_export(state_conn, export_id)
    assert export is not None and export.status == E.RUNNING and (export.total_rows, export.parts_total) == (None, None)
    assert exports_repo.planned_so_far(state_conn, export_id) == (0, None)
    assert exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(1, None, "10", 10, 100)])
    assert _record(state_conn, export_id, 1) == (True, False)  # every part so far, not every part
    assert exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(2, "10", "30", 20, 200)])
    assert exports_repo.planned_so_far(state_conn, export_id) == (2, "30")
    assert _record(state_conn, export_id, 2) == (True, False)
    assert exports_repo.finish_plan(state_conn, export_id)  # all recorded already: the planner finalizes
    assert not exports_repo.finish_plan(state_conn, export_id)  # once
    export = exports_repo.get_export(state_conn, export_id)
    assert export is not None and (export.total_rows, export.parts_total, export.parts_done) == (30, 2, 2)
    assert not exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(3, "30", "40", 1, 1)])  # plan finished


def test_the_last_part_recorded_after_the_plan_finished_finalizes(state_conn):
    export_id = make_export(state_conn, admitted=True)
    assert exports_repo.start_streamed_export(state_conn, export_id, "30", Upload("k", "u"))
    chunks = [PlannedChunk(1, None, "10", 10, 100), PlannedChunk(2, "10", "30", 20, 200)]
    assert exports_repo.add_chunks(state_conn, export_id, chunks)
    assert not exports_repo.add_chunks(state_conn, export_id, chunks[1:])  # recorded already: refused
    assert _record(state_conn, export_id, 1) == (True, False)
    assert not exports_repo.finish_plan(state_conn, export_id)  # part 2 still to come
    assert _record(state_conn, export_id, 2) == (True, True)


def test_only_chunks_that_go_on_from_the_last_recorded_one_are_added(state_conn):
    """Two planners of one export (one taken for dead that was not): whichever records a part
    number first wins, and the other's chunks, which would leave a gap or an overlap, are refused."""
    export_id = make_export(state_conn, admitted=True)
    assert exports_repo.start_streamed_export(state_conn, export_id, "90", Upload("k", "u"))
    assert not exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(2, "10", "30", 20, 200)])  # no part 1
    assert not exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(1, "5", "10", 5, 50)])  # not from the start
    assert exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(1, None, "10", 10, 100)])
    assert not exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(1, None, "12", 12, 120)])  # taken
    assert not exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(2, "12", "30", 18, 180)])  # overlap
    assert not exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(2, "11", "30", 19, 190)])  # gap
    assert exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(2, "10", "30", 20, 200)])
    assert exports_repo.planned_so_far(state_conn, export_id) == (2, "30")


def test_a_streamed_plan_stops_when_its_export_ends(state_conn):
    export_id = make_export(state_conn, admitted=True)
    assert exports_repo.start_streamed_export(state_conn, export_id, "30", Upload("k", "u"))
    assert exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(1, None, "10", 10, 100)])
    assert exports_repo.end_export(state_conn, export_id, E.CANCELLED) is not None
    assert not exports_repo.add_chunks(state_conn, export_id, [PlannedChunk(2, "10", "30", 20, 200)])
    assert not exports_repo.finish_plan(state_conn, export_id)
    export = exports_repo.get_export(state_conn, export_id)
    assert export is not None and export.status == E.CANCELLED and export.parts_total is None
