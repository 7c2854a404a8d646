"""Standing in for a dead RQ scheduler, without worker processes: due retries are enqueued once,
future ones wait, a live scheduler is left alone, and a scheduled job nothing would enqueue is
recovered. Retries are written already due (a score in the past) instead of waited for."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from rq.job import Job
from rq.rate_limit import RateLimitRegistry
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import as_text, utcformat

from shared import queue as q
from tests.support.factories import make_chunks, make_export
from worker import reconciler, scheduling

DUE = timedelta(seconds=-5)  # a retry that was due five seconds ago
LATER = timedelta(hours=1)  # a retry not due during the test


def _chunk_retry(redis, settings, after: timedelta, export_id: uuid.UUID | None = None, part: int = 1) -> Job:
    """A chunk job waiting for its retry, ``after`` from now, with the read limit every chunk job has."""
    export_id = export_id or uuid.uuid4()
    return q.chunk_queue(redis, settings).enqueue_at(
        datetime.now(UTC) + after,
        q.CHUNK,
        str(export_id),
        part,
        job_id=q.chunk_job_id(export_id, part),
        rate_limit=q.reads_limit(settings),
    )


def _plan_retry(redis, settings, after: timedelta) -> Job:
    """A planner waiting for its retry (no read limit: the queue's list shows every enqueue)."""
    export_id = uuid.uuid4()
    return q.control_queue(redis, settings).enqueue_at(
        datetime.now(UTC) + after, q.PLAN, str(export_id), job_id=q.plan_job_id(export_id)
    )


def _queued_ids(redis, queue) -> list[str]:
    return [as_text(job_id) for job_id in redis.lrange(queue.key, 0, -1)]


def test_a_due_retry_is_enqueued_once_and_a_future_one_waits(redis, quiet):
    due = _chunk_retry(redis, quiet, DUE)
    later = _chunk_retry(redis, quiet, LATER)
    chunks = q.chunk_queue(redis, quiet)
    assert scheduling.enqueue_due_jobs(redis, quiet, "test-reconciler") == 1
    assert scheduling.enqueue_due_jobs(redis, quiet, "test-reconciler") == 0  # nothing left to move
    assert _queued_ids(redis, chunks) == [due.id]
    assert due.get_status() == "queued" and later.get_status() == "scheduled"
    assert ScheduledJobRegistry(queue=chunks).get_job_ids() == [later.id]
    # Through RQ's rate-limit path: the moved chunk holds a read slot.
    assert RateLimitRegistry(q.reads_limit(quiet).key, redis).get_allowed_job_ids() == [due.id]
    # The scheduler lock is given back, for a worker's scheduler to take.
    assert redis.get(RQScheduler.get_locking_key(quiet.queue_chunks)) is None


def test_moved_retries_keep_to_the_global_read_cap(redis, quiet):
    capped = quiet.replace(max_concurrent_reads=1)
    first, second = _chunk_retry(redis, capped, DUE), _chunk_retry(redis, capped, DUE)
    assert scheduling.enqueue_due_jobs(redis, capped, "test-reconciler") == 2
    assert sorted([first.get_status(), second.get_status()]) == ["queued", "rate_limited"]
    assert len(_queued_ids(redis, q.chunk_queue(redis, capped))) == 1


def test_a_mover_that_loses_the_race_in_its_transaction_enqueues_nothing(redis, quiet, monkeypatch):
    due = _plan_retry(redis, quiet, DUE)
    control = q.control_queue(redis, quiet)
    registry = ScheduledJobRegistry(queue=control)
    fetch = Job.fetch
    others = []

    def another_mover_moves_first(cls, job_id, connection=None, serializer=None):
        # Between this mover's read of the registry and its EXEC, another mover moves the job.
        monkeypatch.setattr(Job, "fetch", fetch)
        others.append(scheduling.move_job(redis, control, registry, job_id))
        return fetch(job_id, connection=connection, serializer=serializer)

    monkeypatch.setattr(Job, "fetch", classmethod(another_mover_moves_first))
    assert scheduling.move_job(redis, control, registry, due.id) is False  # its EXEC was refused, then it saw none
    assert others == [True]
    assert _queued_ids(redis, control) == [due.id]


def test_two_movers_at_once_enqueue_each_job_once(redis, quiet):
    due = [_plan_retry(redis, quiet, DUE) for _ in range(40)]
    control = q.control_queue(redis, quiet)
    start = threading.Barrier(2)
    moved: list[int] = []

    def mover():
        start.wait()
        moved.append(scheduling.move_due_jobs(redis, quiet.queue_control))

    threads = [threading.Thread(target=mover) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(moved) == len(due)
    assert sorted(_queued_ids(redis, control)) == sorted(job.id for job in due)  # each once


def test_a_live_rq_scheduler_is_left_alone_and_a_dead_one_stood_in_for(redis, quiet):
    scheduler = RQScheduler([quiet.queue_chunks], connection=redis)
    scheduler.acquire_locks()
    scheduler.register_birth()  # its heartbeat: now
    lock = RQScheduler.get_locking_key(quiet.queue_chunks)
    try:
        due = _chunk_retry(redis, quiet, DUE)
        assert scheduling.enqueue_due_jobs(redis, quiet, "test-reconciler") == 0
        assert due.get_status() == "scheduled" and as_text(redis.get(lock)) == scheduler.name
        # Its worker was killed: the last heartbeat is ten seconds old, the lock still there.
        redis.hset(scheduler.key, "last_heartbeat", utcformat(datetime.now(UTC) - timedelta(seconds=10)))
        assert scheduling.enqueue_due_jobs(redis, quiet, "test-reconciler") == 1
        assert due.get_status() == "queued"
        assert redis.get(lock) is None  # neither the dead scheduler's lock nor ours is left
    finally:
        scheduler.register_death()
        redis.delete(lock)


def test_a_scheduled_job_no_registry_holds_is_recovered(state_conn, redis, quiet):
    export_id = make_export(state_conn, status="running", parts_total=2, object_key="k", upload_id="u")
    make_chunks(state_conn, export_id, 1, enqueued=True, job_id=q.chunk_job_id(export_id, 1))
    make_chunks(state_conn, export_id, 1, first=2, enqueued=True, job_id=q.chunk_job_id(export_id, 2))
    waiting = _chunk_retry(redis, quiet, LATER, export_id, part=1)
    stranded = _chunk_retry(redis, quiet, LATER, export_id, part=2)
    ScheduledJobRegistry(queue=q.chunk_queue(redis, quiet)).remove(stranded)  # nothing would ever enqueue it
    assert reconciler.job_state(redis, waiting.id) == "scheduled"
    assert reconciler.job_state(redis, stranded.id) == reconciler.STRANDED
    reconciler.recover_chunks(state_conn, redis, quiet)
    assert Job.exists(q.chunk_job_id(export_id, 2, 1), connection=redis)  # the stranded one is replaced
    assert not Job.exists(q.chunk_job_id(export_id, 1, 1), connection=redis)  # the waiting retry is left alone


def test_a_scheduler_record_that_lost_its_name_counts_as_alive(redis):
    """After Redis restarted empty, a live scheduler's heartbeat writes into a hash with no
    name: RQ cannot read it back, and the reconciler must neither crash nor take over."""
    from rq.scheduler import SCHEDULER_KEY_TEMPLATE

    name = f"restarted-{uuid.uuid4().hex[:8]}"
    redis.hset(SCHEDULER_KEY_TEMPLATE % name, "last_heartbeat", utcformat(datetime.now(UTC)))
    try:
        assert scheduling.scheduler_alive(redis, name)
    finally:
        redis.delete(SCHEDULER_KEY_TEMPLATE % name)
