"""The reconciler and the one way to end an export, on factory rows: what each step enqueues."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.rate_limit import RateLimitRegistry

from shared import exports_repo
from shared.lifecycle import end_export
from shared.liveness import FINALIZER_PART, LOCK_CLASS, lock_key
from shared.models import ExportStatus
from shared.queue import (
    cancel_key,
    chunk_job_id,
    chunk_queue,
    cleanup_job_id,
    control_queue,
    enqueue_chunks,
    enqueue_finalize,
    enqueue_plan,
    finalize_job_id,
    plan_job_id,
    reads_limit,
    webhook_job_id,
)
from tests.support.factories import from_now, make_chunks, make_export, make_running_export
from tests.support.waiting import wait_for
from worker import reconciler


def _job_exists(redis, job_id: str) -> bool:
    return Job.exists(job_id, connection=redis)


def _recoveries(conn, export_id: uuid.UUID, part_number: int) -> int:
    row = conn.execute(
        "SELECT recoveries FROM export_chunks WHERE export_id = %s AND part_number = %s", (export_id, part_number)
    ).fetchone()
    return row["recoveries"]


# The reconciler looks at every export of the test database; the assertions look at this test's.


def test_a_chunk_with_an_expired_lease_gets_a_replacement_job(state_conn, redis, quiet):
    export_id = make_running_export(state_conn, parts=2, running=1)
    state_conn.execute(
        "UPDATE export_chunks SET lease_expires_at = now() - interval '1 second'"
        " WHERE export_id = %s AND part_number = 1",
        (export_id,),
    )
    assert reconciler.recover_chunks(state_conn, redis, quiet) >= 1
    assert _job_exists(redis, chunk_job_id(export_id, 1, 1))
    # the replacement is waiting for a worker: the next pass leaves it alone
    reconciler.recover_chunks(state_conn, redis, quiet)
    assert _recoveries(state_conn, export_id, 1) == 1 and not _job_exists(redis, chunk_job_id(export_id, 1, 2))


def test_a_pending_chunk_whose_job_redis_lost_is_enqueued_again(state_conn, redis, quiet):
    export_id = make_export(state_conn, status="running", parts_total=2, object_key="k", upload_id="u")
    make_chunks(state_conn, export_id, 1, enqueued=True, job_id=chunk_job_id(export_id, 1))  # never in Redis
    assert reconciler.recover_chunks(state_conn, redis, quiet) >= 1
    assert _job_exists(redis, chunk_job_id(export_id, 1, 1))


def test_a_job_on_its_way_to_redis_is_not_taken_for_lost(state_conn, redis, quiet):
    """A hand-back or recovery commits the new job id before the job reaches Redis: a pass that
    looks in between must not add a second recovery (seen in CI: recoveries 2, not 1)."""
    export_id = make_export(state_conn, status="running", parts_total=1, object_key="k", upload_id="u")
    make_chunks(state_conn, export_id, 1, enqueued=True, job_id=chunk_job_id(export_id, 1, 1), recoveries=1)
    missing: reconciler.MissingJobs = {}
    reconciler.recover_chunks(state_conn, redis, quiet, missing=missing)  # missing, first seen now
    assert _recoveries(state_conn, export_id, 1) == 1 and (export_id, 1, chunk_job_id(export_id, 1, 1)) in missing
    enqueue_chunks(redis, quiet, export_id, [1], 1)  # ... and there it is
    _age(missing, reconciler.LOST_JOB_GRACE_S)
    reconciler.recover_chunks(state_conn, redis, quiet, missing=missing)
    assert _recoveries(state_conn, export_id, 1) == 1 and not _job_exists(redis, chunk_job_id(export_id, 1, 2))
    assert (export_id, 1, chunk_job_id(export_id, 1, 1)) not in missing  # forgotten once it arrived


def test_a_job_missing_past_the_grace_time_is_lost(state_conn, redis, quiet):
    """A process killed between marking a chunk enqueued and enqueuing it: the job never comes."""
    export_id = make_export(state_conn, status="running", parts_total=1, object_key="k", upload_id="u")
    make_chunks(state_conn, export_id, 1, enqueued=True, job_id=chunk_job_id(export_id, 1))
    missing: reconciler.MissingJobs = {}
    reconciler.recover_chunks(state_conn, redis, quiet, missing=missing)
    assert _recoveries(state_conn, export_id, 1) == 0  # within the grace time
    _age(missing, reconciler.LOST_JOB_GRACE_S)
    reconciler.recover_chunks(state_conn, redis, quiet, missing=missing)
    assert _recoveries(state_conn, export_id, 1) == 1 and _job_exists(redis, chunk_job_id(export_id, 1, 1))


def _age(missing, seconds: float) -> None:
    """Move every first sighting ``seconds`` into the past (instead of sleeping)."""
    for key in missing:
        missing[key] -= seconds


def test_a_live_lease_is_left_alone(state_conn, redis, quiet):
    export_id = make_running_export(state_conn, parts=1, running=1)
    reconciler.recover_chunks(state_conn, redis, quiet)
    assert _recoveries(state_conn, export_id, 1) == 0 and not _job_exists(redis, chunk_job_id(export_id, 1, 1))


def test_lost_planners_and_finalizers_are_enqueued_again(state_conn, redis, quiet, owner):
    planned = make_export(state_conn, owner=owner, admitted=True)
    finishing = make_running_export(state_conn, owner=owner, parts=2, done=2)
    reconciler.recover_control_jobs(state_conn, redis, quiet)
    assert _job_exists(redis, plan_job_id(planned))
    assert _job_exists(redis, finalize_job_id(finishing, 1))


def test_a_streamed_plan_whose_planner_was_lost_is_planned_on(state_conn, redis, quiet, owner):
    planning = make_running_export(state_conn, owner=owner, parts=2, done=2, parts_total=None)
    planned = make_running_export(state_conn, owner=owner, parts=2, running=1)
    reconciler.recover_control_jobs(state_conn, redis, quiet)
    assert _job_exists(redis, plan_job_id(planning))  # it goes on after its last chunk (worker/planner.py)
    assert not _job_exists(redis, finalize_job_id(planning, 1))  # all its parts so far are done: not all parts
    assert not _job_exists(redis, plan_job_id(planned))


def test_completed_exports_past_their_expiry_are_expired(state_conn, settings, bucket):
    gone = make_export(
        state_conn, status="completed", object_key=f"exports/{uuid.uuid4()}/x.csv", expires_at=from_now(-1)
    )
    kept = make_export(state_conn, status="completed", object_key="exports/kept.csv")
    assert reconciler.expire_exports(state_conn, settings) >= 1
    assert exports_repo.get_export(state_conn, gone).status == ExportStatus.EXPIRED
    assert exports_repo.get_export(state_conn, kept).status == ExportStatus.COMPLETED


def test_ending_an_export_stops_its_work_cleans_up_and_admits_the_next(state_conn, redis, quiet, owner):
    running = make_running_export(state_conn, owner=owner, parts=3, running=1)
    waiting = make_export(state_conn, owner=owner, created_at=from_now(-1))
    quiet = quiet.replace(max_running_per_owner=1)
    ended = end_export(state_conn, redis, quiet, running, ExportStatus.FAILED, "part 2: boom")
    assert ended is not None and ended.status == ExportStatus.FAILED and ended.error == "part 2: boom"
    assert redis.exists(cancel_key(quiet, running))  # running chunks stop at their next block
    assert _job_exists(redis, cleanup_job_id(running))  # the upload is aborted, as after a cancel
    assert _job_exists(redis, plan_job_id(waiting))  # the owner's next export is admitted
    assert end_export(state_conn, redis, quiet, running, ExportStatus.CANCELLED) is None


def test_the_reconciler_lock_is_taken_and_extended_only_by_its_holder(redis):
    key = f"state-test-lock-{uuid.uuid4().hex}"
    assert reconciler.hold_lock(redis, key, "a", 10_000)
    assert not reconciler.hold_lock(redis, key, "b", 10_000)
    assert reconciler.hold_lock(redis, key, "a", 10_000)  # extended
    redis.delete(key)  # a's lock expired
    assert reconciler.hold_lock(redis, key, "b", 10_000)
    assert not reconciler.hold_lock(redis, key, "a", 10_000)  # a cannot extend b's lock
    assert redis.get(key) == b"b"
    redis.delete(key)


def _backend_pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]


def test_the_reconciler_keeps_its_state_session_and_replaces_it_at_once_when_it_breaks(settings):
    """One backend from pass to pass, not one a pass (PostgreSQL started one a second before);
    a session broken under a step (a restart, a terminated backend) costs no pass."""
    with reconciler.StateSession(settings) as session:
        first = session.run(_backend_pid)
        assert session.run(_backend_pid) == first
        with psycopg.connect(settings.state_database_url, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone()[0]
            wait_for(
                lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (first,)).fetchone(),
                what="the terminated backend to go",
            )
        second = session.run(_backend_pid)  # the first try fails on the dead session; the step runs again
        assert second != first
        assert session.run(_backend_pid) == second


def test_an_error_that_leaves_the_session_whole_is_not_run_again(settings):
    runs = []

    def times_out(conn) -> None:
        runs.append(_backend_pid(conn))
        conn.execute("SET statement_timeout = '10ms'")
        try:
            conn.execute("SELECT pg_sleep(1)")
        finally:
            conn.execute("RESET statement_timeout")

    with reconciler.StateSession(settings) as session:
        with pytest.raises(psycopg.errors.QueryCanceled):
            session.run(times_out)
        assert len(runs) == 1
        assert session.run(_backend_pid) != runs[0]  # closed after the error all the same: a clean start


def _taken_by_a_worker(state_conn, redis, quiet, how: str = "started") -> uuid.UUID:
    """A running export whose pending chunk 1 has a job a worker took and has not claimed the
    chunk for yet (or died before it could): RQ calls the job started, or (``popped``) the
    worker popped it from the queue and has not marked it started."""
    export_id = make_export(state_conn, status="running", parts_total=1, object_key="k", upload_id="u")
    job_id = chunk_job_id(export_id, 1)
    make_chunks(state_conn, export_id, 1, enqueued=True, job_id=job_id)
    enqueue_chunks(redis, quiet, export_id, [1])
    assert job_id in RateLimitRegistry(reads_limit(quiet).key, redis).get_allowed_job_ids()  # it holds a slot
    assert redis.lrem(chunk_queue(redis, quiet).key, 1, job_id) == 1  # the worker's BLPOP
    if how == "started":
        Job.fetch(job_id, connection=redis).set_status(JobStatus.STARTED)
    return export_id


def _two_quick_steps(state_conn, redis, quiet) -> None:
    sightings: set = set()
    for _ in range(2):
        reconciler.recover_chunks(state_conn, redis, quiet, missing={}, unclaimed=sightings, lease_s=0)


@pytest.mark.parametrize("how", ["started", "popped"])
def test_a_pending_chunk_whose_worker_died_before_claiming_it_runs_again_at_once(state_conn, redis, quiet, how):
    """Its job stays started in RQ for minutes (or queued for ever, when the worker died
    between popping it and marking it started, as in a fault test that killed a worker just
    then); the chunk's liveness lock, free at two checks in a row, tells the worker is gone.
    The dead worker's job is deleted, which frees its slot of the global read limit."""
    export_id = _taken_by_a_worker(state_conn, redis, quiet, how)
    sightings: set = set()
    reconciler.recover_chunks(state_conn, redis, quiet, missing={}, unclaimed=sightings, lease_s=0)
    assert _recoveries(state_conn, export_id, 1) == 0  # one sighting: it may be taking its lock
    reconciler.recover_chunks(state_conn, redis, quiet, missing={}, unclaimed=sightings, lease_s=0)
    assert _recoveries(state_conn, export_id, 1) == 1
    assert _job_exists(redis, chunk_job_id(export_id, 1, 1))
    assert not _job_exists(redis, chunk_job_id(export_id, 1))
    assert chunk_job_id(export_id, 1) not in RateLimitRegistry(reads_limit(quiet).key, redis).get_allowed_job_ids()
    _two_quick_steps(state_conn, redis, quiet)  # the new job waits in the queue: left alone
    assert _recoveries(state_conn, export_id, 1) == 1


@pytest.mark.parametrize("how", ["started", "popped"])
def test_a_pending_chunk_whose_worker_holds_its_lock_is_left_to_it(state_conn, redis, quiet, db, how):
    export_id = _taken_by_a_worker(state_conn, redis, quiet, how)
    with psycopg.connect(db, autocommit=True) as alive:  # the job's process, alive and about to claim
        alive.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(export_id, 1)))
        _two_quick_steps(state_conn, redis, quiet)
    assert _recoveries(state_conn, export_id, 1) == 0


@pytest.mark.parametrize("how", ["started", "popped"])
def test_a_planner_whose_worker_died_is_enqueued_again_at_the_second_check(state_conn, redis, quiet, how):
    """A streamed plan unfinished, its job taken by a worker that died (started, or popped and
    never marked started), its lock free: the planner is enqueued again, to go on."""
    export_id = make_export(state_conn, status="running", object_key="k", upload_id="u")  # parts_total NULL
    enqueue_plan(redis, quiet, export_id)
    queue = control_queue(redis, quiet)
    assert redis.lrem(queue.key, 1, plan_job_id(export_id)) == 1  # a worker's BLPOP
    if how == "started":
        Job.fetch(plan_job_id(export_id), connection=redis).set_status(JobStatus.STARTED)
    sightings: set = set()
    judged = quiet.replace(lease_s=1)  # judged also soon after the server started (that guard: test_liveness.py)
    assert reconciler.recover_dead_planners(state_conn, redis, judged, sightings) == 0  # one sighting
    assert queue.get_job_position(plan_job_id(export_id)) is None
    assert reconciler.recover_dead_planners(state_conn, redis, judged, sightings) >= 1
    assert queue.get_job_position(plan_job_id(export_id)) is not None  # waiting for a worker again
    assert reconciler.recover_dead_planners(state_conn, redis, judged, sightings) == 0


@pytest.mark.parametrize("step", ["plan", "finalize"])
def test_a_control_job_popped_by_a_worker_that_died_is_enqueued_again_at_the_second_pass(
    state_conn, redis, quiet, owner, step
):
    """Popped from the queue and never marked started (its worker killed in between): RQ keeps
    it queued, in no queue, for ever. Two passes seeing it so enqueue it again."""
    if step == "plan":
        export_id = make_export(state_conn, owner=owner, admitted=True)
        job_id = plan_job_id(export_id)
        enqueue_plan(redis, quiet, export_id)
    else:
        export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
        job_id = finalize_job_id(export_id, 1)
        enqueue_finalize(redis, quiet, export_id, 1)
    queue = control_queue(redis, quiet)
    assert redis.lrem(queue.key, 1, job_id) == 1  # the dead worker's BLPOP
    popped: set[str] = set()
    reconciler.recover_control_jobs(state_conn, redis, quiet, popped)
    assert queue.get_job_position(job_id) is None and job_id in popped  # one sighting: it may be starting
    reconciler.recover_control_jobs(state_conn, redis, quiet, popped)
    assert queue.get_job_position(job_id) is not None  # enqueued again
    reconciler.recover_control_jobs(state_conn, redis, quiet, popped)
    assert queue.get_job_ids().count(job_id) == 1  # waiting in the queue: left alone


def _finalize_job_started(redis, quiet, export_id: uuid.UUID, attempt: int, status=JobStatus.STARTED) -> None:
    """The finalize job of that number, popped by a worker and (by default) marked started."""
    enqueue_finalize(redis, quiet, export_id, attempt)
    assert redis.lrem(control_queue(redis, quiet).key, 1, finalize_job_id(export_id, attempt)) == 1  # BLPOP
    Job.fetch(finalize_job_id(export_id, attempt), connection=redis).set_status(status)


def _finalize_waiting(redis, quiet, export_id: uuid.UUID, attempt: int) -> bool:
    return control_queue(redis, quiet).get_job_position(finalize_job_id(export_id, attempt)) is not None


def test_a_finalizer_that_died_holding_its_lease_is_run_again_at_the_second_check(state_conn, redis, quiet, owner):
    """Its lease (30 s) is ended at once, fenced by its attempt, and the next attempt enqueued:
    the finalizer runs again within seconds, not after the lease."""
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    _finalize_job_started(redis, quiet, export_id, 1)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 1  # then its process died
    sightings: set = set()
    judged = quiet.replace(lease_s=1)  # judged also soon after the server started (that guard: test_liveness.py)
    assert reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings) == 0  # one sighting
    assert not _finalize_waiting(redis, quiet, export_id, 2)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) is None  # its lease still stands
    assert reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings) >= 1
    assert _finalize_waiting(redis, quiet, export_id, 2)
    assert reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings) == 0  # waiting: left alone
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 2  # the next attempt can claim it


@pytest.mark.parametrize("how", ["started", "popped"])
def test_a_finalizer_whose_worker_died_before_claiming_is_enqueued_again_at_the_second_check(
    state_conn, redis, quiet, owner, how
):
    """Its job taken (RQ calls it started for minutes, or it was popped and is queued in no
    queue for ever), its lock free, no lease: the same attempt's job is enqueued again."""
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    enqueue_finalize(redis, quiet, export_id, 1)
    assert redis.lrem(control_queue(redis, quiet).key, 1, finalize_job_id(export_id, 1)) == 1  # a worker's BLPOP
    if how == "started":
        Job.fetch(finalize_job_id(export_id, 1), connection=redis).set_status(JobStatus.STARTED)
    sightings: set = set()
    judged = quiet.replace(lease_s=1)
    assert reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings) == 0  # it may be taking its lock
    assert not _finalize_waiting(redis, quiet, export_id, 1)
    assert reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings) >= 1
    assert _finalize_waiting(redis, quiet, export_id, 1)
    assert reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings) == 0


@pytest.mark.parametrize("claimed", [True, False])
def test_a_finalizer_holding_its_lock_is_left_to_it(state_conn, redis, quiet, owner, db, claimed):
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    _finalize_job_started(redis, quiet, export_id, 1)
    if claimed:
        assert exports_repo.claim_finalize(state_conn, export_id, 30) == 1
    sightings: set = set()
    judged = quiet.replace(lease_s=1)
    with psycopg.connect(db, autocommit=True) as alive:  # the finalizer's process, alive
        alive.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(export_id, FINALIZER_PART)))
        for _ in range(3):
            reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings)
    assert not _finalize_waiting(redis, quiet, export_id, 1) and not _finalize_waiting(redis, quiet, export_id, 2)
    if claimed:
        assert exports_repo.claim_finalize(state_conn, export_id, 30) is None  # its lease stands


def test_a_webhook_attempt_popped_by_a_worker_that_died_is_enqueued_again_at_the_second_pass(state_conn, redis, quiet):
    """Popped from the webhook queue and never marked started: RQ keeps the job queued, in no
    queue, for ever, and the delivery was never attempted. Two passes seeing it so enqueue it
    again; one waiting in the queue is left alone."""
    export_id = make_export(state_conn, status="completed", notify_url="https://hooks.example.com/spillway")
    state_conn.execute(
        "INSERT INTO webhook_deliveries (id, export_id, event) VALUES (gen_random_uuid(), %s, 'export.completed')",
        (export_id,),
    )
    (delivery_id,) = (
        state_conn.execute("SELECT id FROM webhook_deliveries WHERE export_id = %s", (export_id,)).fetchone().values()
    )
    job_id = webhook_job_id(delivery_id, 1)
    queue = Queue(quiet.queue_webhooks, connection=redis)
    popped: set[str] = set()
    reconciler.dispatch_webhooks(state_conn, redis, quiet, popped)
    assert queue.get_job_position(job_id) is not None  # the first attempt's job
    reconciler.dispatch_webhooks(state_conn, redis, quiet, popped)
    assert queue.get_job_ids().count(job_id) == 1 and not popped  # waiting in the queue: left alone
    assert redis.lrem(queue.key, 1, job_id) == 1  # the dead worker's BLPOP
    reconciler.dispatch_webhooks(state_conn, redis, quiet, popped)
    assert queue.get_job_position(job_id) is None and job_id in popped  # one sighting: it may be starting
    reconciler.dispatch_webhooks(state_conn, redis, quiet, popped)
    assert queue.get_job_position(job_id) is not None  # enqueued again


@pytest.mark.parametrize("status", [JobStatus.SCHEDULED, JobStatus.FAILED])
def test_a_finalizer_whose_job_raised_is_left_to_its_retry_and_lease(state_conn, redis, quiet, owner, status):
    """Its process is alive and its lock free, but the job ended with an error: RQ's retry (with
    its backoff and limit) runs it again, or the lease runs out; the quick step does not, which
    would give every failure a fresh job with fresh retries every two seconds."""
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    _finalize_job_started(redis, quiet, export_id, 1, status)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 1
    sightings: set = set()
    judged = quiet.replace(lease_s=1)
    for _ in range(3):
        reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings)
    assert not _finalize_waiting(redis, quiet, export_id, 2)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) is None  # its lease stands


def test_no_new_finalize_job_while_an_earlier_one_is_to_run_again(state_conn, redis, quiet, owner):
    """A finalize that raised ended its lease and waits for its RQ retry (scheduled): the pass
    leaves it to that retry, with its backoff and its limit. Once it is gone, the next attempt's
    job is enqueued."""
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    _finalize_job_started(redis, quiet, export_id, 1)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 1
    assert exports_repo.expire_finalize(state_conn, export_id, 1)  # what the failing finalizer does
    job = Job.fetch(finalize_job_id(export_id, 1), connection=redis)
    control_queue(redis, quiet).schedule_job(job, datetime.now(UTC) + timedelta(seconds=60))  # RQ's retry
    reconciler.recover_control_jobs(state_conn, redis, quiet)
    assert not _job_exists(redis, finalize_job_id(export_id, 2))
    Job.fetch(finalize_job_id(export_id, 1), connection=redis).delete()  # its retries over, or expired
    reconciler.recover_control_jobs(state_conn, redis, quiet)
    assert _finalize_waiting(redis, quiet, export_id, 2)


def _recovered_at_the_second_check(state_conn, redis, quiet) -> None:
    """Two quick steps: the first only sights the free lock, the second recovers."""
    sightings: set = set()
    judged = quiet.replace(lease_s=1)  # judged also soon after the server started (that guard: test_liveness.py)
    assert reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings) == 0
    assert reconciler.recover_dead_finalizers(state_conn, redis, judged, sightings) >= 1


def test_a_finalize_retry_that_claimed_a_later_attempt_and_died_is_replaced(state_conn, redis, quiet, owner):
    """finalize-1's RQ retry claimed attempt 2, and its process died: RQ still calls finalize-1
    started. The quick step ends the lease, deletes the dead job (no pass may take it for
    live) and enqueues finalize-3."""
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    _finalize_job_started(redis, quiet, export_id, 1)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 1
    assert exports_repo.expire_finalize(state_conn, export_id, 1)  # it raised; its retry runs
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 2  # ... and dies
    _recovered_at_the_second_check(state_conn, redis, quiet)
    assert not _job_exists(redis, finalize_job_id(export_id, 1))
    assert _finalize_waiting(redis, quiet, export_id, 3)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 3


def test_a_finalize_that_raised_and_died_before_its_retry_was_recorded_is_replaced(state_conn, redis, quiet, owner):
    """It ended its lease, then its worker died before RQ recorded the retry: RQ calls the job
    started for minutes, which every pass would take for a retry still to run. The quick step
    deletes it and enqueues the next attempt."""
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    _finalize_job_started(redis, quiet, export_id, 1)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 1
    assert exports_repo.expire_finalize(state_conn, export_id, 1)  # it raised, then its worker died
    reconciler.recover_control_jobs(state_conn, redis, quiet)
    assert not _job_exists(redis, finalize_job_id(export_id, 2))  # taken for a retry still to run
    _recovered_at_the_second_check(state_conn, redis, quiet)
    assert not _job_exists(redis, finalize_job_id(export_id, 1))
    assert _finalize_waiting(redis, quiet, export_id, 2)


def test_earlier_finalize_jobs_popped_by_dead_workers_stop_holding_the_export_back(state_conn, redis, quiet, owner):
    """Two of them (finalize-1 and finalize-2, each popped by a worker that died): both are
    judged lost at the second pass, deleted, and finalize-3 is enqueued; a pass that judged
    only the first would alternate for ever."""
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    state_conn.execute("UPDATE exports SET finalize_attempt = 2 WHERE id = %s", (export_id,))
    queue = control_queue(redis, quiet)
    for n in (1, 2):
        enqueue_finalize(redis, quiet, export_id, n)
        assert redis.lrem(queue.key, 1, finalize_job_id(export_id, n)) == 1  # a dead worker's BLPOP
    popped: set[str] = set()
    reconciler.recover_control_jobs(state_conn, redis, quiet, popped)
    assert not _job_exists(redis, finalize_job_id(export_id, 3))  # first sightings
    reconciler.recover_control_jobs(state_conn, redis, quiet, popped)
    assert not _job_exists(redis, finalize_job_id(export_id, 1)) and not _job_exists(
        redis, finalize_job_id(export_id, 2)
    )
    assert _finalize_waiting(redis, quiet, export_id, 3)


def test_a_frozen_finalizer_past_its_lease_is_taken_over_at_the_second_pass(state_conn, redis, quiet, owner, db):
    """RQ calls its job started and it holds its lock, but its lease ran out: the lease is the
    fallback for a stuck process. The first pass may be a job between its failure and RQ's
    record of its retry; the second enqueues the next attempt, which claims without the lock."""
    export_id = make_running_export(state_conn, owner=owner, parts=2, done=2)
    _finalize_job_started(redis, quiet, export_id, 1)
    assert exports_repo.claim_finalize(state_conn, export_id, 30) == 1
    state_conn.execute(
        "UPDATE exports SET finalize_lease_expires_at = now() - interval '1 second' WHERE id = %s", (export_id,)
    )
    popped: set[str] = set()
    with psycopg.connect(db, autocommit=True) as frozen:
        frozen.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(export_id, FINALIZER_PART)))
        reconciler.recover_control_jobs(state_conn, redis, quiet, popped)
        assert not _job_exists(redis, finalize_job_id(export_id, 2))  # one sighting
        reconciler.recover_control_jobs(state_conn, redis, quiet, popped)
        assert _finalize_waiting(redis, quiet, export_id, 2)
        assert _job_exists(redis, finalize_job_id(export_id, 1))  # the frozen one's job is left to it
    assert exports_repo.claim_finalize(state_conn, export_id, 30, taken_over=True) == 2
