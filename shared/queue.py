"""Enqueuing export jobs on RQ, by dotted path (the API never imports worker code).

Invariant: job ids are derived from the export id (``export-<id>-plan``,
``export-<id>-part-00007`` and its replacements ``…-r1``, ``export-<id>-finalize-1``,
``export-<id>-cleanup``) and every description names the export, so an operator can go from a job in rq-dashboard to ``POST /exports/<id>/cancel``;
jobs carry ids only, never objects.
"""

from __future__ import annotations

import time
import uuid

import psycopg
from redis import Redis
from rq import Queue, Retry
from rq.rate_limit import RateLimit

from shared.admission import admit_waiting, next_chunks
from shared.settings import Settings

PLAN = "worker.tasks.plan_export"
CHUNK = "worker.tasks.export_chunk"
FINALIZE = "worker.tasks.finalize_export"
CLEANUP = "worker.tasks.cleanup_export"


def _retry(settings: Settings) -> Retry:
    """Transient failures (a dropped connection, an S3 5xx, a timeout) are retried with backoff."""
    return Retry(max=len(settings.retry_delays), interval=list(settings.retry_delays))


def cancel_key(settings: Settings, export_id: uuid.UUID | str) -> str:
    """The Redis key whose presence tells running chunks of an export to stop."""
    return f"{settings.queue_prefix}:cancel:{export_id}"


def stop_running_work(redis: Redis, settings: Settings, export_id: uuid.UUID | str) -> None:
    """Tell an ended export's running chunks to stop (a flag they check at every block) and
    cancel its queries now."""
    from shared.db import cancel_export_queries

    redis.set(cancel_key(settings, export_id), repr(time.time()), ex=7 * 86400)
    cancel_export_queries(settings, export_id)


def reads_limit(settings: Settings) -> RateLimit:
    """RQ 3's concurrency limit shared by every chunk job: the global cap on source reads."""
    return RateLimit(key=f"{settings.queue_prefix}:chunk-reads", concurrency=settings.max_concurrent_reads)


def plan_job_id(export_id: uuid.UUID | str) -> str:
    return f"export-{export_id}-plan"


def chunk_job_id(export_id: uuid.UUID | str, part_number: int, recovery: int = 0) -> str:
    """``export-<id>-part-00007``; a replacement enqueued by the reconciler ends in ``-r<n>``."""
    base = f"export-{export_id}-part-{part_number:05d}"
    return f"{base}-r{recovery}" if recovery else base


def finalize_job_id(export_id: uuid.UUID | str, attempt: int = 1) -> str:
    """``export-<id>-finalize-<n>``: n is the finalize attempt the job will claim."""
    return f"export-{export_id}-finalize-{attempt}"


def control_queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_control, connection=redis)


def chunk_queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_chunks, connection=redis)


def enqueue_plan(redis: Redis, settings: Settings, export_id: uuid.UUID) -> None:
    """Enqueue the planner of an admitted export."""
    control_queue(redis, settings).enqueue(
        PLAN, str(export_id), job_id=plan_job_id(export_id), description=f"plan export {export_id}",
        job_timeout=settings.control_job_timeout_s, retry=_retry(settings), result_ttl=3600, failure_ttl=7 * 86400)


def enqueue_chunks(redis: Redis, settings: Settings, export_id: uuid.UUID, part_numbers: list[int],
                   recovery: int = 0) -> None:
    """Enqueue chunk jobs; each waits for a slot of the global read limit before it is queued."""
    queue = chunk_queue(redis, settings)
    for n in part_numbers:
        queue.enqueue(CHUNK, str(export_id), n, job_id=chunk_job_id(export_id, n, recovery),
                      description=f"export {export_id} part {n}" + (f" (recovery {recovery})" if recovery else ""),
                      job_timeout=settings.chunk_job_timeout_s, retry=_retry(settings),
                      rate_limit=reads_limit(settings), result_ttl=600, failure_ttl=7 * 86400)


def enqueue_finalize(redis: Redis, settings: Settings, export_id: uuid.UUID, attempt: int = 1) -> None:
    """Enqueue the finalizer, at the front: completing an export is quick and frees resources."""
    control_queue(redis, settings).enqueue(
        FINALIZE, str(export_id), job_id=finalize_job_id(export_id, attempt),
        description=f"finalize export {export_id}",
        job_timeout=settings.control_job_timeout_s, retry=_retry(settings), at_front=True, result_ttl=3600,
        failure_ttl=7 * 86400)


def enqueue_cleanup(redis: Redis, settings: Settings, export_id: uuid.UUID) -> None:
    """Enqueue the cleanup of a cancelled export (abort its upload), at the front."""
    control_queue(redis, settings).enqueue(
        CLEANUP, str(export_id), job_id=f"export-{export_id}-cleanup", description=f"clean up export {export_id}",
        job_timeout=settings.control_job_timeout_s, retry=_retry(settings), at_front=True, result_ttl=3600,
        failure_ttl=7 * 86400)


def admit(conn: psycopg.Connection, redis: Redis, settings: Settings, owner: str) -> list[uuid.UUID]:
    """Admit the owner's waiting exports up to the per-owner cap and enqueue their planners."""
    admitted = admit_waiting(conn, owner, settings.max_running_per_owner)
    for export_id in admitted:
        enqueue_plan(redis, settings, export_id)
    return admitted


def fill_window(conn: psycopg.Connection, redis: Redis, settings: Settings, export_id: uuid.UUID) -> list[int]:
    """Enqueue the export's next chunks, up to the per-export cap of chunks in flight."""
    parts = next_chunks(conn, export_id, settings.max_chunks_in_flight)
    enqueue_chunks(redis, settings, export_id, parts)
    return parts
