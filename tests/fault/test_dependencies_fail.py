"""Redis, S3 and PostgreSQL failing mid-export: exports still end, and completed ones are identical."""

from __future__ import annotations

import time

import psycopg
import pytest
from redis import Redis
from rq.job import Job

from shared.queue import finalize_job_id
from tests.support.api import download
from tests.support.scenarios import FULL, PART, Scenario, digest
from tests.support.state import chunk_label_pattern
from tests.support.waiting import wait_for

pytestmark = pytest.mark.fault


def test_redis_restarted_empty_in_the_middle_of_two_exports(scenario, reference, capsys):
    scenario.stack.start(2)
    first = scenario.api.export(FULL)
    second = scenario.api.export(PART)
    wait_for(
        lambda: scenario.api.status(first["id"])["progress"]["parts_done"] >= 3,
        timeout=120,
        interval=0.02,
        what="the exports to be under way",
    )
    restarted = time.monotonic()
    scenario.redis_server.restart_empty()  # no persistence: every queue, job and registry is gone
    done = [scenario.api.wait(e["id"], timeout=300) for e in (first, second)]
    assert [d["status"] for d in done] == ["completed", "completed"]
    assert digest(download(done[0]["download"]["url"])) == digest(reference["full"])
    assert digest(download(done[1]["download"]["url"])) == digest(reference["part"])
    # RQ's own loop ends on a Redis error outside a dequeue; ours starts it again.
    assert all(proc.poll() is None for proc in scenario.stack.workers.procs), "a worker exited"
    with capsys.disabled():
        print(f"\nRedis restarted empty: both exports completed {time.monotonic() - restarted:.1f}s later, identical")
    scenario.assert_no_orphan_uploads()


def test_s3_answers_500_to_10_percent_of_upload_part(scenario, reference, capsys):
    scenario.proxy.fail_upload_part_every = 10  # every tenth UploadPart call, retries included
    scenario.reconfigure(part_min_bytes=5 * 2**20)  # more parts
    scenario.stack.start(2)
    done = scenario.api.run(FULL)[0]
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(reference["full"])
    assert scenario.proxy.injected >= 2
    with capsys.disabled():
        print(
            f"\nS3 500s: {scenario.proxy.injected} of {scenario.proxy.upload_parts} UploadPart calls failed; "
            "the export is identical"
        )
    scenario.assert_no_orphan_uploads()


def test_lost_answer_to_complete_multipart_upload(scenario, reference):
    scenario.proxy.lose_complete_answers = 1  # S3 completes the object; the client hears a 500
    scenario.stack.start(2)
    done = scenario.api.run(PART)[0]
    assert done["status"] == "completed"
    assert scenario.proxy.injected == 1
    assert digest(download(done["download"]["url"])) == digest(reference["part"])
    scenario.assert_no_orphan_uploads()


def test_s3_refusing_to_complete_is_retried_then_fails_the_export_clearly(scenario, reference):
    """CompleteMultipartUpload answers 500 seven times: botocore's five tries fail the first
    finalize job, whose RQ retry claims the export at once and completes it (no second
    finalize job). Then, for another export, every time: the export fails after the retries,
    with S3's error, instead of running for ever."""
    scenario.stack.start(2)
    scenario.proxy.fail_completes = 7
    done, data = scenario.api.run(PART)
    assert digest(data) == digest(reference["part"])
    assert scenario.proxy.fail_completes == 0
    redis = Redis.from_url(scenario.settings.redis_url)
    assert not Job.exists(finalize_job_id(done["id"], 2), connection=redis)  # completed by finalize-1's retry
    scenario.proxy.fail_completes = 1_000
    failed = scenario.api.wait(scenario.api.export(PART)["id"], timeout=120)
    assert failed["status"] == "failed"
    assert "CompleteMultipartUpload" in failed["error"] and "InternalError" in failed["error"], failed["error"]
    scenario.assert_no_orphan_uploads()


def test_postgres_backend_of_a_running_chunk_is_killed(scenario, reference, capsys):
    scenario.stack.start(2)
    export = scenario.api.export(FULL)

    def terminate_one():
        with psycopg.connect(scenario.settings.state_database_url) as conn:
            row = conn.execute(
                "SELECT pg_terminate_backend(pid), application_name FROM pg_stat_activity"
                " WHERE application_name LIKE %s AND query LIKE 'COPY%%' AND state = 'active' LIMIT 1",
                (chunk_label_pattern(export["id"]),),
            ).fetchone()
        return row

    killed = wait_for(terminate_one, timeout=120, interval=0.01, what="a chunk's COPY to terminate")
    done = scenario.api.wait(export["id"], timeout=300)
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(reference["full"])
    part = int(killed[1].rsplit(":", 1)[1])
    with psycopg.connect(scenario.settings.state_database_url) as conn:
        attempts = conn.execute(
            "SELECT attempt FROM export_chunks WHERE export_id = %s AND part_number = %s", (export["id"], part)
        ).fetchone()[0]
    assert attempts >= 2
    with capsys.disabled():
        print(f"\npg_terminate_backend on part {part}: re-run as attempt {attempts}; the export is identical")
    scenario.assert_no_orphan_uploads()


def test_permanent_failures_fail_the_export_clearly(scenario, seeded):
    scenario.stack.start(1)
    # A column that no longer exists: the same query would fail again, so no retry helps.
    # (Schema drift: the datasets were checked when the workers started, the column went after.)
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("ALTER TABLE uneven_rows RENAME COLUMN label TO label_renamed")
        try:
            started = time.monotonic()
            gone = scenario.api.wait(
                scenario.api.export({"dataset": "uneven_rows", "columns": ["id", "label"]})["id"], timeout=60
            )
        finally:
            conn.execute("ALTER TABLE uneven_rows RENAME COLUMN label_renamed TO label")
    assert gone["status"] == "failed"
    assert 'column "label" does not exist' in gone["error"]  # names the column
    assert time.monotonic() - started < min(scenario.settings.retry_delays)  # at once: no retry


def test_missing_bucket_fails_the_export_clearly(settings, seeded, bucket, keys_for, tmp_path, request):
    scenario = Scenario(settings.replace(s3_bucket="spillway-no-such-bucket"), tmp_path, keys_for, request.node.name)
    try:
        scenario.stack.start(1)
        started = time.monotonic()
        failed = scenario.api.wait(scenario.api.export(PART)["id"], timeout=60)
        assert failed["status"] == "failed"
        assert "NoSuchBucket" in failed["error"]
        assert time.monotonic() - started < sum(scenario.settings.retry_delays)  # not retried: permanent
    finally:
        scenario.close()


def test_export_created_while_redis_is_down_starts_when_it_is_back(scenario, reference):
    scenario.stack.start(1)
    scenario.redis_server.kill()
    response = scenario.api.post("/exports", json={**PART, "delivery": "async"})
    assert response.status_code == 202  # Postgres holds it; nothing is lost
    export = response.get_json()
    assert export["status"] == "queued"
    scenario.redis_server.start()  # the same port, empty
    done = scenario.api.wait(export["id"], timeout=120)
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(reference["part"])
