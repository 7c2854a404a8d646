"""Cancel: queued exports never start; running ones stop, leaving no upload, object or query."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.api import ApiSession
from tests.support.jobs import chunk_jobs
from tests.support.s3 import object_exists, uploads_for
from tests.support.state import export_queries
from tests.support.waiting import wait_for


@pytest.mark.slow
def test_cancel_at_30_percent_stops_everything(api, settings, redis, capsys):
    export = api.export({"dataset": "products"})
    wait_for(
        lambda: api.status(export["id"])["progress"]["percent"] >= 30, timeout=120, interval=0.02, what="30 % progress"
    )
    response = api.post(f"/exports/{export['id']}/cancel")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "cancelled"  # in the answer itself, not eventually
    rows_at_cancel = body["progress"]["rows_done"]

    with psycopg.connect(settings.state_database_url) as conn:
        key = conn.execute("SELECT object_key FROM exports WHERE id = %s", (export["id"],)).fetchone()[0]
    wait_for(lambda: not export_queries(settings, export["id"]), timeout=10, what="the export's queries to end")
    wait_for(lambda: not uploads_for(settings, key), timeout=30, what="the multipart upload to be aborted")

    def chunk_jobs_settled():
        parts = api.status(export["id"])["progress"]["parts_total"] or 0
        jobs = chunk_jobs(redis, export["id"], parts)
        return jobs if all(j.get_status() not in ("queued", "started", "scheduled") for j in jobs) else None

    jobs = wait_for(chunk_jobs_settled, timeout=60, what="chunk jobs to settle")
    final = api.status(export["id"])
    assert final["status"] == "cancelled"
    assert final["progress"]["rows_done"] == rows_at_cancel  # nothing recorded after the cancel
    assert not uploads_for(settings, key) and not object_exists(settings, key)
    assert not export_queries(settings, export["id"])
    with psycopg.connect(settings.state_database_url) as conn:
        largest_part = conn.execute(
            "SELECT max(bytes) FROM export_chunks WHERE export_id = %s", (export["id"],)
        ).fetchone()[0]
    read_after = sum(j.meta.get("bytes_after_cancel", 0) for j in jobs)
    with capsys.disabled():
        print(
            f"\ncancel at {final['progress']['rows_done']} rows: {read_after / 2**20:.1f} MiB read after the "
            f"cancel by {len(jobs)} chunk jobs (one chunk is {largest_part / 2**20:.1f} MiB)"
        )
    assert read_after <= largest_part


def test_cancel_of_a_queued_export_runs_no_chunk(app, settings, redis, workers, seeded, keys_for):
    carol = ApiSession(app.test_client(), keys_for("carol"))
    body = {"dataset": "products", "filters": {"id": {"lte": 300_000}}}
    running = [carol.export(body) for _ in range(settings.max_running_per_owner)]
    waiting = carol.export(body)  # over carol's cap: queued, not admitted
    response = carol.post(f"/exports/{waiting['id']}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    for export in running:
        assert carol.wait(export["id"])["status"] == "completed"
    with psycopg.connect(settings.state_database_url) as conn:
        assert (
            conn.execute("SELECT count(*) FROM export_chunks WHERE export_id = %s", (waiting["id"],)).fetchone()[0] == 0
        )
    job_keys = redis.keys(f"rq:job:export-{waiting['id']}-part-*")
    assert job_keys == []
    final = carol.status(waiting["id"])
    assert final["status"] == "cancelled" and final["started_at"] is None


def test_cancel_is_idempotent_and_409_when_finished(api):
    done = api.wait(api.export({"dataset": "products", "filters": {"id": {"lte": 10}}})["id"])
    response = api.post(f"/exports/{done['id']}/cancel")
    assert response.status_code == 409
    assert response.get_json()["error"]["export_status"] == "completed"

    export = api.export({"dataset": "products", "filters": {"id": {"lte": 500_000}}})
    first = api.post(f"/exports/{export['id']}/cancel")
    second = api.post(f"/exports/{export['id']}/cancel")
    assert first.status_code == second.status_code == 200
    assert second.get_json()["status"] == "cancelled"
    assert second.get_json()["finished_at"] == first.get_json()["finished_at"]


def test_only_the_owner_or_an_admin_cancels(app, api, keys_for):
    export = api.export({"dataset": "products", "filters": {"id": {"lte": 500_000}}})
    bob = ApiSession(app.test_client(), keys_for("bob"))
    assert bob.post(f"/exports/{export['id']}/cancel").status_code == 404
    operator = ApiSession(app.test_client(), keys_for("operator", admin=True))
    response = operator.post(f"/exports/{export['id']}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
