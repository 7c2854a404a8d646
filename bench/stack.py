"""The benchmark's own stack: a database with 5,000,000 rows, an API under gunicorn and a
worker pool of a chosen size, on the local stack's PostgreSQL, Redis and S3.

Invariant: the benchmark never touches the demo's data or queues (its own database,
Redis DB 14, queue prefix ``bench`` and key prefix ``bench/exports/``), and stops what it starts.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

import psycopg

from deploy.services import StackError
from deploy.stack import wait_for_api
from shared.settings import Settings
from tests.support.databases import SEED, needs_seeding, prepare_database
from tests.support.processes import children, spawn, stop
from tests.support.settings import with_dbname

BENCH_ROWS = 5_000_000
BENCH_DB = "spillway_bench"
API_PORT = 8100


def bench_settings(base: Settings) -> Settings:
    """The local stack's servers with the benchmark's own database, Redis DB and prefixes."""
    url = with_dbname(base.state_database_url, BENCH_DB)
    return base.replace(
        state_database_url=url,
        source_database_url=url,
        redis_url=base.redis_url.rsplit("/", 1)[0] + "/14",
        queue_prefix="bench",
        s3_prefix="bench/exports/",
        api_port=API_PORT,
    )


def prepare_bench_database(base: Settings, settings: Settings) -> float:
    """Create, migrate and seed the benchmark database (5,000,000 rows) if needed; seconds spent."""
    from seeds.seed import seed_products

    started = time.monotonic()
    prepare_database(base.state_database_url, BENCH_DB)
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        if needs_seeding(conn, "products", BENCH_ROWS):
            print(f"seeding {BENCH_ROWS:,} rows for the benchmark (once) ...", flush=True)
            seed_products(conn, BENCH_ROWS, SEED)
        conn.execute("VACUUM ANALYZE products")
    return time.monotonic() - started


@dataclass
class BenchStack:
    """gunicorn + N workers + the reconciler, each in its own process group."""

    settings: Settings
    api: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    others: list[subprocess.Popen] = field(default_factory=list)

    def start_api(self) -> None:
        self.api = spawn(self.settings, "bench-api", "gunicorn", "-c", "deploy/gunicorn.conf.py", "api.wsgi:app")
        self.others.append(spawn(self.settings, "bench-reconciler", "worker.reconciler"))
        try:
            wait_for_api(self.settings)
        except StackError as exc:
            raise StackError(f"the benchmark API did not start ({exc}); see .data/logs/bench-api.log") from None

    def scale_workers(self, count: int) -> None:
        self.stop_workers()
        self.workers = [spawn(self.settings, f"bench-worker-{n}", "worker") for n in range(count)]
        time.sleep(1.0)  # workers import boto3/psycopg before taking jobs; not part of any figure

    def stop_workers(self) -> None:
        stop(self.workers)
        self.workers = []

    def stop(self) -> None:
        self.stop_workers()
        stop([p for p in [self.api, *self.others] if p])

    def api_pids(self) -> list[int]:
        return [self.api.pid, *children(self.api.pid)] if self.api else []

    def worker_pids(self) -> list[int]:
        pids = []
        for proc in self.workers:
            pids += [proc.pid, *children(proc.pid)]
        return pids


class Http:
    """A tiny JSON client of the benchmark API."""

    def __init__(self, key: str) -> None:
        self.base = f"http://127.0.0.1:{API_PORT}"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read(), dict(response.headers)
