"""A worker container's liveness probe: ``python -m worker.alive [--max-age SECONDS]``.

Exits 0 when an RQ worker of this host (the container's hostname) serves Spillway's chunk
queue and beat recently, 1 otherwise, with one line saying which. RQ's worker beats every few
seconds while a job runs (``job_monitoring_interval``) but only once per dequeue wait while idle
(``worker_ttl`` minus 15 s: 405 s by default), so the default age allowed is RQ's 420 s plus a
minute. A stopped or wedged worker (its heartbeat stale, its key expired) fails the probe and
the orchestrator restarts the container; a dependency that is down does not (a restart would
not cure it).
"""

from __future__ import annotations

import argparse
import socket
import sys
from datetime import UTC, datetime

from redis import Redis
from rq import Queue, Worker

from shared.settings import Settings, load_settings

DEFAULT_MAX_AGE_S = 480.0


def check(settings: Settings, hostname: str, max_age_s: float = DEFAULT_MAX_AGE_S) -> tuple[bool, str]:
    """Whether a worker of ``hostname`` serving the chunk queue beat within ``max_age_s``, and why."""
    connection = Redis.from_url(settings.redis_url, socket_timeout=5)
    queue = Queue(settings.queue_chunks, connection=connection)
    mine = [w for w in Worker.all(connection=connection, queue=queue) if w.hostname == hostname]
    if not mine:
        return False, f"no RQ worker of host {hostname!r} serves {settings.queue_chunks!r}"
    now = datetime.now(UTC)
    ages = {w.name: (now - w.last_heartbeat).total_seconds() for w in mine if w.last_heartbeat is not None}
    fresh = {name: age for name, age in ages.items() if age <= max_age_s}
    if not fresh:
        return False, f"worker(s) of {hostname!r} last beat {min(ages.values(), default=float('inf')):.0f}s ago"
    name, age = min(fresh.items(), key=lambda item: item[1])
    return True, f"worker {name} beat {age:.1f}s ago"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 when this host's Spillway worker is alive.")
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_S, metavar="SECONDS")
    args = parser.parse_args(argv)
    try:
        alive, why = check(load_settings(), socket.gethostname(), args.max_age)
    except Exception as exc:  # noqa: BLE001 - a probe answers, whatever went wrong
        alive, why = False, f"{type(exc).__name__}: {exc}"
    sys.stdout.write(("alive: " if alive else "not alive: ") + why + "\n")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
