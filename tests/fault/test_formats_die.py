"""A worker killed half way through a compressed export: the file is byte-identical to an
undisturbed run's, and nothing of it (upload, staged chunk objects) is left behind."""

from __future__ import annotations

import signal

import pytest

from tests.fault.test_workers_die import held_at_half_way
from tests.support.api import download
from tests.support.processes import signal_tree
from tests.support.s3 import staged_objects
from tests.support.scenarios import FULL, digest
from tests.support.state import chunk_row
from tests.support.waiting import wait_for

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("extra", [{"compression": "gzip"}, {"format": "xlsx"}], ids=["gzip", "xlsx"])
def test_sigkill_at_half_way_gives_the_undisturbed_file(scenario, api, extra):
    body = {**FULL, **extra}
    _, want = api.run(body)  # undisturbed, by the session's workers
    scenario.reconfigure(lease_s=30, reconcile_interval_s=5.0, liveness_interval_s=1.0)
    scenario.stack.start(3)
    export = scenario.api.export(body)
    proc, chunk = held_at_half_way(scenario, export["id"])
    signal_tree(proc.pid, signal.SIGKILL)
    done = scenario.api.wait(export["id"], timeout=300)
    assert done["status"] == "completed"
    assert digest(download(done["download"]["url"])) == digest(want)
    assert chunk_row(scenario.settings, export["id"], chunk["part_number"])["attempt"] > chunk["attempt"]
    # Deleted by the finalizer just after it marked the export completed.
    wait_for(
        lambda: staged_objects(scenario.settings, export["id"]) == [], timeout=30, what="the staged objects deleted"
    )
    scenario.assert_no_orphan_uploads()
