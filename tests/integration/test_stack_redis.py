"""The Redis the local stack starts (through ``deploy.local_redis``, on a free port and a .data/ of
the test's own) refuses a client without its password, and hands its clients the URL with it."""

from __future__ import annotations

import os
import shutil
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError
from redis.retry import Retry

from deploy.datadir import read_pid
from deploy.local_redis import PASSWORD_FILE, STACK_ENV_FILE, client_url, ensure_redis
from shared.settings import Settings
from tests.support.waiting import free_port, wait_for

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@pytest.fixture
def data(tmp_path) -> Iterator[Path]:
    """A .data/ of the test's own; the redis-server started in it is stopped afterwards."""
    yield tmp_path
    pid = read_pid("redis", tmp_path / "run")
    if pid:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: read_pid("redis", tmp_path / "run") is None, timeout=10, what="redis to stop")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def refuses_without_password(port: int) -> bool:
    client = Redis(host="127.0.0.1", port=port, socket_timeout=3, retry=Retry(NoBackoff(), 0))  # no retry: fast
    try:
        client.ping()
    except AuthenticationError:
        return True
    finally:
        client.close()
    return False


def test_the_stacks_redis_requires_its_generated_password(data):
    port = free_port()
    url = ensure_redis(Settings(redis_url=f"redis://127.0.0.1:{port}/0"), data)
    password = (data / PASSWORD_FILE).read_text().strip()
    assert url == f"redis://:{password}@127.0.0.1:{port}/0"
    assert refuses_without_password(port)
    assert Redis.from_url(url).ping()
    pid = read_pid("redis", data / "run")
    assert pid and password not in Path(f"/proc/{pid}/cmdline").read_text()
    assert url in (data / STACK_ENV_FILE).read_text()
    for private in (data / PASSWORD_FILE, data / STACK_ENV_FILE, data / "logs" / "redis.log"):
        assert mode(private) == 0o600, private
    assert mode(data / "logs") == 0o700
    # up again: the running server is reused, and a client's URL without the password gains it
    assert ensure_redis(Settings(redis_url=f"redis://127.0.0.1:{port}/0"), data) == url
    assert client_url(f"redis://localhost:{port}/15", data) == f"redis://:{password}@localhost:{port}/15"


def test_a_password_in_the_configured_url_is_the_servers(data):
    port = free_port()
    url = f"redis://:chosen-by-me@127.0.0.1:{port}/0"
    assert ensure_redis(Settings(redis_url=url), data) == url
    assert not (data / PASSWORD_FILE).exists()
    assert refuses_without_password(port)
    assert Redis.from_url(url).ping()
