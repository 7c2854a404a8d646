"""Standing in for RQ's scheduler while no live one serves a queue, so due retries still run.

A job that fails with retries left (``Retry(interval=…)``, ``SPILLWAY_RETRY_DELAYS_S``) waits in
its queue's ScheduledJobRegistry. RQ moves due jobs to the queue in a scheduler process, run by
the one worker that holds the queue's scheduler lock (``rq:scheduler-lock:<queue>``); it moves
them and writes a heartbeat every second. When that worker is killed, its lock outlives it by a
minute and the other workers try to take it only at their maintenance, every ten minutes, so
retries would wait that long. Each reconciler pass therefore looks at the lock of each of our
queues: held by a scheduler with a recent heartbeat (or by one starting: a worker takes the lock
before its scheduler process writes a heartbeat), RQ is on duty and nothing is done; otherwise
the reconciler takes the lock (replacing only the dead holder it saw), moves every due job, and
gives the lock back, so a scheduler that starts later takes over again.

Invariant: a due job is enqueued once. Its removal from the registry and its enqueueing are one
MULTI/EXEC that commits only if neither the registry nor the job changed since they were read
(WATCH), so of two movers exactly one enqueues it; RQ's own movers, which do not check, stay away
while the reconciler holds their lock. A rate-limited job (every chunk) takes RQ's rate-limit
path, as in RQ's scheduler, so the global cap on reads holds. The one gap: a scheduler frozen for
longer than ``SCHEDULER_STALE_S`` in the middle of its own move, that commits it after ours,
enqueues the job a second time; that run is harmless (chunk attempts are fenced in Postgres,
planners and finalizers are idempotent).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import NoSuchJobError, SchedulerNotFound
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import acquire_or_refresh_lock, release_lock
from rq.utils import as_text

from shared.logs import log_context
from shared.settings import Settings

log = logging.getLogger("spillway.reconciler")

SCHEDULER_STALE_S = 3.0  # RQ's scheduler beats every second; three seconds without a beat: it is gone
TAKE_OVER_TTL_S = 10  # the reconciler gives a scheduler lock back after its move; it expires after this if not
MOVE_BATCH = 1000  # due jobs moved per queue and pass at most (RQ's scheduler takes as many)


def enqueue_due_jobs(redis: Redis, settings: Settings, holder: str) -> int:
    """Move the due scheduled jobs of our queues that no live RQ scheduler serves; return how many.

    Args:
        holder: who takes a queue's scheduler lock for the move (the reconciler's identity).
    """
    moved = 0
    for name in (settings.queue_control, settings.queue_chunks):
        if not take_over(redis, name, holder):
            continue
        try:
            moved += move_due_jobs(redis, name)
        finally:
            release_lock(redis, RQScheduler.get_locking_key(name), holder)
    return moved


def take_over(redis: Redis, queue_name: str, holder: str) -> bool:
    """Take the queue's scheduler lock unless a live RQ scheduler holds it; return whether ``holder`` has it."""
    key = RQScheduler.get_locking_key(queue_name)
    seen = redis.get(key)
    if seen is not None and as_text(seen) != holder:
        dead = as_text(seen)
        if scheduler_alive(redis, dead):
            return False
        if release_lock(redis, key, dead):  # only if that dead holder still has it
            log.warning(
                "RQ's scheduler %s of %s wrote no heartbeat for %.0fs: the reconciler moves its due jobs",
                dead,
                queue_name,
                SCHEDULER_STALE_S,
            )
    return acquire_or_refresh_lock(redis, key, holder, TAKE_OVER_TTL_S) != "taken"


def scheduler_alive(redis: Redis, name: str) -> bool:
    """Whether the RQ scheduler ``name`` (a lock holder) beat recently, or is only starting."""
    try:
        beat = RQScheduler.fetch(name, connection=redis).last_heartbeat
    except SchedulerNotFound:
        return True  # starting (or another reconciler's short hold): the lock's TTL bounds it
    except (KeyError, ValueError, TypeError):
        # A record RQ cannot read back: after Redis restarted empty, a live scheduler's next
        # heartbeat writes its last_heartbeat field into a hash that has lost its name. It is
        # alive (it beats); the lock's TTL bounds it otherwise.
        return True
    return beat is None or (datetime.now(UTC) - beat).total_seconds() < SCHEDULER_STALE_S


def move_due_jobs(redis: Redis, queue_name: str) -> int:
    """Enqueue the queue's scheduled jobs whose time has come; return how many this call enqueued."""
    queue = Queue(queue_name, connection=redis)
    registry = ScheduledJobRegistry(queue=queue)
    due = registry.get_jobs_to_schedule(chunk_size=MOVE_BATCH)
    return sum(move_job(redis, queue, registry, job_id) for job_id in due)


def move_job(redis: Redis, queue: Queue, registry: ScheduledJobRegistry, job_id: str) -> bool:
    """Move one due job from the registry to its queue, unless another mover did; return whether this call did."""
    moved: list[tuple[Job, float]] = []

    def move(pipe: Pipeline) -> None:  # redis-py runs it again whenever a watched key changed before EXEC
        moved.clear()
        due_at = pipe.zscore(registry.key, job_id)
        if due_at is None or due_at > time.time():
            return  # moved (or rescheduled) by another mover
        try:
            job: Job | None = Job.fetch(job_id, connection=redis)
        except NoSuchJobError:
            job = None  # its hash expired: drop the entry, as RQ's scheduler does
        pipe.multi()
        registry.remove(job_id, pipeline=pipe)
        if job is not None and job.has_rate_limit:
            # As RQ's scheduler does: the public enqueue_job takes no pipeline for these.
            queue._enqueue_rate_limited_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
        elif job is not None:
            queue.enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
        if job is not None:
            moved.append((job, float(due_at)))

    redis.transaction(move, registry.key, Job.key_for(job_id))  # WATCH both, MULTI … EXEC
    if not moved:
        return False
    job, due_at = moved[0]
    with log_context(export=job.args[0] if job.args else None):  # our jobs take their export id first
        log.warning(
            "enqueued %s, due %.1fs ago, from %s: no live RQ scheduler serves it",
            job.id,
            time.time() - due_at,
            registry.key,
        )
    return True


def is_stranded(redis: Redis, job: Job) -> bool:
    """Whether RQ says ``job`` is scheduled but its queue's scheduled registry does not hold it:
    nothing would ever enqueue it."""
    registry = ScheduledJobRegistry(job.origin, connection=redis)
    with redis.pipeline() as pipe:  # MULTI: status and registry read at one instant
        pipe.hget(job.key, "status")
        pipe.zscore(registry.key, job.id)
        status, due_at = pipe.execute()
    return status is not None and status.decode() == JobStatus.SCHEDULED.value and due_at is None
