"""Enqueuing export jobs on RQ, by dotted path (the API never imports worker code).

Invariant: job ids are derived from the export id (``export-<id>-plan``,
``export-<id>-part-00007`` and its replacements ``…-r1``, ``export-<id>-finalize-1``,
``export-<id>-cleanup``) by the functions here and nowhere else, and every description
names the export, so an operator can go from a job in rq-dashboard to
``POST /exports/<id>/cancel``; jobs carry ids only, never objects.
"""

from __future__ import annotations

import uuid

from redis import Redis
from rq import Queue, Retry
from rq.rate_limit import RateLimit

from shared.settings import Settings

PLAN = "worker.tasks.plan_job"
CHUNK = "worker.tasks.chunk_job"
FINALIZE = "worker.tasks.finalize_job"
CLEANUP = "worker.tasks.cleanup_job"
WEBHOOK = "worker.tasks.webhook_job"
JOB_PATHS = (PLAN, CHUNK, FINALIZE, CLEANUP, WEBHOOK)  # every function a job of ours runs

CONTROL_RESULT_TTL_S = 3600  # a finished plan/finalize/cleanup job stays visible in rq-dashboard an hour
CHUNK_RESULT_TTL_S = 600  # finished chunk jobs are many; ten minutes is enough to look at one
FAILURE_TTL_S = 7 * 86400  # a failed job (and its traceback) is kept a week for the operator
WEBHOOK_JOB_MARGIN_S = 30  # a delivery job's limit beyond the attempt's deadline (two state queries)
CANCEL_FLAG_TTL_S = 7 * 86400  # longer than any export can run: a late chunk still sees its cancel


def _retry(settings: Settings) -> Retry:
    """Transient failures (a dropped connection, an S3 5xx, a timeout) are retried with backoff."""
    return Retry(max=len(settings.retry_delays), interval=list(settings.retry_delays))


def cancel_key(settings: Settings, export_id: uuid.UUID | str) -> str:
    """The Redis key whose presence tells running chunks of an export to stop."""
    return f"{settings.queue_prefix}:cancel:{export_id}"


def reads_limit(settings: Settings) -> RateLimit:
    """RQ 3's concurrency limit shared by every chunk job: the global cap on source reads."""
    return RateLimit(key=f"{settings.queue_prefix}:chunk-reads", concurrency=settings.max_concurrent_reads)


def plan_job_id(export_id: uuid.UUID | str) -> str:
    """``export-<id>-plan``."""
    return f"export-{export_id}-plan"


def chunk_job_id(export_id: uuid.UUID | str, part_number: int, recovery: int = 0) -> str:
    """``export-<id>-part-00007``; a replacement enqueued by the reconciler ends in ``-r<n>``."""
    base = f"export-{export_id}-part-{part_number:05d}"
    return f"{base}-r{recovery}" if recovery else base


def finalize_job_id(export_id: uuid.UUID | str, attempt: int = 1) -> str:
    """``export-<id>-finalize-<n>``: n is the finalize attempt the job will claim."""
    return f"export-{export_id}-finalize-{attempt}"


def webhook_job_id(delivery_id: uuid.UUID | str, attempt: int) -> str:
    """``webhook-<delivery id>-<attempt>``."""
    return f"webhook-{delivery_id}-{attempt}"


def enqueue_webhook(redis: Redis, settings: Settings, delivery_id: uuid.UUID, attempt: int) -> None:
    """Enqueue one delivery attempt on the webhook queue (its retries are scheduled in Postgres, not
    by RQ); the job's limit is the attempt's own deadline plus a margin."""
    Queue(settings.queue_webhooks, connection=redis).enqueue(
        WEBHOOK,
        str(delivery_id),
        attempt,
        job_id=webhook_job_id(delivery_id, attempt),
        description=f"webhook delivery {delivery_id} attempt {attempt}",
        job_timeout=int(settings.webhook_timeout_s) + WEBHOOK_JOB_MARGIN_S,
        result_ttl=CONTROL_RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
    )


def cleanup_job_id(export_id: uuid.UUID | str) -> str:
    """``export-<id>-cleanup``."""
    return f"export-{export_id}-cleanup"


def control_queue(redis: Redis, settings: Settings) -> Queue:
    """The queue of short jobs that start or end exports (workers serve it first)."""
    return Queue(settings.queue_control, connection=redis)


def chunk_queue(redis: Redis, settings: Settings) -> Queue:
    """The queue of chunk jobs."""
    return Queue(settings.queue_chunks, connection=redis)


def _enqueue_control(
    redis: Redis,
    settings: Settings,
    path: str,
    export_id: uuid.UUID,
    job_id: str,
    description: str,
    at_front: bool = False,
) -> None:
    control_queue(redis, settings).enqueue(
        path,
        str(export_id),
        job_id=job_id,
        description=description,
        job_timeout=settings.control_job_timeout_s,
        retry=_retry(settings),
        at_front=at_front,
        result_ttl=CONTROL_RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
    )


def enqueue_plan(redis: Redis, settings: Settings, export_id: uuid.UUID) -> None:
    """Enqueue the planner of an admitted export."""
    _enqueue_control(redis, settings, PLAN, export_id, plan_job_id(export_id), f"plan export {export_id}")


def enqueue_chunks(
    redis: Redis, settings: Settings, export_id: uuid.UUID, part_numbers: list[int], recovery: int = 0
) -> None:
    """Enqueue chunk jobs; each waits for a slot of the global read limit before it is queued."""
    queue = chunk_queue(redis, settings)
    for n in part_numbers:
        queue.enqueue(
            CHUNK,
            str(export_id),
            n,
            job_id=chunk_job_id(export_id, n, recovery),
            description=f"export {export_id} part {n}" + (f" (recovery {recovery})" if recovery else ""),
            job_timeout=settings.chunk_job_timeout_s,
            retry=_retry(settings),
            rate_limit=reads_limit(settings),
            result_ttl=CHUNK_RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
        )


def enqueue_finalize(redis: Redis, settings: Settings, export_id: uuid.UUID, attempt: int = 1) -> None:
    """Enqueue the finalizer, at the front: completing an export is quick and frees resources."""
    _enqueue_control(
        redis,
        settings,
        FINALIZE,
        export_id,
        finalize_job_id(export_id, attempt),
        f"finalize export {export_id}",
        at_front=True,
    )


def enqueue_cleanup(redis: Redis, settings: Settings, export_id: uuid.UUID) -> None:
    """Enqueue the cleanup of an ended export (abort its upload), at the front."""
    _enqueue_control(
        redis, settings, CLEANUP, export_id, cleanup_job_id(export_id), f"clean up export {export_id}", at_front=True
    )
