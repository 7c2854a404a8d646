"""Fixtures shared by all tests: test settings and fakeredis for fast unit tests.

Integration fixtures (real Postgres, Redis, S3, workers) live in tests/integration/conftest.py.
"""

from __future__ import annotations

import fakeredis
import pytest

from shared.settings import Settings, load_settings
from tests.support import test_settings


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """The environment's settings (the local stack by default)."""
    return load_settings()


@pytest.fixture(scope="session")
def settings(base_settings: Settings) -> Settings:
    """Settings pointing at the test database, Redis DB and bucket."""
    return test_settings(base_settings)


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    """An in-memory Redis for unit tests."""
    return fakeredis.FakeRedis()
