"""Fault scenarios: a disposable stack of real processes wired to a private Redis and to a
fault-injecting S3 proxy, and the requests the fault tests run against it.

Invariant: a scenario shares only the test database and bucket with the rest of the session;
its Redis, queues, workers and reconciler are its own and are gone after :meth:`Scenario.close`.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from api import create_app
from shared.settings import Settings
from tests.support.api import ApiSession
from tests.support.processes import signal_groups, spawn, stop
from tests.support.redis_server import PrivateRedis
from tests.support.s3 import FaultProxy, uploads
from tests.support.waiting import wait_for
from tests.support.workers import WorkerPool

FULL = {"dataset": "products"}
PART = {"dataset": "products", "columns": ["id", "name", "price", "created_at"], "filters": {"id": {"lte": 300_000}}}


def digest(data: bytes) -> str:
    """The SHA-256 of an export's bytes: equal digests, identical files."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class FaultStack:
    """Workers and a reconciler on the given settings, each a real process."""

    settings: Settings
    workers: WorkerPool = field(init=False)
    reconciler: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.workers = WorkerPool(self.settings)

    def start(self, workers: int) -> None:
        """Start ``workers`` workers and one reconciler."""
        self.workers.start(workers)
        self.reconciler = spawn(self.settings, "test-reconciler", "worker.reconciler")

    def stop(self) -> None:
        """Stop the reconciler, then the workers."""
        stop([self.reconciler] if self.reconciler else [])
        self.workers.stop()


class Scenario:
    """A private Redis, a fault proxy in front of S3, workers, a reconciler, an API."""

    def __init__(self, settings: Settings, tmp_path: Path, keys_for: Callable[[str], str], name: str) -> None:
        self.redis_server = PrivateRedis(tmp_path)
        self.redis_server.start()
        self.proxy = FaultProxy(settings.s3_endpoint_url)
        self.settings = settings.replace(
            redis_url=self.redis_server.url,
            queue_prefix=f"fault-{uuid.uuid4().hex[:8]}",
            s3_endpoint_url=self.proxy.url,
            s3_public_endpoint_url=settings.s3_endpoint_url,
            lease_s=4,
            reconcile_interval_s=0.5,
            retry_delays_s="1,1,2",
            janitor_grace_s=3,
        )
        self.stack = FaultStack(self.settings)
        self.app = create_app(self.settings)
        self.api = ApiSession(self.app.test_client(), keys_for(f"fault-{name[:30]}"))

    def reconfigure(self, **changes: object) -> None:
        """Change the settings of the workers and the reconciler, before they start (the API keeps its own)."""
        self.settings = self.stack.settings = self.stack.workers.settings = self.settings.replace(**changes)

    def close(self) -> None:
        """Wake frozen workers, stop every process, close the API, the proxy and Redis."""
        signal_groups([proc.pid for proc in self.stack.workers.procs], signal.SIGCONT)
        self.stack.stop()
        self.app.extensions["spillway"].close()
        self.proxy.close()
        self.redis_server.kill()

    def orphan_uploads(self) -> list[str]:
        """Uploads S3 lists that belong to no running export."""
        with psycopg.connect(self.settings.state_database_url) as conn:
            live = {r[0] for r in conn.execute("SELECT upload_id FROM exports WHERE status = 'running'")}
        return [u["UploadId"] for u in uploads(self.settings, self.settings.s3_prefix) if u["UploadId"] not in live]

    def assert_no_orphan_uploads(self) -> None:
        wait_for(lambda: not self.orphan_uploads(), timeout=30, what="the janitor to abort orphan uploads")
