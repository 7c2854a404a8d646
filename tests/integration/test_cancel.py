"""Cancel: queued exports never start; running ones stop, leaving no upload, object or query."""

from __future__ import annotations

import psycopg
import pytest
from botocore.exceptions import ClientError
from rq.job import Job

from shared.queue import chunk_job_id
from shared.storage import s3_client
from tests.exports_support import ApiClient
from tests.support import wait_for


def export_queries(settings, export_id: str) -> list[str]:
    with psycopg.connect(settings.state_database_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name LIKE %s", (f"spillway:export:{export_id}:%",))]


def uploads_for(settings, key: str) -> list[str]:
    listing = s3_client(settings).list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=key)
    return [u["UploadId"] for u in listing.get("Uploads", []) if u["Key"] == key]


def object_exists(settings, key: str) -> bool:
    try:
        s3_client(settings).head_object(Bucket=settings.s3_bucket, Key=key)
        return True
    except ClientError:
        return False


def chunk_jobs(redis, export: dict) -> list[Job]:
    jobs = []
    for n in range(1, (export["progress"]["parts_total"] or 0) + 1):
        try:
            jobs.append(Job.fetch(chunk_job_id(export["id"], n), connection=redis))
        except Exception:
            continue  # never enqueued: the window had not reached it
    return jobs


@pytest.mark.slow
def test_cancel_at_30_percent_stops_everything(api, settings, redis, capsys):
    export = api.export({"dataset": "products"})
    wait_for(lambda: api.get(f"/exports/{export['id']}").get_json()["progress"]["percent"] >= 30,
             timeout=120, interval=0.02, what="30 % progress")
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
        jobs = chunk_jobs(redis, api.get(f"/exports/{export['id']}").get_json())
        return jobs if all(j.get_status() not in ("queued", "started", "scheduled") for j in jobs) else None

    jobs = wait_for(chunk_jobs_settled, timeout=60, what="chunk jobs to settle")
    final = api.get(f"/exports/{export['id']}").get_json()
    assert final["status"] == "cancelled"
    assert final["progress"]["rows_done"] == rows_at_cancel  # nothing recorded after the cancel
    assert not uploads_for(settings, key) and not object_exists(settings, key)
    assert not export_queries(settings, export["id"])
    with psycopg.connect(settings.state_database_url) as conn:
        largest_part = conn.execute("SELECT max(bytes) FROM export_chunks WHERE export_id = %s",
                                    (export["id"],)).fetchone()[0]
    read_after = sum(j.meta.get("bytes_after_cancel", 0) for j in jobs)
    with capsys.disabled():
        print(f"\ncancel at {final['progress']['rows_done']} rows: {read_after / 2**20:.1f} MiB read after the "
              f"cancel by {len(jobs)} chunk jobs (one chunk is {largest_part / 2**20:.1f} MiB)")
    assert read_after <= largest_part


def test_cancel_of_a_queued_export_runs_no_chunk(app, settings, redis, keys_for):
    carol = ApiClient(app.test_client(), keys_for("carol"))
    body = {"dataset": "products", "filters": {"id": {"lte": 300_000}}}
    running = [carol.export(body) for _ in range(settings.max_running_per_owner)]
    waiting = carol.export(body)  # over carol's cap: queued, not admitted
    response = carol.post(f"/exports/{waiting['id']}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    for export in running:
        assert carol.wait(export["id"])["status"] == "completed"
    with psycopg.connect(settings.state_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM export_chunks WHERE export_id = %s",
                            (waiting["id"],)).fetchone()[0] == 0
    job_keys = redis.keys(f"rq:job:export-{waiting['id']}-part-*")
    assert job_keys == []
    final = carol.get(f"/exports/{waiting['id']}").get_json()
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
    bob = ApiClient(app.test_client(), keys_for("bob"))
    assert bob.post(f"/exports/{export['id']}/cancel").status_code == 404
    operator = ApiClient(app.test_client(), keys_for("operator", admin=True))
    response = operator.post(f"/exports/{export['id']}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
