"""The worker running RQ's scheduler is killed while an export waits on a retry: the reconciler
enqueues the retry on time, and the export completes byte-identical."""

from __future__ import annotations

import signal
import time

import psycopg
import pytest
from redis import Redis
from rq.exceptions import SchedulerNotFound
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import as_text

from tests.support.api import download
from tests.support.processes import LOGS, children, signal_tree
from tests.support.scenarios import PART, digest
from tests.support.state import chunk_label_pattern
from tests.support.waiting import wait_for
from worker.scheduling import SCHEDULER_STALE_S

pytestmark = pytest.mark.fault

# Longer than SCHEDULER_STALE_S plus the time to see the retry scheduled and kill its scheduler:
# the retry falls due after the reconciler can tell RQ's scheduler is gone, so the bound under
# test is its delay plus one reconcile interval.
RETRY_DELAY_S = 5
TOLERANCE_S = 1.0  # polling, process wake-ups, clocks


def scheduler_holder(scenario, queue_name: str):
    """The live worker whose RQ scheduler holds the queue's scheduler lock: (worker proc, scheduler)."""
    redis = Redis.from_url(scenario.settings.redis_url)
    name = redis.get(RQScheduler.get_locking_key(queue_name))
    if name is None:
        return None
    try:
        scheduler = RQScheduler.fetch(as_text(name), connection=redis)
    except SchedulerNotFound:
        return None  # starting: its heartbeat is not written yet
    for proc in scenario.stack.workers.procs:
        if proc.poll() is None and scheduler.pid in children(proc.pid):
            return proc, scheduler
    return None


def fail_one_copy(scenario, export_id: str) -> int | None:
    """Terminate the backend of one running chunk COPY of the export (a transient failure); its part number."""
    with psycopg.connect(scenario.settings.state_database_url) as conn:
        row = conn.execute(
            "SELECT pg_terminate_backend(pid), application_name FROM pg_stat_activity"
            " WHERE application_name LIKE %s AND query LIKE 'COPY%%' AND state = 'active' LIMIT 1",
            (chunk_label_pattern(export_id),),
        ).fetchone()
    return int(row[1].rsplit(":", 1)[1]) if row else None


def test_a_retry_runs_on_time_after_the_scheduler_holder_is_sigkilled(scenario, reference, capsys):
    scenario.reconfigure(retry_delays_s=",".join([str(RETRY_DELAY_S)] * 3))
    scenario.stack.start(3)
    settings = scenario.settings
    redis = Redis.from_url(settings.redis_url)
    wait_for(lambda: scheduler_holder(scenario, settings.queue_chunks), timeout=60, what="a worker's RQ scheduler")
    export = scenario.api.export(PART)
    wait_for(lambda: fail_one_copy(scenario, export["id"]), timeout=120, interval=0.005, what="a chunk COPY to fail")
    registry = ScheduledJobRegistry(settings.queue_chunks, connection=redis)
    # The failed job itself (not the chunk's row: a reconciler pass may have replaced its job meanwhile).
    retry_id = wait_for(lambda: next(iter(registry.get_job_ids()), None), timeout=30, interval=0.01, what="a retry")
    first_run = Job.fetch(retry_id, connection=redis).started_at
    due = registry.get_scheduled_time(retry_id).timestamp()  # whole seconds, as RQ scores it

    proc, scheduler = scheduler_holder(scenario, settings.queue_chunks)
    killed_at = time.time()
    signal_tree(proc.pid, signal.SIGKILL)  # the worker, its scheduler process and its horse
    proc.wait(timeout=10)

    interval = settings.reconcile_interval_s
    bound = max(due, killed_at + SCHEDULER_STALE_S) + interval

    def retry_started():
        job = Job.fetch(retry_id, connection=redis)
        return job if job.started_at != first_run else None

    job = wait_for(retry_started, timeout=bound - time.time() + 30, interval=0.02, what=f"the retry {retry_id}")
    done = scenario.api.wait(export["id"], timeout=300)
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(reference["part"])

    enqueued_late = job.enqueued_at.timestamp() - due
    started_late = job.started_at.timestamp() - due
    with capsys.disabled():
        print(
            f"\nscheduler {scheduler.name} (pid {scheduler.pid}) SIGKILLed {due - killed_at:.1f}s before the retry "
            f"{retry_id} was due ({RETRY_DELAY_S}s after the failure); it was enqueued {enqueued_late:.2f}s and "
            f"started {started_late:.2f}s after it was due (bound: one reconcile interval, {interval}s, "
            f"+ {TOLERANCE_S}s tolerance)"
        )
    assert job.started_at.timestamp() <= bound + TOLERANCE_S
    reconciler_log = (LOGS / "test-reconciler.log").read_text(errors="replace")
    assert f"RQ's scheduler {scheduler.name} of {settings.queue_chunks} wrote no heartbeat" in reconciler_log
    assert f"enqueued {retry_id}, due" in reconciler_log  # the reconciler moved it, not RQ
    scenario.assert_no_orphan_uploads()
