"""Fixtures of the state-machine tests: a rolled-back connection and queues nobody serves.

These tests call the repositories, the lifecycle and the reconciler directly against the real
PostgreSQL and Redis, with rows made by ``tests.support.factories``; no worker process runs
their jobs (each test enqueues under a queue prefix of its own), so they take milliseconds.
"""

from __future__ import annotations

import uuid

import pytest

from shared.settings import Settings


@pytest.fixture
def quiet(settings: Settings, redis) -> Settings:
    """The test settings with a queue prefix of this test's own: what it enqueues stays queued."""
    return settings.replace(queue_prefix=f"state-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def owner() -> str:
    """An owner no other test uses, so admission counts only this test's exports."""
    return f"owner-{uuid.uuid4().hex[:10]}"
