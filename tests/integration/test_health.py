"""GET /health reports each dependency; a stopped one makes it 503 and is named."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import json

import pytest

from api import create_app
from tests.support import free_port, wait_for


def test_health_all_dependencies_up(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["dependencies"]) == {"postgres", "redis", "s3"}
    for result in body["dependencies"].values():
        assert result["ok"] is True
        assert result["latency_ms"] >= 0


@pytest.fixture
def private_redis(tmp_path):
    """A real redis-server of our own on a free port, which the test may stop."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    from redis import Redis

    wait_for(lambda: _pings(Redis(port=port)), what="private redis")
    yield proc, port
    proc.kill()
    proc.wait()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def test_health_names_redis_when_it_stops(settings, db, bucket, private_redis):
    proc, port = private_redis
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{port}/0", health_timeout_s=1.0))
    client = app.test_client()
    assert client.get("/health").status_code == 200

    proc.terminate()
    proc.wait(timeout=10)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["down"] == ["redis"]
    assert body["dependencies"]["redis"]["ok"] is False
    assert body["dependencies"]["postgres"]["ok"] is True and body["dependencies"]["s3"]["ok"] is True


@pytest.mark.parametrize("dependency", ["postgres", "s3"])
def test_health_names_each_unreachable_dependency(settings, db, bucket, dependency):
    port = free_port()
    broken = {
        "postgres": {"state_database_url": f"postgresql://spillway:spillway@127.0.0.1:{port}/spillway",
                     "source_database_url": f"postgresql://spillway:spillway@127.0.0.1:{port}/spillway"},
        "s3": {"s3_endpoint_url": f"http://127.0.0.1:{port}"},
    }[dependency]
    app = create_app(settings.replace(health_timeout_s=1.0, **broken))
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["down"] == [dependency]


def test_health_under_gunicorn(settings, db, bucket, redis):
    """The real server process (gunicorn with our config) answers /health with 200."""
    port = free_port()
    env = {"SPILLWAY_STATE_DATABASE_URL": settings.state_database_url,
           "SPILLWAY_SOURCE_DATABASE_URL": settings.source_database_url,
           "SPILLWAY_REDIS_URL": settings.redis_url, "SPILLWAY_S3_BUCKET": settings.s3_bucket,
           "SPILLWAY_API_PORT": str(port)}
    import os

    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "api.wsgi:app"],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answer():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    return r.status, json.load(r)
            except OSError:
                return None

        status, body = wait_for(answer, timeout=30, what="gunicorn /health")
        assert status == 200 and body["down"] == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)
