"""GET /health reports each dependency; a stopped one makes it 503 and is named."""

from __future__ import annotations

import pytest

from api import create_app
from tests.support.redis_server import PrivateRedis
from tests.support.servers import gunicorn_api
from tests.support.waiting import free_port


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
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def test_health_names_redis_when_it_stops(settings, db, bucket, private_redis):
    app = create_app(settings.replace(redis_url=private_redis.url, health_timeout_s=1.0))
    client = app.test_client()
    assert client.get("/health").status_code == 200

    private_redis.stop()
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
        "postgres": {
            "state_database_url": f"postgresql://spillway:spillway@127.0.0.1:{port}/spillway",
            "source_database_url": f"postgresql://spillway:spillway@127.0.0.1:{port}/spillway",
        },
        "s3": {"s3_endpoint_url": f"http://127.0.0.1:{port}"},
    }[dependency]
    app = create_app(settings.replace(health_timeout_s=1.0, **broken))
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["down"] == [dependency]


def test_health_under_gunicorn(settings, db, bucket, redis):
    """The real server process (gunicorn with our config) answers /health with 200."""
    with gunicorn_api(settings) as (_, health):
        assert health["http_status"] == 200 and health["down"] == []
