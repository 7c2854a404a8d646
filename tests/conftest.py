"""Fixtures shared by all tests.

Unit tests use ``settings`` only. State-machine tests (``tests/state/``) use ``state_conn``
and the factories of :mod:`tests.support.factories`, with no worker process. Integration
and fault tests use real services: a PostgreSQL test database (``db``, ``seeded``), a real
Redis DB (``redis``), a fresh bucket on the S3 endpoint (``bucket``), real worker processes
(``workers``) and the API (``app``, ``client``, ``api``). ``make test`` starts the local
stack's dependencies first; these fixtures only create what belongs to the test run.
Helpers live in :mod:`tests.support`.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from redis import Redis

from api import create_app
from deploy.services import ensure_bucket
from shared.datasets import Dataset
from shared.datasets import load as load_datasets
from shared.settings import Settings, load_settings
from tests.support.api import ApiSession
from tests.support.databases import SEED, needs_seeding, prepare_database
from tests.support.s3 import remove_bucket
from tests.support.settings import test_settings
from tests.support.workers import WorkerPool

PRODUCT_ROWS = 1_000_000  # the demo's size: the big-export tests read all of it
UNEVEN_ROWS = 20_000
ORDERS_ROWS = 300_000


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """The environment's settings (the local stack by default)."""
    return load_settings()


@pytest.fixture(scope="session")
def settings(base_settings: Settings) -> Settings:
    """Settings pointing at the test database, Redis DB and bucket."""
    return test_settings(base_settings)


@pytest.fixture(scope="session")
def db(settings: Settings, base_settings: Settings) -> str:
    """Create (if needed) and migrate the test database, with no exports; return its URL."""
    prepare_database(base_settings.state_database_url, conninfo_to_dict(settings.state_database_url)["dbname"])
    return settings.state_database_url


@pytest.fixture(scope="session", autouse=True)
def registry(db: str, settings: Settings) -> dict[str, Dataset]:
    """The shipped datasets file checked against the test database and installed, as every
    Spillway process does when it starts (worker processes load it themselves)."""
    return load_datasets(settings)


@pytest.fixture
def state_conn(db: str) -> Iterator[psycopg.Connection]:
    """A connection to the test database (rows as dicts) whose work is rolled back after the test.

    The test runs inside one outer transaction that is always rolled back: the repositories'
    own ``with conn.transaction()`` blocks become savepoints in it. (Without it, such a block
    opened on an idle connection would commit, and leave rows behind for the other tests.)
    """
    with psycopg.connect(db, row_factory=dict_row) as conn, conn.transaction(force_rollback=True):
        yield conn


@pytest.fixture(scope="session")
def redis(settings: Settings) -> Iterator[Redis]:
    """The real Redis, on the dedicated test database index, flushed when the session starts.

    Not flushed between tests: the worker processes of the session are registered there.
    """
    client = Redis.from_url(settings.redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def bucket(settings: Settings) -> Iterator[str]:
    """A fresh bucket on the real S3 endpoint for this test session, removed afterwards."""
    ensure_bucket(settings)
    yield settings.s3_bucket
    remove_bucket(settings)


@pytest.fixture
def app(settings: Settings, db: str, bucket: str, redis: Redis):
    """The API app wired to the test database, Redis DB and bucket."""
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    application.extensions["spillway"].close()


@pytest.fixture
def client(app):
    """A test client of the API."""
    return app.test_client()


@pytest.fixture(scope="session")
def seeded(db: str) -> str:
    """The test database with products (1,000,000 rows), uneven_rows and shop.orders, seeded once.

    Reseeded only when the row counts differ, so a second ``make test`` starts quickly.
    """
    from seeds.seed import seed_orders, seed_products, seed_uneven

    with psycopg.connect(db, autocommit=True) as conn:
        if needs_seeding(conn, "products", PRODUCT_ROWS):
            seed_products(conn, PRODUCT_ROWS, SEED)
        if needs_seeding(conn, "uneven_rows", UNEVEN_ROWS):
            seed_uneven(conn, UNEVEN_ROWS, SEED)
        if needs_seeding(conn, "shop.orders", ORDERS_ROWS):
            seed_orders(conn, ORDERS_ROWS, SEED)
    return db


@pytest.fixture(scope="session")
def workers(settings: Settings, seeded: str, bucket: str, redis: Redis) -> Iterator[WorkerPool]:
    """Two real worker processes (``python -m worker``) on the test settings."""
    pool = WorkerPool(settings)
    pool.start(2)
    yield pool
    pool.stop()


@pytest.fixture
def api(app, workers, keys) -> ApiSession:
    """The API as alice (a test client with her key), with workers running."""
    return ApiSession(app.test_client(), keys["alice"])


@pytest.fixture(scope="session")
def keys_for(db: str):
    """Make an API key for any owner (``admin=True`` for an operator's key, ``attributes`` for
    scoped datasets)."""
    from shared.keys import create_key

    def make(owner: str, admin: bool = False, attributes: dict[str, str] | None = None) -> str:
        with psycopg.connect(db, autocommit=True) as conn:
            return create_key(conn, owner, admin, attributes)

    return make


@pytest.fixture(scope="session")
def keys(db: str) -> dict[str, str]:
    """API keys of two owners, alice and bob."""
    from shared.keys import create_key

    with psycopg.connect(db, autocommit=True) as conn:
        return {owner: create_key(conn, owner) for owner in ("alice", "bob")}
