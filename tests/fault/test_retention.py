"""Retention (expiry) and the janitor of orphan uploads, with real workers and a reconciler."""

from __future__ import annotations

import uuid

import pytest

from shared.storage import s3_client, staged_key
from tests.support.s3 import object_exists, uploads_for
from tests.support.scenarios import PART
from tests.support.waiting import wait_for

pytestmark = pytest.mark.fault


def test_completed_exports_expire(scenario):
    scenario.reconfigure(export_ttl_s=2)
    scenario.stack.start(1)
    done, _ = scenario.api.run(PART)
    key = f"{scenario.settings.s3_prefix}{done['id']}/{done['filename']}"
    expired = wait_for(
        lambda: (lambda b: b if b["status"] == "expired" else None)(scenario.api.status(done["id"])),
        timeout=30,
        what="the export to expire",
    )
    assert expired["download"] is None
    response = scenario.api.get(f"/exports/{done['id']}/download")
    assert response.status_code == 410
    assert not object_exists(scenario.settings, key)


def test_janitor_aborts_uploads_no_export_owns(scenario):
    client = s3_client(scenario.settings)
    orphan_key = f"{scenario.settings.s3_prefix}{uuid.uuid4()}/lost.csv"
    upload = client.create_multipart_upload(Bucket=scenario.settings.s3_bucket, Key=orphan_key)["UploadId"]
    scenario.stack.start(1)
    wait_for(
        lambda: upload not in uploads_for(scenario.settings, orphan_key),
        timeout=30,
        what="the janitor to abort the orphan upload",
    )


def test_janitor_deletes_staged_objects_of_ended_exports(scenario):
    """A staged chunk object whose export is gone (a superseded attempt's, written after its
    export ended) is deleted; one of a running export is kept."""
    client = s3_client(scenario.settings)
    lost = staged_key(scenario.settings, uuid.uuid4(), 11)
    client.put_object(Bucket=scenario.settings.s3_bucket, Key=lost, Body=b"\x1f\x8b")
    scenario.stack.start(1)
    export = scenario.api.export({"dataset": "products", "compression": "gzip"})
    wait_for(
        lambda: not object_exists(scenario.settings, lost), timeout=30, what="the janitor to delete the staged object"
    )
    done = scenario.api.wait(export["id"])
    assert done["status"] == "completed"  # its own staged objects were not taken from under it
