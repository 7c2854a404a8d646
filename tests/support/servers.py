"""The API as a real server: gunicorn with the project's config, on a free port."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared.settings import Settings
from tests.support.processes import spawn, stop
from tests.support.waiting import free_port, wait_for


def _health(base: str) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
            return r.status, json.load(r)
    except OSError:
        return None


def gunicorn_health(base: str) -> dict[str, Any]:
    """``GET /health`` of a running server: its status and body."""
    answer = _health(base)
    assert answer is not None, f"{base} does not answer"
    return {**answer[1], "http_status": answer[0]}


@contextmanager
def gunicorn_api(settings: Settings, log_name: str = "test-gunicorn") -> Iterator[tuple[str, dict[str, Any]]]:
    """Run ``gunicorn -c deploy/gunicorn.conf.py api.wsgi:app``; yield its base URL and first /health."""
    port = free_port()
    proc = spawn(settings.replace(api_port=port), log_name, "gunicorn", "-c", "deploy/gunicorn.conf.py", "api.wsgi:app")
    base = f"http://127.0.0.1:{port}"
    try:
        status, body = wait_for(lambda: _health(base), timeout=30, what="gunicorn /health")
        yield base, {**body, "http_status": status}
    finally:
        stop([proc])
