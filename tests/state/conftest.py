"""Fixtures of the state-machine tests: a rolled-back connection and queues nobody serves.

These tests call the repositories, the lifecycle and the reconciler directly against the real
PostgreSQL and Redis, with rows made by ``tests.support.factories``; no worker process runs
their jobs (each test enqueues under a queue prefix of its own), so they take milliseconds.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from shared.settings import Settings


@pytest.fixture(autouse=True)
def no_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every state write is sent as whole statements, never as a pipeline (``executemany``).

    PostgreSQL ends a paused process's open transaction after
    ``idle_in_transaction_session_timeout`` (shared/db.py), but only once a Sync has been
    received: the statements of a pipeline hold their locks until its Sync. A worker paused
    (SIGSTOP, a frozen VM, swap) in the middle of one would hold the export's row, and a
    cancel of the export would wait on it for as long as the pause lasts.
    """

    def refused(self, *args, **kwargs):
        raise AssertionError("a state write was sent as a pipeline (executemany?): a paused process holds its locks")

    monkeypatch.setattr(psycopg.Connection, "pipeline", refused)
    monkeypatch.setattr(psycopg.Connection, "_pipeline_nolock", refused)  # what executemany enters


@pytest.fixture
def quiet(settings: Settings, redis) -> Settings:
    """The test settings with a queue prefix of this test's own: what it enqueues stays queued."""
    return settings.replace(queue_prefix=f"state-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def owner() -> str:
    """An owner no other test uses, so admission counts only this test's exports."""
    return f"owner-{uuid.uuid4().hex[:10]}"
