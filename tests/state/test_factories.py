"""The state-row factories write what the worker code would have written (real PostgreSQL, no workers)."""

from __future__ import annotations

from shared.keys import authenticate
from shared.queue import chunk_job_id
from tests.support.factories import (
    ROWS_PER_CHUNK,
    from_now,
    make_api_key,
    make_chunks,
    make_export,
    make_running_export,
)


def test_a_queued_export_waits_unadmitted_with_a_valid_spec(state_conn):
    export_id = make_export(state_conn, owner="fay", spec={"dataset": "products", "columns": ["id", "name"]})
    row = state_conn.execute("SELECT * FROM exports WHERE id = %s", (export_id,)).fetchone()
    assert (row["owner"], row["status"], row["dataset"]) == ("fay", "queued", "products")
    assert row["filename"] == "products.csv"
    assert row["spec"]["columns"] == ["id", "name"] and row["request_hash"]
    assert row["admitted_at"] is None and row["started_at"] is None and row["finished_at"] is None
    admitted = make_export(state_conn, admitted=True, created_at=from_now(-60))
    row = state_conn.execute(
        "SELECT admitted_at, created_at < now() AS earlier FROM exports WHERE id = %s", (admitted,)
    ).fetchone()
    assert row["admitted_at"] is not None and row["earlier"]


def test_a_running_export_has_contiguous_chunks_in_each_state(state_conn, settings):
    export_id = make_running_export(state_conn, parts=4, done=1, running=1, settings=settings, owner="fay")
    export = state_conn.execute("SELECT * FROM exports WHERE id = %s", (export_id,)).fetchone()
    assert export["status"] == "running" and export["upload_id"]
    assert export["object_key"] == f"{settings.s3_prefix}{export_id}/products.csv"
    assert (export["parts_total"], export["parts_done"], export["rows_done"]) == (4, 1, ROWS_PER_CHUNK)
    chunks = state_conn.execute(
        "SELECT *, lease_expires_at > now() AS live FROM export_chunks WHERE export_id = %s ORDER BY part_number",
        (export_id,),
    ).fetchall()
    assert [c["status"] for c in chunks] == ["done", "running", "pending", "pending"]
    assert [c["attempt"] for c in chunks] == [1, 1, 0, 0]
    assert chunks[0]["key_lo"] is None
    assert [c["key_lo"] for c in chunks[1:]] == [c["key_hi"] for c in chunks[:-1]]  # contiguous (lo, hi] ranges
    assert chunks[-1]["key_hi"] == export["key_high_water"] == str(export["total_rows"])
    assert chunks[0]["etag"] and chunks[0]["upload_part_number"] == 1 and chunks[0]["bytes"] > 0
    assert chunks[1]["live"] and chunks[1]["job_id"] == chunk_job_id(export_id, 2)
    assert not chunks[2]["enqueued"] and chunks[2]["job_id"] is None


def test_columns_override_what_the_status_implies(state_conn):
    export_id = make_export(state_conn, status="running")
    make_chunks(state_conn, export_id, 2, "running", lease_expires_at=from_now(-1), attempt=3)
    rows = state_conn.execute(
        "SELECT attempt, lease_expires_at < now() AS expired FROM export_chunks WHERE export_id = %s", (export_id,)
    ).fetchall()
    assert rows == [{"attempt": 3, "expired": True}] * 2


def test_api_keys_authenticate_until_revoked(state_conn):
    assert authenticate(state_conn, make_api_key(state_conn, "gus", admin=True)).is_admin
    assert authenticate(state_conn, make_api_key(state_conn, "gus", revoked=True)) is None
