"""A redis-server of a test's own, so the test may stop, kill or restart it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from redis import Redis

from tests.support.waiting import free_port, wait_for


class PrivateRedis:
    """A redis-server on a free port, without persistence: a restart starts it empty."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (on the same port each time) and wait until it answers."""
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url)
        wait_for(lambda: _pings(client), what="private redis to answer")
        client.close()

    def stop(self) -> None:
        """SIGTERM: the server shuts down as it would when an operator stops it."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: the server is gone at once."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart_empty(self) -> None:
        """SIGKILL and start again: everything in Redis is gone."""
        self.kill()
        self.start()


def _pings(client: Redis) -> bool:
    """Whether the Redis server behind ``client`` answers PING."""
    try:
        return bool(client.ping())
    except Exception:
        return False
