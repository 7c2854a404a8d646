"""Rate limits per key and the queued-export quota per owner (api/ratelimits.py): 429 with
Retry-After and a message naming the limit, nothing created when refused, GET /limits showing
the use. Against the real Redis and PostgreSQL, with no worker: exports stay queued."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from api import create_app
from tests.support.api import ApiSession

SMALL = {"dataset": "products", "columns": ["id"], "filters": {"id": {"lte": 50}}}


@pytest.fixture
def limited(settings, db, bucket, redis, keys_for) -> Iterator:
    """An app with low limits and a fresh window namespace, and a maker of sessions for new owners."""
    app = create_app(
        settings.replace(
            queue_prefix=f"limits-{uuid.uuid4().hex[:8]}",
            exports_per_minute=5,
            max_queued_per_owner=3,
            inline_bytes_per_hour=2_000,
        )
    )
    made: list[ApiSession] = []

    def session(owner: str | None = None) -> ApiSession:
        made.append(ApiSession(app.test_client(), keys_for(owner or f"limits-{uuid.uuid4().hex[:8]}")))
        return made[-1]

    yield session
    for api in made:  # nothing a test created may wait for another test's workers
        for export in api.get("/exports?limit=100").get_json()["exports"]:
            if not export["finished"]:
                api.post(f"/exports/{export['id']}/cancel")
    app.extensions["spillway"].close()


def owned(settings, owner_key_session: ApiSession) -> int:
    return len(owner_key_session.get("/exports?limit=100").get_json()["exports"])


def limited_count(api: ApiSession) -> float:
    line = 'spillway_rate_limited_total{limit="exports_per_minute"} '
    text = api.client.get("/metrics").get_data(as_text=True)
    return next((float(x[len(line) :]) for x in text.splitlines() if x.startswith(line)), 0.0)


def test_a_burst_over_the_per_minute_limit_gets_429_with_retry_after(limited, settings):
    api, other = limited(), limited()
    refused_before = limited_count(api)
    answers = [api.post("/exports", json={**SMALL, "delivery": "async", "columns": ["nope"]}) for _ in range(5)]
    assert {a.status_code for a in answers} == {400}  # refused requests count too
    over = api.post("/exports", json={**SMALL, "delivery": "async"})
    assert over.status_code == 429
    error = over.get_json()["error"]
    assert error["code"] == "rate_limited" and error["limit"] == "exports_per_minute"
    assert "SPILLWAY_EXPORTS_PER_MINUTE" in error["message"] and "5" in error["message"]
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert owned(settings, api) == 0  # nothing was created
    assert limited_count(api) == refused_before + 1
    assert other.post("/exports", json={**SMALL, "delivery": "async"}).status_code == 202  # per key
    use = api.get("/limits").get_json()
    assert use["limits"]["exports_per_minute"]["limit"] == 5
    assert use["limits"]["exports_per_minute"]["used"] == 5
    assert 0 < use["limits"]["exports_per_minute"]["reset_in_s"] <= 60


def test_the_queued_export_quota_holds_under_concurrent_requests(limited, settings):
    """Ten parallel requests of one owner with a quota of 3: exactly 3 created, 7 refused."""
    owner = f"quota-{uuid.uuid4().hex[:8]}"
    keys = [limited(owner) for _ in range(5)]  # five keys of one owner (2 requests each) share its quota

    def post(n):
        return keys[n % 5].post("/exports", json={**SMALL, "delivery": "async", "filename": f"q{n}"})

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(post, range(10)))
    assert sorted(a.status_code for a in answers) == [202] * 3 + [429] * 7
    refused = next(a for a in answers if a.status_code == 429)
    error = refused.get_json()["error"]
    assert error["limit"] == "queued_exports" and "SPILLWAY_MAX_QUEUED_PER_OWNER" in error["message"]
    assert int(refused.headers["Retry-After"]) > 0
    with psycopg.connect(settings.state_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM exports WHERE owner = %s", (owner,)).fetchone()[0] == 3
    use = keys[0].get("/limits").get_json()
    assert use["owner"] == owner and use["limits"]["queued_exports"] == {"limit": 3, "used": 3}
    # a replay of an accepted request is answered, not refused
    replay_key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = next(a for a in answers if a.status_code == 202).get_json()
    keys[0].post(f"/exports/{first['id']}/cancel")  # room for one
    made = keys[0].post("/exports", json={**SMALL, "delivery": "async"}, headers=replay_key)
    assert made.status_code == 202
    again = keys[0].post("/exports", json={**SMALL, "delivery": "async"}, headers=replay_key)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == made.get_json()["id"]
    # another owner is not held back
    assert limited().post("/exports", json={**SMALL, "delivery": "async"}).status_code == 202


def test_inline_bytes_per_hour(limited):
    """Past its inline bytes, a key gets 429 for delivery inline and an async export for auto."""
    api = limited()
    first = api.post("/exports", json={**SMALL, "delivery": "inline"})
    assert first.status_code == 200
    size = len(first.get_data())
    assert size < 2_000  # under the limit before, counted after it was streamed
    second = api.post("/exports", json={**SMALL, "delivery": "inline", "columns": ["id", "name", "description"]})
    assert second.status_code == 200
    both = size + len(second.get_data())  # read to its end: charged once streamed
    assert api.get("/limits").get_json()["limits"]["inline_bytes_per_hour"]["used"] == both
    refused = api.post("/exports", json={**SMALL, "delivery": "inline"})
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["limit"] == "inline_bytes_per_hour" and error["field"] == "delivery"
    assert "SPILLWAY_INLINE_BYTES_PER_HOUR" in error["message"]
    assert int(refused.headers["Retry-After"]) <= 3600
    auto = api.post("/exports", json={**SMALL, "delivery": "auto"})
    assert auto.status_code == 202  # auto goes async instead


def test_limits_that_are_off_show_as_null(settings, db, bucket, redis, keys_for):
    app = create_app(settings.replace(exports_per_minute=0, inline_bytes_per_hour=0, max_queued_per_owner=0))
    body = ApiSession(app.test_client(), keys_for("limits-off")).get("/limits").get_json()
    assert body["limits"]["exports_per_minute"] is None
    assert body["limits"]["inline_bytes_per_hour"] is None
    assert body["limits"]["queued_exports"] is None
    app.extensions["spillway"].close()


def test_limits_need_a_key(client):
    assert client.get("/limits").status_code == 401
