"""Per-process resources of a worker: settings, Redis, S3, and the worker's identity.

Invariant: nothing here is created before the work horse forks (all lazily, per process),
so no socket is ever shared between a worker and its horse.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from redis import Redis

from shared.settings import Settings, load_settings


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The worker's settings, read once per process."""
    return load_settings()


@lru_cache(maxsize=1)
def redis() -> Redis:
    """A Redis client for enqueuing follow-up jobs."""
    return Redis.from_url(settings().redis_url)


def worker_identity() -> str:
    """Who holds a lease: host and PID of the process running the job."""
    return f"{socket.gethostname()}:{os.getpid()}"
