"""The streamed plan against the real PostgreSQL, Redis and S3: the first chunks are recorded and
enqueued while the rest is still being planned, an interrupted planner goes on after its last
chunk and covers every row once, a cancel stops it, and files whose bytes depend
on where every chunk ends keep the whole plan.

The planner runs in-process on queues no worker serves, so what it enqueued stays to be seen.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from rq import Queue

from shared import exports_repo, planning
from shared.datasets import registry
from shared.db import connect_source
from shared.logs import log_context
from shared.models import ExportStatus
from shared.query import key_bounds, where_clause
from shared.queue import chunk_job_id
from shared.records import fetch_tuples
from shared.spec import parse_spec
from tests.support.factories import make_export
from tests.support.state import chunk_rows
from worker import planner

SPEC = {"dataset": "products", "filters": {"id": {"lte": 300_000}}}
OWNER = "streamed-plan-tests"


@pytest.fixture
def quiet(settings):
    """The test settings on queues of their own: nothing runs what the planner enqueues. The
    exports are an owner's of their own, ended afterwards, so no other test's caps count them."""
    quiet = settings.replace(queue_prefix=f"plan-{uuid.uuid4().hex[:8]}")
    yield quiet
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        for (export_id,) in conn.execute("SELECT id FROM exports WHERE owner = %s", (OWNER,)).fetchall():
            exports_repo.end_export(conn, export_id, ExportStatus.CANCELLED)


def plan(settings, redis, export_id) -> str:
    """The planner as its job runs it: the log fields it binds end with it."""
    with log_context():
        return planner.plan(settings, redis, export_id)


def _export(settings, spec=SPEC) -> uuid.UUID:
    with psycopg.connect(settings.state_database_url, row_factory=dict_row, autocommit=True) as conn:
        return make_export(conn, owner=OWNER, spec=spec, admitted=True)


def _chunks(settings, export_id) -> list[tuple]:
    return [(c["part_number"], c["key_lo"], c["key_hi"], c["planned_rows"]) for c in chunk_rows(settings, export_id)]


def _get(settings, export_id):
    with psycopg.connect(settings.state_database_url, row_factory=dict_row) as conn:
        return exports_repo.get_export(conn, export_id)


def test_chunks_are_enqueued_while_the_rest_is_planned(quiet, redis, seeded, bucket, monkeypatch):
    export_id = _export(quiet)
    finish, seen = exports_repo.finish_plan, {}

    def finish_and_look(conn, eid):
        seen["enqueued"] = Queue(quiet.queue_chunks, connection=redis).job_ids
        seen["export"] = exports_repo.get_export(conn, eid)
        return finish(conn, eid)

    monkeypatch.setattr(exports_repo, "finish_plan", finish_and_look)
    assert plan(quiet, redis, export_id).endswith("(streamed)")
    # Before the plan was finished: running, its totals unknown, its first chunks already queued.
    assert seen["export"].status == ExportStatus.RUNNING and seen["export"].parts_total is None
    assert seen["enqueued"] == [chunk_job_id(export_id, n) for n in range(1, quiet.max_chunks_in_flight + 1)]
    chunks = _chunks(quiet, export_id)
    export = _get(quiet, export_id)
    assert (export.parts_total, export.total_rows) == (len(chunks), 300_000) and len(chunks) > 4
    assert chunks[0][1] is None and chunks[-1][2] == export.key_high_water == "1000000"  # the table's largest key
    assert all(a[2] == b[1] for a, b in zip(chunks, chunks[1:], strict=False))  # contiguous (lo, hi] ranges
    sizes = [c["planned_rows"] for c in chunk_rows(quiet, export_id)]
    assert sum(sizes) == 300_000


def test_an_interrupted_plan_goes_on_after_its_last_chunk(quiet, redis, seeded, bucket, monkeypatch):
    whole = _export(quiet)
    plan(quiet, redis, whole)
    interrupted = _export(quiet)
    add, calls = exports_repo.add_chunks, []

    def add_then_die(conn, eid, chunks):
        calls.append(len(chunks))
        if len(calls) == 2:
            raise RuntimeError("the planner's horse died here")
        return add(conn, eid, chunks)

    monkeypatch.setattr(exports_repo, "add_chunks", add_then_die)
    with pytest.raises(RuntimeError):
        plan(quiet, redis, interrupted)
    monkeypatch.setattr(exports_repo, "add_chunks", add)
    kept = _chunks(quiet, interrupted)
    assert len(kept) == calls[0] and _get(quiet, interrupted).parts_total is None
    assert plan(quiet, redis, interrupted).endswith("(streamed)")  # as the retry or the reconciler runs it
    chunks = _chunks(quiet, interrupted)
    assert chunks[: len(kept)] == kept  # the chunks recorded before are kept as they were
    assert all(a[2] == b[1] for a, b in zip(chunks, chunks[1:], strict=False)) and chunks[-1][2] == "1000000"
    assert [c[0] for c in chunks] == list(range(1, len(chunks) + 1))
    export = _get(quiet, interrupted)
    assert (
        (export.parts_total, export.total_rows)
        == (len(chunks), 300_000)
        == (len(chunks), _get(quiet, whole).total_rows)
    )


def test_a_cancel_while_planning_stops_the_planner(quiet, redis, seeded, bucket, monkeypatch):
    export_id = _export(quiet)
    add = exports_repo.add_chunks

    def add_then_cancel(conn, eid, chunks):
        added = add(conn, eid, chunks)
        exports_repo.end_export(conn, eid, ExportStatus.CANCELLED)
        return added

    monkeypatch.setattr(exports_repo, "add_chunks", add_then_cancel)
    assert plan(quiet, redis, export_id) == "stopped: the export ended, or another planner went on with its plan"
    export = _get(quiet, export_id)
    assert export.status == ExportStatus.CANCELLED and export.parts_total is None
    assert {c["status"] for c in chunk_rows(quiet, export_id)} == {"cancelled"}


@pytest.mark.parametrize("extra", [{"compression": "gzip"}, {"format": "xlsx"}], ids=["gzip", "xlsx"])
def test_files_whose_bytes_depend_on_every_chunk_end_keep_the_whole_plan(quiet, redis, seeded, bucket, extra):
    export_id = _export(quiet, {**SPEC, **extra})
    assert not plan(quiet, redis, export_id).endswith("(streamed)")
    assert _get(quiet, export_id).parts_total == len(chunk_rows(quiet, export_id))


@pytest.mark.parametrize(
    "spec",
    [
        {"dataset": "products"},
        SPEC,
        {"dataset": "products", "filters": {"quantity": {"lt": 500}}},  # not on the key: rows spread out
    ],
    ids=["whole-table", "key-range", "other-column"],
)
def test_a_big_tables_first_chunk_is_cut_from_a_small_sample_first(settings, seeded, monkeypatch, spec):
    """The first chunk is yielded after a sample of a few dozen pages, before the whole sample
    is taken; the plan still covers every matching row once, in chunks of at least the minimum."""
    parsed = parse_spec(spec)
    dataset = registry()["products"]
    wanted: list[int] = []
    real = planning.sample_keys
    monkeypatch.setattr(planning, "sample_keys", lambda *a, **k: wanted.append(a[4]) or real(*a, **k))
    with connect_source(settings, "test-lead") as conn:
        high_water = fetch_tuples(conn, key_bounds(dataset))[0][1]
        batches = planning.stream_plan(conn, dataset, parsed, settings.part_min_bytes, high_water)
        first = next(batches)
        assert len(wanted) == 1 and wanted[0] < planning.SAMPLE_KEYS // 4  # only the small sample so far
        chunks = first + [c for batch in batches for c in batch]
        assert wanted[1:] == [planning.SAMPLE_KEYS]
        where, params = where_clause(dataset, parsed)
        ((matching,),) = fetch_tuples(
            conn, sql.SQL("SELECT count(*) FROM {} WHERE {}").format(dataset.table, where), params
        )
    assert sum(c.rows for c in chunks) == matching and len(chunks) > 1
    assert chunks[0].lo is None and chunks[-1].hi == high_water
    assert all(a.hi == b.lo for a, b in zip(chunks, chunks[1:], strict=False))
    assert [c.part_number for c in chunks] == list(range(1, len(chunks) + 1))
    assert all(c.min_bytes >= settings.part_min_bytes for c in chunks[:-1])
