"""Plain helpers for tests: test settings, free ports, waiting for conditions."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.settings import Settings

T = TypeVar("T")

TEST_REDIS_DB = 15  # a dedicated Redis database index, flushed by the tests
# One bucket per test session, so runs never see each other's objects.
TEST_BUCKET = f"spillway-test-{os.getpid()}-{int(time.time())}"


def with_dbname(url: str, dbname: str) -> str:
    """Return ``url`` with another database name."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def test_settings(base: Settings) -> Settings:
    """Derive the test settings: ``<db>_test`` database, Redis DB 15, a fresh bucket."""
    dbname = conninfo_to_dict(base.state_database_url).get("dbname", "spillway")
    test_db = with_dbname(base.state_database_url, f"{dbname}_test")
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{TEST_REDIS_DB}"
    return base.replace(state_database_url=test_db, source_database_url=test_db, redis_url=redis_url,
                        s3_bucket=TEST_BUCKET, queue_prefix="spillway-test")


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; return it, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
