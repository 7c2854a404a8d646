"""Real worker processes for the tests: ``python -m worker`` on the settings a test gives."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field

from redis import Redis
from rq import Worker

from shared.settings import Settings
from tests.support.processes import spawn, stop
from tests.support.waiting import wait_for


@dataclass
class WorkerPool:
    """Real ``python -m worker`` processes, each in its own process group."""

    settings: Settings
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, count: int) -> list[subprocess.Popen]:
        """Start ``count`` more workers and wait until each has registered with RQ — past its
        start-up checks (the datasets file), ready for jobs; return them.

        Raises:
            AssertionError: a worker exited instead (its log says why).
        """
        started, names = [], []
        for _ in range(count):
            n = len(self.procs) + 1
            name = f"test-{os.getpid()}-{n}-{time.time_ns()}"
            log_name = f"test-worker-{self.settings.queue_prefix}-{n}"
            started.append(spawn(self.settings, log_name, "worker", "--name", name))
            names.append(name)
            self.procs.append(started[-1])
        redis = Redis.from_url(self.settings.redis_url)
        try:

            def ready() -> bool:
                exited = [p.args for p in started if p.poll() is not None]
                assert not exited, f"a worker exited at start: {exited} (see .data/logs/)"
                return {w.name for w in Worker.all(connection=redis)} >= set(names)

            wait_for(ready, timeout=60, what=f"{count} workers to register with RQ")
        finally:
            redis.close()
        return started

    def stop(self) -> None:
        """Stop every worker: SIGTERM (a warm shutdown), SIGKILL if one does not end in time."""
        stop(self.procs)
