"""Limits at the API: read slots for inline exports, a time-bounded count, bodies that trickle,
and /health that opens no connection per call."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from rq.rate_limit import RateLimitRegistry

from api import create_app
from shared.db import process_label
from shared.queue import reads_limit
from shared.readslots import SLOT_PREFIX, release_read_slot, take_read_slot
from tests.support.api import ApiSession, parse_csv
from tests.support.servers import gunicorn_api, gunicorn_health

SMALL = {"dataset": "products", "filters": {"id": {"lte": 2000}}}


def _backends(settings, label: str) -> list[int]:
    with psycopg.connect(settings.state_database_url) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (label,))]


@pytest.fixture
def capped(settings, seeded, bucket, redis, keys_for):
    """Settings whose global read cap is 2, on a queue prefix no worker serves, and an owner's key."""
    s = settings.replace(max_concurrent_reads=2, inline_slot_wait_s=0.3, queue_prefix=f"cap-{uuid.uuid4().hex[:8]}")
    return s, keys_for("capped-owner")


def test_an_inline_export_holds_a_read_slot_while_it_streams(capped, redis):
    s, key = capped
    app = create_app(s)
    api = ApiSession(app.test_client(), key)
    try:
        response = api.post("/exports", json={**SMALL, "delivery": "inline"}, buffered=False)
        stream = response.response
        first = next(iter(stream))
        assert first.startswith(b"id,")
        assert len(_slots(redis, s)) == 1 and len(_backends(s, process_label("api:inline"))) == 1
        rest = b"".join(stream)
        response.close()
        assert len(parse_csv(first + rest)) == 2001  # the header and 2,000 rows
        assert _slots(redis, s) == [] and not _backends(s, process_label("api:inline"))
    finally:
        app.extensions["spillway"].close()


def test_busy_read_slots_send_inline_to_429_and_auto_to_async(capped, redis):
    s, key = capped
    app = create_app(s)
    api = ApiSession(app.test_client(), key)
    held = [take_read_slot(redis, s, 0, 60) for _ in range(s.max_concurrent_reads)]  # as running chunks hold them
    try:
        assert all(held)
        busy = api.post("/exports", json={**SMALL, "delivery": "inline"})
        assert busy.status_code == 429 and busy.headers["Retry-After"].isdigit()
        assert "SPILLWAY_MAX_CONCURRENT_READS" in busy.get_json()["error"]["message"]
        assert api.post("/exports", json=SMALL).status_code == 202  # auto goes async rather than wait
        release_read_slot(redis, s, held.pop())
        assert api.post("/exports", json={**SMALL, "delivery": "inline"}).status_code == 200
    finally:
        for slot in held:
            release_read_slot(redis, s, slot)
        app.extensions["spillway"].close()


def test_parallel_inline_exports_never_hold_more_reads_than_the_cap(capped):
    s, key = capped
    s = s.replace(inline_slot_wait_s=30)
    with gunicorn_api(s, "test-gunicorn-inline") as (base, _):
        peak = {"reads": 0}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak["reads"] = max(peak["reads"], len(_backends(s, process_label("api:inline"))))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                bodies = list(pool.map(lambda _: _post(base, key, {**SMALL, "delivery": "inline"}), range(8)))
        finally:
            done.set()
            sampler.join()
    assert [status for status, _ in bodies] == [200] * 8
    assert all(len(parse_csv(body)) == 2001 for _, body in bodies)
    assert 1 <= peak["reads"] <= s.max_concurrent_reads, peak


def _slots(redis, s) -> list[bytes]:
    allowed = RateLimitRegistry(key=reads_limit(s).key, connection=redis).allowed_key
    return [m for m in redis.zrange(allowed, 0, -1) if m.startswith(SLOT_PREFIX.encode())]


def _post(base: str, key: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{base}/exports",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_count_that_runs_out_of_time_goes_async_or_answers_400(settings, seeded, bucket, redis, keys_for):
    s = settings.replace(count_timeout_ms=1, queue_prefix=f"count-{uuid.uuid4().hex[:8]}")
    app = create_app(s)
    api = ApiSession(app.test_client(), keys_for("count-owner"))
    slow = {"dataset": "products", "filters": {"description": {"contains": "no such text anywhere"}}}
    try:
        assert api.post("/exports", json=slow).status_code == 202
        refused = api.post("/exports", json={**slow, "delivery": "inline"})
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "count_timeout"
        assert "SPILLWAY_COUNT_TIMEOUT_MS" in refused.get_json()["error"]["message"]
    finally:
        app.extensions["spillway"].close()


def test_health_reuses_its_connections(client, settings):
    assert client.get("/health").status_code == 200
    before = set(_backends(settings, process_label("api")))
    for _ in range(20):
        assert client.get("/health").status_code == 200
    assert set(_backends(settings, process_label("api"))) == before
    assert not _backends(settings, process_label("health"))


def _trickle(base: str, key: str, per_byte_s: float, total_s: float) -> tuple[bytes, float]:
    """POST a body one byte at a time; return what the server answered and when."""
    host, port = base.removeprefix("http://").split(":")
    body = b'{"dataset": "products"}' + b" " * 200
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /exports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (key.encode(), len(body))
        )
        sock.settimeout(per_byte_s)
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                answer = sock.recv(4096)  # the server speaks only once it has given up
                if answer:
                    return answer, time.monotonic() - started
            except TimeoutError:
                pass
            except OSError:
                break
            if time.monotonic() - started > total_s:
                break
        sock.settimeout(5)
        return sock.recv(4096), time.monotonic() - started


def test_a_body_trickled_byte_by_byte_is_cut_off(settings, db, bucket, redis, keys_for):
    s = settings.replace(body_timeout_s=1.0)
    with gunicorn_api(s, "test-gunicorn-trickle") as (base, _):
        answer, after = _trickle(base, keys_for("trickler"), per_byte_s=0.2, total_s=20)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
        assert after < 1.0 + 2.0, after  # the timeout and one byte's delay, with room for a loaded machine
        assert gunicorn_health(base)["http_status"] == 200  # the thread is free again
