"""Helpers for export tests: real worker processes, an API client, downloads, CSV parsing."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.settings import Settings
from tests.support import wait_for

ROOT = Path(__file__).resolve().parent.parent
csv.field_size_limit(sys.maxsize)  # uneven_rows has cells of ~300 KB


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the SPILLWAY_* variables that reproduce ``settings``."""
    return {**os.environ, **settings.to_env()}


@dataclass
class WorkerPool:
    """Real ``python -m worker`` processes, each in its own process group."""

    settings: Settings
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: Path = ROOT / ".data" / "logs"

    def start(self, count: int) -> list[subprocess.Popen]:
        self.logs.mkdir(parents=True, exist_ok=True)
        started = []
        for _ in range(count):
            n = len(self.procs) + 1
            log = open(self.logs / f"test-worker-{self.settings.queue_prefix}-{n}.log", "ab")
            proc = subprocess.Popen([sys.executable, "-m", "worker", "--name", f"test-{os.getpid()}-{n}-{time.time_ns()}"],
                                    cwd=ROOT, env=settings_env(self.settings), stdout=log, stderr=log,
                                    start_new_session=True)
            self.procs.append(proc)
            started.append(proc)
        return started

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@dataclass
class ApiClient:
    """The Flask test client with an owner's key."""

    client: Any
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, **kwargs: Any):
        return self.client.post(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def export(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an async export; return its JSON."""
        response = self.post("/exports", json={**body, "delivery": "async"})
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.get_json()

    def wait(self, export_id: str, timeout: float = 300) -> dict[str, Any]:
        """Poll until the export is terminal; return its final JSON."""
        def terminal():
            body = self.get(f"/exports/{export_id}").get_json()
            return body if body["status"] not in ("queued", "running") else None

        return wait_for(terminal, timeout=timeout, interval=0.1, what=f"export {export_id} to finish")

    def run(self, body: dict[str, Any], timeout: float = 300) -> tuple[dict[str, Any], bytes]:
        """Run an async export to completion and download it through its presigned URL."""
        done = self.wait(self.export(body)["id"], timeout)
        assert done["status"] == "completed", done
        return done, download(done["download"]["url"])

    def inline(self, body: dict[str, Any]) -> bytes:
        response = self.post("/exports", json={**body, "delivery": "inline"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()


def download(url: str) -> bytes:
    """GET a presigned URL (no credentials)."""
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def parse_csv(data: bytes) -> list[list[str]]:
    """Parse CSV bytes (UTF-8, optional BOM) into rows of strings, header included."""
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    return list(csv.reader(io.StringIO(text, newline="")))
