"""The benchmark's own stack: a database with 5,000,000 rows, an API under gunicorn and a
worker pool of a chosen size, on the local stack's PostgreSQL, Redis and S3.

Invariant: the benchmark never touches the demo's data or queues (its own database,
Redis DB 14, queue prefix ``bench`` and key prefix ``bench/exports/``), and stops what it starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.migrate import ensure_database, migrate
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".data" / "logs"
BENCH_ROWS = 5_000_000
BENCH_DB = "spillway_bench"
API_PORT = 8100


def bench_settings(base: Settings) -> Settings:
    """The local stack's servers with the benchmark's own database, Redis DB and prefixes."""
    params = conninfo_to_dict(base.state_database_url)
    params["dbname"] = BENCH_DB
    url = make_conninfo("", **params)
    return base.replace(state_database_url=url, source_database_url=url,
                        redis_url=base.redis_url.rsplit("/", 1)[0] + "/14", queue_prefix="bench",
                        s3_prefix="bench/exports/", api_port=API_PORT)


def prepare_database(base: Settings, settings: Settings) -> float:
    """Create, migrate and seed the benchmark database (5,000,000 rows) if needed; seconds spent."""
    from seeds.seed import apply_schema, seed_products

    started = time.monotonic()
    ensure_database(base.state_database_url, BENCH_DB)
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("TRUNCATE exports, export_chunks")
        apply_schema(conn)
        if conn.execute("SELECT count(*) FROM products").fetchone()[0] != BENCH_ROWS:
            print(f"seeding {BENCH_ROWS:,} rows for the benchmark (once) ...", flush=True)
            seed_products(conn, BENCH_ROWS, 42)
        conn.execute("VACUUM ANALYZE products")
    return time.monotonic() - started


def env_for(settings: Settings) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **settings.to_env(),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@dataclass
class BenchStack:
    """gunicorn + N workers + the reconciler, each in its own process group."""

    settings: Settings
    api: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    others: list[subprocess.Popen] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"bench-{name}.log", "ab")
        return subprocess.Popen(argv, cwd=ROOT, env=env_for(self.settings), stdout=log, stderr=log,
                                start_new_session=True)

    def start_api(self) -> None:
        self.api = self._spawn("api", [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
                                       "api.wsgi:app"])
        self.others.append(self._spawn("reconciler", [sys.executable, "-m", "worker.reconciler"]))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}/health", timeout=5)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the benchmark API did not start; see .data/logs/bench-api.log")

    def scale_workers(self, count: int) -> None:
        self.stop_workers()
        self.workers = [self._spawn(f"worker-{n}", [sys.executable, "-m", "worker"]) for n in range(count)]
        time.sleep(1.0)  # workers import boto3/psycopg before taking jobs; not part of any figure

    def stop_workers(self) -> None:
        _stop(self.workers)
        self.workers = []

    def stop(self) -> None:
        self.stop_workers()
        _stop([p for p in [self.api, *self.others] if p])

    def api_pids(self) -> list[int]:
        return [self.api.pid, *_children(self.api.pid)] if self.api else []

    def worker_pids(self) -> list[int]:
        pids = []
        for proc in self.workers:
            pids += [proc.pid, *_children(proc.pid)]
        return pids


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


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
