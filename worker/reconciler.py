"""The reconciler: Postgres says what must be running; Redis is made to agree.

Run as its own process (``python -m worker.reconciler``, the Procfile's ``reconciler``); every
``SPILLWAY_RECONCILE_INTERVAL_S`` it:

- replaces the job of every chunk whose lease expired (its worker died or froze) or whose
  job is gone from Redis (Redis restarted empty, a job lost);
- re-enqueues lost planners and finalizers, refills chunk windows, admits waiting exports;
- expires completed exports past their TTL (object deleted, status ``expired``);
- aborts multipart uploads that no queued or running export owns (the janitor).

Invariant: every action is idempotent and fenced in Postgres, so running it twice, or two
reconcilers at once, is harmless; recovery of a dead chunk is bounded by the lease plus one
interval, independent of RQ's own abandoned-job cleanup.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from shared import queue as q
from shared.db import connect_state
from shared.exports_repo import next_recovery
from shared.settings import Settings, load_settings
from shared.storage import s3_client
from worker.uploads import abort_upload

log = logging.getLogger("spillway.reconciler")

WAITING = {"queued", "scheduled", "deferred", "rate_limited", "created"}
LIVE = WAITING | {"started"}


def job_state(redis: Redis, job_id: str | None) -> str | None:
    """The RQ status of a job, or None when Redis does not have it."""
    if not job_id:
        return None
    try:
        status = Job.fetch(job_id, connection=redis).get_status(refresh=False)
    except NoSuchJobError:
        return None
    return str(status.value if hasattr(status, "value") else status) if status else None


def _replace_job(redis: Redis, job_id: str) -> None:
    try:
        Job.fetch(job_id, connection=redis).delete()
    except NoSuchJobError:
        pass


def recover_chunks(conn: psycopg.Connection, redis: Redis, settings: Settings) -> int:
    """Replace the jobs of chunks with an expired lease, or waiting on a job Redis lost."""
    rows = conn.execute(
        "SELECT c.export_id, c.part_number, c.status, c.job_id FROM export_chunks c"
        " JOIN exports e ON e.id = c.export_id WHERE e.status = 'running'"
        " AND ((c.status = 'pending' AND c.enqueued)"
        "  OR (c.status = 'running' AND c.lease_expires_at < now()))").fetchall()
    recovered = 0
    for row in rows:
        state = job_state(redis, row["job_id"])
        if row["status"] == "pending" and state in LIVE:
            continue  # waiting for a worker, or just starting
        if row["status"] == "running" and state in WAITING:
            continue  # a replacement is already waiting for a worker
        recovery = next_recovery(conn, row["export_id"], row["part_number"], row["job_id"])
        if recovery is not None:
            q.enqueue_chunks(redis, settings, row["export_id"], [row["part_number"]], recovery)
            log.warning("export %s part %d: %s (job %s is %s); enqueued recovery %d", row["export_id"],
                        row["part_number"], "lease expired" if row["status"] == "running" else "job lost",
                        row["job_id"], state, recovery)
            recovered += 1
    return recovered


def recover_control_jobs(conn: psycopg.Connection, redis: Redis, settings: Settings) -> int:
    """Re-enqueue lost planners and finalizers; refill windows; admit waiting exports."""
    count = 0
    for row in conn.execute("SELECT id FROM exports WHERE status = 'queued' AND admitted_at IS NOT NULL"):
        job_id = q.plan_job_id(row["id"])
        if job_state(redis, job_id) not in LIVE:
            _replace_job(redis, job_id)
            q.enqueue_plan(redis, settings, row["id"])
            log.warning("export %s: planner lost; enqueued again", row["id"])
            count += 1
    ready = conn.execute(
        "SELECT id, finalize_attempt FROM exports WHERE status = 'running' AND parts_done = parts_total"
        " AND (finalize_lease_expires_at IS NULL OR finalize_lease_expires_at < now())").fetchall()
    for row in ready:
        job_id = q.finalize_job_id(row["id"], row["finalize_attempt"] + 1)
        if job_state(redis, job_id) not in LIVE:
            _replace_job(redis, job_id)
            q.enqueue_finalize(redis, settings, row["id"], row["finalize_attempt"] + 1)
            log.warning("export %s: finalizer lost; enqueued again", row["id"])
            count += 1
    for row in conn.execute("SELECT id FROM exports WHERE status = 'running'").fetchall():
        count += len(q.fill_window(conn, redis, settings, row["id"]))
    for row in conn.execute("SELECT DISTINCT owner FROM exports WHERE status = 'queued' AND admitted_at IS NULL"
                            ).fetchall():
        count += len(q.admit(conn, redis, settings, row["owner"]))
    return count


def expire_exports(conn: psycopg.Connection, settings: Settings, limit: int = 100) -> int:
    """Delete the objects of completed exports past ``expires_at``; mark them expired."""
    rows = conn.execute("SELECT id, object_key FROM exports WHERE status = 'completed' AND expires_at < now()"
                        " ORDER BY expires_at LIMIT %s", (limit,)).fetchall()
    for row in rows:
        s3_client(settings).delete_object(Bucket=settings.s3_bucket, Key=row["object_key"])
        conn.execute("UPDATE exports SET status = 'expired', updated_at = now() WHERE id = %s"
                     " AND status = 'completed'", (row["id"],))
    return len(rows)


def _export_of(settings: Settings, key: str) -> str | None:
    """The export id in an object key ``<prefix><export id>/<filename>``."""
    head = key[len(settings.s3_prefix):].split("/", 1)[0]
    try:
        return str(uuid.UUID(head))
    except ValueError:
        return None


def abort_orphan_uploads(conn: psycopg.Connection, settings: Settings) -> int:
    """Abort multipart uploads under our prefix that no queued or running export owns.

    An upload is live when its key's export is queued (its planner may be between creating
    the upload and recording it) or running with exactly this upload id. Uploads younger
    than the grace period are left alone too (S3's ``Initiated``; moto reports a fixed date,
    so the key rule is what protects a planner in flight).
    """
    rows = conn.execute("SELECT id::text AS id, status, upload_id FROM exports"
                        " WHERE status IN ('queued', 'running')").fetchall()
    queued = {r["id"] for r in rows if r["status"] == "queued"}
    running = {r["upload_id"] for r in rows if r["status"] == "running"}
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=settings.janitor_grace_s)
    aborted = 0
    paginator = s3_client(settings).get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=settings.s3_bucket, Prefix=settings.s3_prefix):
        for upload in page.get("Uploads", []):
            if (upload["UploadId"] in running or _export_of(settings, upload["Key"]) in queued
                    or upload["Initiated"] > cutoff):
                continue
            abort_upload(settings, upload["Key"], upload["UploadId"])
            log.warning("aborted orphan multipart upload %s of %s", upload["UploadId"], upload["Key"])
            aborted += 1
    return aborted


def reconcile(settings: Settings, redis: Redis) -> dict[str, int]:
    """One pass of every step; return what each did."""
    with connect_state(settings, "spillway:state:reconciler") as conn:
        return {
            "chunks": recover_chunks(conn, redis, settings),
            "control": recover_control_jobs(conn, redis, settings),
            "expired": expire_exports(conn, settings),
            "orphan_uploads": abort_orphan_uploads(conn, settings),
        }


def main(argv: list[str] | None = None) -> None:
    """Run passes until SIGTERM (or one pass with ``--once``)."""
    parser = argparse.ArgumentParser(description="Spillway reconciler and janitor.")
    parser.add_argument("--once", action="store_true", help="run one pass and exit")
    args = parser.parse_args(argv)
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    me = f"{socket.gethostname()}:{os.getpid()}"
    lock = f"{settings.queue_prefix}:reconciler"
    interval = settings.reconcile_interval_s
    while not stopping["now"]:
        started = time.monotonic()
        try:
            # One reconciler at a time does the work; another takes over when this one stops.
            if redis.set(lock, me, nx=True, px=int(interval * 3000)) or redis.get(lock) == me.encode():
                redis.pexpire(lock, int(interval * 3000))
                done = reconcile(settings, redis)
                if any(done.values()):
                    log.info("reconciled: %s", done)
        except Exception:  # Redis, Postgres or S3 away: log and try again next interval
            log.exception("reconcile pass failed")
        if args.once:
            break
        while not stopping["now"] and time.monotonic() - started < interval:
            time.sleep(0.1)


if __name__ == "__main__":
    main()
