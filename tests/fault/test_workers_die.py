"""Workers killed or frozen mid-export: the export completes, byte-identical, exactly once."""

from __future__ import annotations

import signal
import time

import psycopg
import pytest
from psycopg.rows import dict_row
from rq.job import Job
from redis import Redis

from tests.exports_support import download
from tests.fault.conftest import FULL, digest
from tests.fault_support import children, signal_tree
from tests.support import wait_for

pytestmark = pytest.mark.fault


def chunks(settings, export_id: str) -> list[dict]:
    with psycopg.connect(settings.state_database_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM export_chunks WHERE export_id = %s ORDER BY part_number",
                            (export_id,)).fetchall()


def held_chunk(scenario, export_id: str):
    """A worker process whose horse holds a running chunk of the export: (worker proc, chunk)."""
    for proc in scenario.stack.workers.procs:
        if proc.poll() is not None:
            continue
        horses = set(children(proc.pid))
        for chunk in chunks(scenario.settings, export_id):
            owner = chunk["lease_owner"] or ""
            if chunk["status"] == "running" and owner.rsplit(":", 1)[-1].isdigit() and int(owner.rsplit(":", 1)[-1]) in horses:
                return proc, chunk
    return None


def test_sigkill_one_of_three_workers_at_half_way(scenario, reference, capsys):
    scenario.stack.start(3)
    started = time.time()
    export = scenario.api.export(FULL)
    wait_for(lambda: (scenario.api.get(f"/exports/{export['id']}").get_json()["progress"]["percent"] or 0) >= 50
             and held_chunk(scenario, export["id"]), timeout=120, interval=0.01, what="half way, a chunk held")
    proc, chunk = held_chunk(scenario, export["id"])
    killed_at = time.time()
    signal_tree(proc.pid, signal.SIGKILL)  # the worker and its horse: the whole process tree
    done = scenario.api.wait(export["id"], timeout=300)
    assert done["status"] == "completed"
    data = download(done["download"]["url"])
    assert digest(data) == digest(reference["full"])  # identical bytes: 0 missing, 0 duplicate keys
    again = next(c for c in chunks(scenario.settings, export["id"]) if c["part_number"] == chunk["part_number"])
    assert again["attempt"] > chunk["attempt"]
    recovery = again["started_at"].timestamp() - killed_at
    bound = scenario.settings.lease_s + scenario.settings.reconcile_interval_s
    with capsys.disabled():
        print(f"\nSIGKILL at {killed_at - started:.1f}s: chunk {chunk['part_number']} running again after "
              f"{recovery:.1f}s (lease {scenario.settings.lease_s}s + reconcile {scenario.settings.reconcile_interval_s}s);"
              f" export took {time.time() - started:.1f}s in all")
    assert recovery <= bound + 1.0  # one second for clocks and polling
    scenario.assert_no_orphan_uploads()


def test_zombie_worker_is_fenced_out(scenario, reference, capsys):
    scenario.stack.start(3)
    export = scenario.api.export(FULL)
    found = wait_for(lambda: held_chunk(scenario, export["id"]), timeout=120, interval=0.005, what="a chunk held")
    proc, chunk = found
    horses = signal_tree(proc.pid, signal.SIGSTOP)
    try:
        taken_over = wait_for(lambda: next((c for c in chunks(scenario.settings, export["id"])
                                            if c["part_number"] == chunk["part_number"] and c["attempt"] > chunk["attempt"]
                                            and c["status"] == "done"), None), timeout=120, what="the take-over")
        done = scenario.api.wait(export["id"], timeout=300)
    finally:
        signal_tree(proc.pid, signal.SIGCONT)
        for horse in horses:
            import os

            try:
                os.killpg(os.getpgid(horse), signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert done["status"] == "completed"
    # The zombie wakes up, finds its attempt superseded, and writes nothing.
    redis = Redis.from_url(scenario.settings.redis_url)
    zombie_job = chunk["job_id"]

    def zombie_result():
        job = Job.fetch(zombie_job, connection=redis)
        return job.get_status() in ("finished", "failed") and job

    job = wait_for(zombie_result, timeout=60, what="the zombie's job to end")
    result = str(job.return_value() or job.latest_result().exc_string if job.latest_result() else job.return_value())
    assert "superseded" in result or "rejected" in result, result
    final = chunks(scenario.settings, export["id"])
    assert next(c for c in final if c["part_number"] == chunk["part_number"])["attempt"] == taken_over["attempt"]
    assert digest(download(scenario.api.get(f"/exports/{export['id']}").get_json()["download"]["url"])) == \
        digest(reference["full"])
    with psycopg.connect(scenario.settings.state_database_url) as conn:
        completions = conn.execute("SELECT finalize_attempt, status FROM exports WHERE id = %s",
                                   (export["id"],)).fetchone()
    assert completions[1] == "completed"
    with capsys.disabled():
        print(f"\nzombie: chunk {chunk['part_number']} attempt {chunk['attempt']} frozen, taken over by attempt "
              f"{taken_over['attempt']}; the zombie's job said: {result[:80]!r}")
    scenario.assert_no_orphan_uploads()


def test_sigterm_hands_back_within_the_grace_period(scenario, reference, capsys):
    scenario.stack.start(2)
    export = scenario.api.export(FULL)
    proc, chunk = wait_for(lambda: held_chunk(scenario, export["id"]), timeout=120, interval=0.005, what="a chunk held")
    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    stopped_in = time.monotonic() - asked
    done = scenario.api.wait(export["id"], timeout=300)
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(reference["full"])
    with capsys.disabled():
        print(f"\nSIGTERM: worker exited {stopped_in:.2f}s after the signal (grace period 10 s)")
    assert stopped_in < 10
