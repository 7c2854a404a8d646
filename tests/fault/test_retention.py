"""Idempotent creation, retention (expiry) and the janitor of orphan uploads."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from botocore.exceptions import ClientError

from api import create_app
from shared.storage import s3_client
from tests.exports_support import ApiClient
from tests.fault.conftest import PART
from tests.support import wait_for


def test_50_concurrent_identical_requests_make_one_export(settings, workers, keys_for):
    app = create_app(settings)
    key = keys_for("idem-owner")
    body = {"dataset": "products", "filters": {"id": {"lte": 20_000}}}
    idem = {"Idempotency-Key": f"order-{uuid.uuid4()}"}

    def post(_):
        return ApiClient(app.test_client(), key).post("/exports", json={**body, "delivery": "async"}, headers=idem)

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))
    assert {r.status_code for r in responses} == {202}
    ids = {r.get_json()["id"] for r in responses}
    assert len(ids) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 49
    with psycopg.connect(settings.state_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM exports WHERE owner = 'idem-owner'").fetchone()[0] == 1
    other = ApiClient(app.test_client(), key).post(
        "/exports", json={**body, "delivery": "async", "columns": ["id"]}, headers=idem)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    # Another owner's use of the same key is unrelated.
    assert ApiClient(app.test_client(), keys_for("idem-other")).post(
        "/exports", json={**body, "delivery": "async"}, headers=idem).get_json()["id"] not in ids
    app.extensions["spillway"].close()


def test_completed_exports_expire(scenario):
    scenario.settings = scenario.settings.replace(export_ttl_s=2)
    scenario.stack.settings = scenario.stack.workers.settings = scenario.settings
    scenario.stack.start(1)
    done, _ = scenario.api.run(PART)
    key = f"{scenario.settings.s3_prefix}{done['id']}/{done['filename']}"
    expired = wait_for(lambda: (lambda b: b if b["status"] == "expired" else None)(
        scenario.api.get(f"/exports/{done['id']}").get_json()), timeout=30, what="the export to expire")
    assert expired["download"] is None
    response = scenario.api.get(f"/exports/{done['id']}/download")
    assert response.status_code == 410
    with pytest.raises(ClientError):
        s3_client(scenario.settings).head_object(Bucket=scenario.settings.s3_bucket, Key=key)


def test_janitor_aborts_uploads_no_export_owns(scenario):
    client = s3_client(scenario.settings)
    orphan_key = f"{scenario.settings.s3_prefix}{uuid.uuid4()}/lost.csv"
    upload = client.create_multipart_upload(Bucket=scenario.settings.s3_bucket, Key=orphan_key)["UploadId"]
    scenario.stack.start(1)

    def gone():
        listing = client.list_multipart_uploads(Bucket=scenario.settings.s3_bucket, Prefix=orphan_key)
        return upload not in [u["UploadId"] for u in listing.get("Uploads", [])]

    wait_for(gone, timeout=30, what="the janitor to abort the orphan upload")
