"""Real worker processes for the tests: ``python -m worker`` on the settings a test gives."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field

from shared.settings import Settings
from tests.support.processes import spawn, stop


@dataclass
class WorkerPool:
    """Real ``python -m worker`` processes, each in its own process group."""

    settings: Settings
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, count: int) -> list[subprocess.Popen]:
        """Start ``count`` more workers; return them."""
        started = []
        for _ in range(count):
            n = len(self.procs) + 1
            name = f"test-{os.getpid()}-{n}-{time.time_ns()}"
            log_name = f"test-worker-{self.settings.queue_prefix}-{n}"
            started.append(spawn(self.settings, log_name, "worker", "--name", name))
            self.procs.append(started[-1])
        return started

    def stop(self) -> None:
        """Stop every worker: SIGTERM (a warm shutdown), SIGKILL if one does not end in time."""
        stop(self.procs)
