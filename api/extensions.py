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
                "options": "-c TimeZone=UTC",
                "row_factory": dict_row,
                "connect_timeout": 5,
                "autocommit": True,
            },
            timeout=10,
            open=True,
        )

    @cached_property
    def redis(self) -> Redis:
        """Redis client for queues, cancel signals and counters."""
        return Redis.from_url(self.settings.redis_url, socket_connect_timeout=5, socket_timeout=10)

    def close(self) -> None:
        """Close what was opened (tests call this)."""
        if "state_pool" in self.__dict__:
            self.state_pool.close()
        if "redis" in self.__dict__:
            self.redis.close()


def init_app(app: Flask) -> None:
    app.extensions["spillway"] = Resources(app.config["SPILLWAY"])


def resources() -> Resources:
    """The current app's :class:`Resources`."""
    return current_app.extensions["spillway"]


def settings() -> Settings:
    """The current app's settings."""
    return current_app.config["SPILLWAY"]
