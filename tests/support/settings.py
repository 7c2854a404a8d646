"""The settings tests run with: their own database, Redis database index, bucket and queues.

Invariant: a test session never touches the data, queues or bucket of the stack it runs
against; everything it uses is derived here from that stack's settings.
"""

from __future__ import annotations

import os
import time

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.settings import Settings

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
    return base.replace(
        state_database_url=test_db,
        source_database_url=test_db,
        redis_url=redis_url,
        s3_bucket=TEST_BUCKET,
        queue_prefix="spillway-test",
        # 8 MiB parts (the default is 16): the tests' tables (300,000 orders, 1,000,000 products)
        # then make enough parts for the tests of cutting, windows and faults in the middle.
        part_min_bytes=8 * 1024 * 1024,
        # On, so every test goes through them, but far above what any test sends: the limits'
        # own tests (tests/integration/test_rate_limits.py) set them low.
        exports_per_minute=100_000,
        inline_bytes_per_hour=10**12,
        max_queued_per_owner=10_000,
    )
