"""Connections the API holds: a small pool to the state database and a Redis client.

Both are created lazily on first use, so each gunicorn worker process opens its own after
the fork, and an app whose dependencies are down still starts (and reports it on /health).
"""

from __future__ import annotations

from functools import cached_property

from flask import Flask, current_app
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from redis import Redis

from api.ratelimits import RateLimits
from shared.db import process_label
from shared.settings import Settings


class Resources:
    """The API's lazily opened connections for one settings object."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def state_pool(self) -> ConnectionPool:
        """Pool of autocommit state-database connections (see :func:`shared.db.connect_state`)."""
        return ConnectionPool(
            self.settings.state_database_url,
            min_size=1,
            max_size=8,
            kwargs={
                "application_name": process_label("api"),
                "options": f"-c TimeZone=UTC -c statement_timeout={self.settings.api_statement_timeout_ms}",
                "row_factory": dict_row,
                "connect_timeout": 5,
                "autocommit": True,
            },
            timeout=10,
            open=True,
        )

    @cached_property
    def source_probe_pool(self) -> ConnectionPool:
        """One connection to the source database for /health, when it is another database."""
        timeout = self.settings.health_timeout_s
        return ConnectionPool(
            self.settings.source_database_url,
            min_size=1,
            max_size=1,
            kwargs={
                "application_name": process_label("health"),
                "connect_timeout": max(1, int(timeout)),
                "options": f"-c statement_timeout={int(timeout * 1000)}",
                "autocommit": True,
            },
            timeout=timeout,
            open=True,
        )

    @cached_property
    def redis(self) -> Redis:
        """Redis client for queues, cancel signals and counters."""
        return Redis.from_url(self.settings.redis_url, socket_connect_timeout=5, socket_timeout=10)

    @cached_property
    def rate_limits(self) -> RateLimits:
        """The per-key windows (api/ratelimits.py), on the API's Redis connections."""
        return RateLimits(self.settings, self.redis.connection_pool)

    @cached_property
    def probe_redis(self) -> Redis:
        """Redis client with the health timeouts (its connection is reused across probes)."""
        t = self.settings.health_timeout_s
        return Redis.from_url(self.settings.redis_url, socket_connect_timeout=t, socket_timeout=t)

    def close(self) -> None:
        """Close what was opened (tests call this)."""
        for pool in ("state_pool", "source_probe_pool"):
            if pool in self.__dict__:
                self.__dict__[pool].close()
        for client in ("redis", "probe_redis"):
            if client in self.__dict__:
                self.__dict__[client].close()


def init_app(app: Flask) -> None:
    app.extensions["spillway"] = Resources(app.config["SPILLWAY"])


def resources() -> Resources:
    """The current app's :class:`Resources`."""
    return current_app.extensions["spillway"]


def settings() -> Settings:
    """The current app's settings."""
    return current_app.config["SPILLWAY"]
