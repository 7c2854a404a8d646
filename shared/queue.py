"""Enqueuing export jobs on RQ, by dotted path (the API never imports worker code).

Invariant: job ids are derived from the export id (``export-<id>-plan``,
``export-<id>-part-00007``, ``export-<id>-finalize``) and every description names the
export, so an operator can go from a job in rq-dashboard to ``POST /exports/<id>/cancel``;
jobs carry ids only, never objects.
"""

from __future__ import annotations

import uuid

from redis import Redis
from rq import Queue, Retry

from shared.settings import Settings

PLAN = "worker.tasks.plan_export"
CHUNK = "worker.tasks.export_chunk"
FINALIZE = "worker.tasks.finalize_export"
# Transient failures (a dropped connection, an S3 5xx) are retried after these delays.
RETRY_INTERVALS = [2, 5, 15]


def plan_job_id(export_id: uuid.UUID | str) -> str:
    return f"export-{export_id}-plan"


def chunk_job_id(export_id: uuid.UUID | str, part_number: int) -> str:
    return f"export-{export_id}-part-{part_number:05d}"


def finalize_job_id(export_id: uuid.UUID | str) -> str:
    return f"export-{export_id}-finalize"


def control_queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_control, connection=redis)


def chunk_queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_chunks, connection=redis)


def enqueue_plan(redis: Redis, settings: Settings, export_id: uuid.UUID, owner: str) -> None:
    """Enqueue the planner of a new export."""
    control_queue(redis, settings).enqueue(
        PLAN, str(export_id), job_id=plan_job_id(export_id), description=f"plan export {export_id} (owner {owner})",
        job_timeout=settings.control_job_timeout_s, retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        result_ttl=3600, failure_ttl=7 * 86400)


def enqueue_chunks(redis: Redis, settings: Settings, export_id: uuid.UUID, part_numbers: list[int]) -> None:
    """Enqueue the chunk jobs of an export (one pipeline round trip)."""
    queue = chunk_queue(redis, settings)
    jobs = [Queue.prepare_data(
        CHUNK, (str(export_id), n), job_id=chunk_job_id(export_id, n),
        description=f"export {export_id} part {n}", timeout=settings.chunk_job_timeout_s,
        retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS), result_ttl=600, failure_ttl=7 * 86400)
        for n in part_numbers]
    queue.enqueue_many(jobs)


def enqueue_finalize(redis: Redis, settings: Settings, export_id: uuid.UUID) -> None:
    """Enqueue the finalizer, at the front: completing an export is quick and frees resources."""
    control_queue(redis, settings).enqueue(
        FINALIZE, str(export_id), job_id=finalize_job_id(export_id), description=f"finalize export {export_id}",
        job_timeout=settings.control_job_timeout_s, retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        at_front=True, result_ttl=3600, failure_ttl=7 * 86400)
