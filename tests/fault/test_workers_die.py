"""Workers killed, frozen or stopped mid-export: the export completes, byte-identical, exactly once."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import UTC
from pathlib import Path

import psycopg
import pytest
from redis import Redis
from rq import Worker
from rq.job import Job

from shared.queue import chunk_job_id, finalize_job_id, plan_job_id
from tests.support.api import download
from tests.support.jobs import job_result
from tests.support.processes import children, signal_groups, signal_tree
from tests.support.s3 import staged_objects
from tests.support.scenarios import FULL, digest
from tests.support.state import chunk_row, chunk_rows, copy_progress
from tests.support.waiting import wait_for

pytestmark = pytest.mark.fault


def held_chunk(scenario, export_id: str):
    """A worker process whose horse holds a running chunk of the export: (worker proc, chunk)."""
    for proc in scenario.stack.workers.procs:
        if proc.poll() is not None:
            continue
        horses = {str(pid) for pid in children(proc.pid)}
        for chunk in chunk_rows(scenario.settings, export_id):
            holder = (chunk["lease_owner"] or "").rsplit(":", 1)[-1]  # a lease owner is "host:pid"
            if chunk["status"] == "running" and holder in horses:
                return proc, chunk
    return None


def early_in_its_read(scenario, export_id: str):
    """A held chunk whose COPY has sent some rows but not a third of them: (worker proc, chunk)."""
    found = held_chunk(scenario, export_id)
    if found is None:
        return None
    sent = copy_progress(scenario.settings, export_id).get(found[1]["part_number"])
    return found if sent and sent < found[1]["planned_rows"] / 3 else None


def held_at_half_way(scenario, export_id: str):
    """Wait until the export is half done, then stop (SIGSTOP) a worker and its horse that hold
    one of its running chunks: (worker proc, chunk). Stopped, so that the chunk cannot end
    between this look and the signal the test sends next; the test ends the stop.

    (Looking for a chunk early in its COPY instead raced the chunks: PostgreSQL sends an
    8 MiB chunk's first third in a few tens of milliseconds, about one look's time.)"""

    def stopped_holding():
        if (scenario.api.status(export_id)["progress"]["percent"] or 0) < 50:
            return None
        found = held_chunk(scenario, export_id)
        if found is None:
            return None
        proc, chunk = found
        signal_tree(proc.pid, signal.SIGSTOP)
        now = chunk_row(scenario.settings, export_id, chunk["part_number"])
        if (now["status"], now["attempt"], now["lease_owner"]) == ("running", chunk["attempt"], chunk["lease_owner"]):
            return found
        signal_tree(proc.pid, signal.SIGCONT)  # it ended its chunk just before the stop: look again
        return None

    return wait_for(stopped_holding, timeout=120, interval=0.01, what="half way, a chunk's holder stopped")


def test_sigkill_one_of_three_workers_at_half_way(scenario, reference, capsys):
    """The dead process's liveness lock is free at once: the chunk runs again within 5 s,
    with the default lease (30 s) and reconcile interval (5 s) — not after them."""
    scenario.reconfigure(lease_s=30, reconcile_interval_s=5.0, liveness_interval_s=1.0)
    scenario.stack.start(3)
    started = time.time()
    export = scenario.api.export(FULL)
    proc, chunk = held_at_half_way(scenario, export["id"])
    killed_at = time.time()
    signal_tree(proc.pid, signal.SIGKILL)  # the worker and its horse: the whole process tree
    done = scenario.api.wait(export["id"], timeout=300)
    assert done["status"] == "completed"
    data = download(done["download"]["url"])
    assert digest(data) == digest(reference["full"])  # identical bytes: 0 missing, 0 duplicate keys
    again = chunk_row(scenario.settings, export["id"], chunk["part_number"])
    assert again["attempt"] > chunk["attempt"]
    recovery = again["started_at"].timestamp() - killed_at
    with capsys.disabled():
        print(
            f"\nSIGKILL at {killed_at - started:.1f}s: chunk {chunk['part_number']} running again after "
            f"{recovery:.1f}s (lease {scenario.settings.lease_s}s, liveness checked every "
            f"{scenario.settings.liveness_interval_s}s); export took {time.time() - started:.1f}s in all"
        )
    assert recovery <= 5.0
    scenario.assert_no_orphan_uploads()


def worker_running(scenario, job_id: str):
    """The worker process whose horse runs the job, or None."""
    redis = Redis.from_url(scenario.settings.redis_url)
    pids = {w.pid for w in Worker.all(connection=redis) if w.get_current_job_id() == job_id}
    return next((p for p in scenario.stack.workers.procs if p.pid in pids and p.poll() is None), None)


def test_sigkill_of_the_planner_mid_plan_runs_it_again_within_seconds(scenario, reference, capsys):
    """A planner killed with its streamed plan unfinished: its liveness lock is free at once, so
    it runs again within seconds (RQ gives a dead worker's job up only minutes later) and goes
    on after the last chunk recorded; the file is byte-identical."""
    scenario.reconfigure(lease_s=30, reconcile_interval_s=5.0, liveness_interval_s=1.0)
    scenario.stack.start(2)
    export_id = scenario.api.export(FULL)["id"]
    with psycopg.connect(scenario.settings.state_database_url) as hold:

        def planning() -> bool:
            status, parts_total = hold.execute(
                "SELECT status, parts_total FROM exports WHERE id = %s", (export_id,)
            ).fetchone()
            hold.rollback()
            return status == "running" and parts_total is None

        wait_for(planning, timeout=120, interval=0.002, what="the streamed plan to start")
        # Holding the export's row stops the planner at its next batch of chunks (or its finish).
        hold.execute("SELECT 1 FROM exports WHERE id = %s FOR UPDATE", (export_id,))
        planner = plan_job_id(export_id)
        proc = wait_for(lambda: worker_running(scenario, planner), timeout=30, what="the planner's worker")
        killed_at = time.time()
        signal_tree(proc.pid, signal.SIGKILL)  # the worker and its horse
        proc.wait(timeout=10)
    done = scenario.api.wait(export_id, timeout=300)
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(reference["full"])
    again = Job.fetch(plan_job_id(export_id), connection=Redis.from_url(scenario.settings.redis_url))
    recovery = again.started_at.replace(tzinfo=UTC).timestamp() - killed_at
    with capsys.disabled():
        print(f"\nSIGKILL of the planner mid-plan: the planner ran again after {recovery:.1f}s, and went on")
    assert recovery <= 5.0
    scenario.assert_no_orphan_uploads()


@pytest.mark.parametrize("extra", [{}, {"compression": "gzip"}], ids=["csv", "gzip"])
def test_sigkill_of_the_finalizer_runs_it_again_within_seconds(scenario, api, extra, capsys):
    """A finalizer killed while S3 completes the object (its lease claimed, 30 s): its liveness
    lock is free at once, so its lease is ended and the next attempt runs within seconds. The
    dead one's request reaches S3 all the same: the next attempt finds the upload gone and
    checks the object instead. The file is byte-identical (gzip: composed from staged chunk
    objects, none of them left behind)."""
    body = {**FULL, **extra}
    _, want = api.run(body)  # undisturbed, by the session's workers
    scenario.reconfigure(lease_s=30, reconcile_interval_s=5.0, liveness_interval_s=1.0)
    scenario.proxy.hold_completes = 1
    scenario.stack.start(2)
    export_id = scenario.api.export(body)["id"]
    wait_for(scenario.proxy.holding.is_set, timeout=300, interval=0.01, what="the finalizer's completion")
    first = finalize_job_id(export_id, 1)
    proc = wait_for(lambda: worker_running(scenario, first), timeout=30, what="the finalizer's worker")
    killed_at = time.time()
    signal_tree(proc.pid, signal.SIGKILL)  # the worker and its horse
    proc.wait(timeout=10)
    scenario.proxy.released.set()  # the request it had sent goes on to S3
    done = scenario.api.wait(export_id, timeout=300)
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(want)
    again = Job.fetch(finalize_job_id(export_id, 2), connection=Redis.from_url(scenario.settings.redis_url))
    recovery = again.started_at.replace(tzinfo=UTC).timestamp() - killed_at
    with capsys.disabled():
        print(f"\nSIGKILL of the finalizer mid-completion: the next attempt ran after {recovery:.1f}s")
    assert recovery <= 5.0
    # Deleted by the finalizer just after it marked the export completed.
    wait_for(lambda: staged_objects(scenario.settings, export_id) == [], timeout=30, what="the staged objects deleted")
    scenario.assert_no_orphan_uploads()


def test_zombie_worker_is_fenced_out(scenario, reference, capsys):
    scenario.stack.start(3)
    export = scenario.api.export(FULL)
    found = wait_for(lambda: held_chunk(scenario, export["id"]), timeout=120, interval=0.005, what="a chunk held")
    proc, chunk = found
    horses = signal_tree(proc.pid, signal.SIGSTOP)
    try:

        def taken_over_and_done():
            row = chunk_row(scenario.settings, export["id"], chunk["part_number"])
            return row if row["attempt"] > chunk["attempt"] and row["status"] == "done" else None

        taken_over = wait_for(taken_over_and_done, timeout=120, what="the take-over")
        done = scenario.api.wait(export["id"], timeout=300)
    finally:
        signal_tree(proc.pid, signal.SIGCONT)
        signal_groups(horses, signal.SIGCONT)
    assert done["status"] == "completed"
    # The zombie wakes up, finds its attempt superseded (or, frozen while connecting, its export
    # already ended), and writes nothing.
    result = job_result(Redis.from_url(scenario.settings.redis_url), chunk["job_id"], timeout=60)
    assert any(word in result for word in ("superseded", "rejected", "the export ended")), result
    assert chunk_row(scenario.settings, export["id"], chunk["part_number"])["attempt"] == taken_over["attempt"]
    assert digest(download(scenario.api.status(export["id"])["download"]["url"])) == digest(reference["full"])
    with psycopg.connect(scenario.settings.state_database_url) as conn:
        completions = conn.execute(
            "SELECT finalize_attempt, status FROM exports WHERE id = %s", (export["id"],)
        ).fetchone()
    assert completions[1] == "completed"
    with capsys.disabled():
        print(
            f"\nzombie: chunk {chunk['part_number']} attempt {chunk['attempt']} frozen, taken over by attempt "
            f"{taken_over['attempt']}; the zombie's job said: {result[:80]!r}"
        )
    scenario.assert_no_orphan_uploads()


def _pending(pid: int, sig: signal.Signals) -> bool:
    """Whether ``sig`` waits, undelivered, for process ``pid`` (or one of its threads)."""
    status = Path(f"/proc/{pid}/status").read_text()
    pending = re.findall(r"^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)", status, re.M)
    return any(int(mask, 16) & (1 << (sig - 1)) for mask in pending)


def stopped_early_in_its_read(scenario, export_id: str):
    """A worker and its horse stopped (SIGSTOP) early in the horse's read of a chunk it still
    holds: (worker proc, chunk, the worker's children). Stopped, so that the chunk cannot end between this
    look and the signals the test sends next; the test ends the stop."""
    found = early_in_its_read(scenario, export_id)
    if found is None:
        return None
    proc, chunk = found
    horses = signal_tree(proc.pid, signal.SIGSTOP)
    now = chunk_row(scenario.settings, export_id, chunk["part_number"])
    if (now["status"], now["attempt"], now["lease_owner"]) == ("running", chunk["attempt"], chunk["lease_owner"]):
        return proc, chunk, horses
    signal_tree(proc.pid, signal.SIGCONT)  # it ended its chunk just before the stop: look again
    return None


def test_sigterm_hands_back_within_the_grace_period(scenario, reference, capsys):
    scenario.stack.start(2)
    export = scenario.api.export(FULL)
    # Early in a chunk's read, and stopped there: a worker that merely finished its chunk
    # would fail this test.
    proc, chunk, children_stopped = wait_for(
        lambda: stopped_early_in_its_read(scenario, export["id"]),
        timeout=120,
        interval=0.005,
        what="a chunk held, early in its read, its worker and horse stopped",
    )
    horse = int(chunk["lease_owner"].rsplit(":", 1)[-1])  # the worker's other child is RQ's scheduler
    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    os.kill(proc.pid, signal.SIGCONT)  # the worker alone: it sends the hand-back request to its stopped horse
    wait_for(
        lambda: _pending(horse, signal.SIGUSR1),
        timeout=10,
        interval=0.005,
        what="the worker's hand-back request (SIGUSR1) pending on its stopped horse",
    )
    signal_groups(children_stopped, signal.SIGCONT)
    proc.wait(timeout=10)
    stopped_in = time.monotonic() - asked
    redis = Redis.from_url(scenario.settings.redis_url)
    held_job_said = job_result(redis, chunk["job_id"], timeout=10)
    done = scenario.api.wait(export["id"], timeout=300)
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(reference["full"])
    again = chunk_row(scenario.settings, export["id"], chunk["part_number"])
    with capsys.disabled():
        print(
            f"\nSIGTERM: worker exited {stopped_in:.2f}s after the signal (grace period 10 s); chunk "
            f"{chunk['part_number']} attempt {chunk['attempt']} said {held_job_said!r}, then "
            f"{again['job_id']} ran it as attempt {again['attempt']}"
        )
    assert stopped_in < 10
    # Handed back: released and replaced by the worker itself, then done by a later attempt elsewhere.
    assert held_job_said.startswith("handed back"), held_job_said  # not "part …" (finished), not "stopped"
    assert again["recoveries"] == chunk["recoveries"] + 1
    assert again["job_id"] == chunk_job_id(export["id"], chunk["part_number"], again["recoveries"])
    assert again["status"] == "done" and again["attempt"] > chunk["attempt"]
    assert job_result(redis, again["job_id"]).startswith(f"part {chunk['part_number']}:")


def _blocked_signals(pid: int, tid: int) -> int:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    return int(re.search(r"^SigBlk:\s*([0-9a-f]+)", status, re.M).group(1), 16)


def test_a_stopped_worker_takes_a_sigterm_on_its_main_thread(scenario):
    """Only the worker's main thread may take SIGTERM or SIGINT (RQ's pubsub thread blocks
    them), so a SIGTERM sent while every thread is stopped (a frozen VM, a debugger) runs its
    handler as soon as the worker runs again. Taken by the pubsub thread, it waited until the
    main thread came back from its wait: for an idle worker, its BLPOP of several minutes."""
    scenario.stack.start(1)
    (proc,) = scenario.stack.workers.procs
    shutdown = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
    threads = wait_for(
        lambda: [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir() if int(t.name) != proc.pid],
        timeout=30,
        what="the worker's pubsub thread",
    )
    assert all(_blocked_signals(proc.pid, tid) & shutdown == shutdown for tid in threads)
    assert _blocked_signals(proc.pid, proc.pid) & shutdown == 0
    redis = Redis.from_url(scenario.settings.redis_url)
    # Idle: waiting for a job, past RQ's start (which installs the handlers after the pubsub thread).
    wait_for(lambda: [w.get_state() for w in Worker.all(connection=redis)] == ["idle"], what="the worker idle")
    signal_groups([proc.pid], signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)
    signal_groups([proc.pid], signal.SIGCONT)
    assert proc.wait(timeout=10) == 0  # a warm shutdown of an idle worker: at once
