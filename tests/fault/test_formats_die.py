"""A worker killed half way through a compressed export: the file is byte-identical to an
undisturbed run's, and nothing of it (upload, staged chunk objects) is left behind."""

from __future__ import annotations

import signal
import uuid

import pytest

from shared.storage import s3_client, staged_prefix
from tests.fault.test_workers_die import held_at_half_way
from tests.support.api import download
from tests.support.processes import signal_tree
from tests.support.scenarios import FULL, digest
from tests.support.state import chunk_row

pytestmark = pytest.mark.fault


def staged_objects(settings, export_id: str) -> list[str]:
    """The staged chunk objects S3 still holds for an export."""
    listing = s3_client(settings).list_objects_v2(
        Bucket=settings.s3_bucket, Prefix=staged_prefix(settings, uuid.UUID(export_id))
    )
    return [o["Key"] for o in listing.get("Contents", [])]


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
    assert staged_objects(scenario.settings, export["id"]) == []
    scenario.assert_no_orphan_uploads()
