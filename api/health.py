"""Health: ``GET /health/live`` (the process answers: a liveness probe, no dependency asked),
``GET /health/ready`` and ``GET /health`` (each dependency with its latency; 200 when all are
up, 503 naming the ones down: a readiness probe)."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Blueprint, jsonify
from psycopg_pool import ConnectionPool
from redis import Redis

from api.extensions import resources, settings
from shared.settings import Settings
from shared.storage import probe_s3_client

bp = Blueprint("health", __name__)


def _check_pool(pool: ConnectionPool, timeout: float) -> None:
    with pool.connection(timeout=timeout) as conn:
        conn.execute("SELECT 1")


def _check_redis(redis: Redis) -> None:
    redis.ping()


def _check_s3(s: Settings) -> None:
    probe_s3_client(s).head_bucket(Bucket=s.s3_bucket)


def checks(s: Settings) -> dict[str, Callable[[], None]]:
    """The dependency probes; the source database is listed apart when it is another one."""
    res = resources()
    probes: dict[str, Callable[[], None]] = {
        "postgres": lambda: _check_pool(res.state_pool, s.health_timeout_s),
    }
    if s.source_database_url != s.state_database_url:
        probes["source_postgres"] = lambda: _check_pool(res.source_probe_pool, s.health_timeout_s)
    probes["redis"] = lambda: _check_redis(res.probe_redis)
    probes["s3"] = lambda: _check_s3(s)
    return probes


@bp.get("/health/live")
def live():
    """The process answers requests; nothing else is asked (a restart would not cure a
    dependency that is down, so liveness does not depend on them)."""
    return jsonify({"status": "ok"})


@bp.get("/health")
@bp.get("/health/ready")
def health():
    """Probe every dependency; name the ones that are down."""
    results: dict[str, dict[str, object]] = {}
    for name, probe in checks(settings()).items():
        started = time.perf_counter()
        try:
            probe()
            results[name] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
        except Exception as exc:  # a probe's failure is the answer, whatever its type
            results[name] = {
                "ok": False,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "error": f"{type(exc).__name__}: {exc}"[:300],
            }
    down = [name for name, r in results.items() if not r["ok"]]
    body = {"status": "ok" if not down else "unavailable", "down": down, "dependencies": results}
    return jsonify(body), (200 if not down else 503)
