"""Fault fixtures: reference exports from an undisturbed run, and a disposable stack per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api import create_app
from tests.support.api import ApiSession
from tests.support.scenarios import FULL, PART, Scenario


@pytest.fixture(scope="session")
def reference(settings, workers, keys) -> dict[str, bytes]:
    """The bytes of undisturbed exports of the requests the fault tests run."""
    app = create_app(settings)
    api = ApiSession(app.test_client(), keys["alice"])
    refs = {"full": api.run(FULL)[1], "part": api.run(PART)[1]}
    app.extensions["spillway"].close()
    return refs


@pytest.fixture
def scenario(settings, seeded, bucket, redis, keys_for, tmp_path, request) -> Iterator[Scenario]:
    """A fresh fault scenario; the test starts its workers."""
    s = Scenario(settings, tmp_path, keys_for, request.node.name)
    yield s
    s.close()
