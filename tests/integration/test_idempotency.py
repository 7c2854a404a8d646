"""Idempotent creation: concurrent identical requests with one Idempotency-Key make one export."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg

from api import create_app
from tests.support.api import ApiSession


def test_50_concurrent_identical_requests_make_one_export(settings, workers, keys_for):
    app = create_app(settings)
    key = keys_for("idem-owner")
    body = {"dataset": "products", "filters": {"id": {"lte": 20_000}}}
    idem = {"Idempotency-Key": f"order-{uuid.uuid4()}"}

    def post(_):
        return ApiSession(app.test_client(), key).post("/exports", json={**body, "delivery": "async"}, headers=idem)

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))
    assert {r.status_code for r in responses} == {202}
    ids = {r.get_json()["id"] for r in responses}
    assert len(ids) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 49
    with psycopg.connect(settings.state_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM exports WHERE owner = 'idem-owner'").fetchone()[0] == 1
    other = ApiSession(app.test_client(), key).post(
        "/exports", json={**body, "delivery": "async", "columns": ["id"]}, headers=idem
    )
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    # Another owner's use of the same key is unrelated.
    assert (
        ApiSession(app.test_client(), keys_for("idem-other"))
        .post("/exports", json={**body, "delivery": "async"}, headers=idem)
        .get_json()["id"]
        not in ids
    )
    app.extensions["spillway"].close()
