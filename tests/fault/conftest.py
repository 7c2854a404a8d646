"""Fault fixtures: reference exports from an undisturbed run, and a disposable stack per test."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest

from api import create_app
from shared.storage import s3_client
from tests.exports_support import ApiClient
from tests.fault_support import FaultProxy, FaultStack, PrivateRedis
from tests.support import wait_for

FULL = {"dataset": "products"}
PART = {"dataset": "products", "columns": ["id", "name", "price", "created_at"], "filters": {"id": {"lte": 300_000}}}


@pytest.fixture(scope="session")
def reference(settings, workers, keys) -> dict[str, bytes]:
    """The bytes of undisturbed exports of the requests the fault tests run."""
    app = create_app(settings)
    api = ApiClient(app.test_client(), keys["alice"])
    refs = {"full": api.run(FULL)[1], "part": api.run(PART)[1]}
    app.extensions["spillway"].close()
    return refs


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Scenario:
    """A private Redis, an optional fault proxy in front of S3, workers, a reconciler, an API."""

    def __init__(self, settings, tmp_path, keys_for, name: str) -> None:
        self.redis_server = PrivateRedis(tmp_path)
        self.redis_server.start()
        self.proxy = FaultProxy(settings.s3_endpoint_url)
        self.settings = settings.replace(
            redis_url=self.redis_server.url, queue_prefix=f"fault-{uuid.uuid4().hex[:8]}",
            s3_endpoint_url=self.proxy.url, s3_public_endpoint_url=settings.s3_endpoint_url,
            lease_s=4, reconcile_interval_s=0.5, retry_delays_s="1,1,2", janitor_grace_s=3)
        self.stack = FaultStack(self.settings)
        self.app = create_app(self.settings)
        self.api = ApiClient(self.app.test_client(), keys_for(f"fault-{name[:30]}"))

    def close(self) -> None:
        for proc in self.stack.workers.procs:
            try:
                import os
                import signal

                os.killpg(proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stack.stop()
        self.app.extensions["spillway"].close()
        self.proxy.close()
        self.redis_server.kill()

    def orphan_uploads(self) -> list[str]:
        """Uploads S3 lists that belong to no running export."""
        import psycopg

        with psycopg.connect(self.settings.state_database_url) as conn:
            live = {r[0] for r in conn.execute("SELECT upload_id FROM exports WHERE status = 'running'")}
        listing = s3_client(self.settings).list_multipart_uploads(Bucket=self.settings.s3_bucket,
                                                                   Prefix=self.settings.s3_prefix)
        return [u["UploadId"] for u in listing.get("Uploads", []) if u["UploadId"] not in live]

    def assert_no_orphan_uploads(self) -> None:
        wait_for(lambda: not self.orphan_uploads(), timeout=30, what="the janitor to abort orphan uploads")


@pytest.fixture
def scenario(settings, seeded, bucket, redis, keys_for, tmp_path, request) -> Iterator[Scenario]:
    """A fresh fault scenario; the test starts its workers."""
    s = Scenario(settings, tmp_path, keys_for, request.node.name)
    yield s
    s.close()
