"""Measuring while a benchmark runs: CPU by component and HTTP load (wrk)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from tests.support.processes import cpu_seconds


def _pids_named(pattern: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if re.search(pattern, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU seconds used by PostgreSQL, the workers, the S3 endpoint and the API over a span."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        postgres = _pids_named(r"^(/\S+/)?postgres( |$)|^postgres:")
        return {
            "postgres": sum(cpu_seconds(p, True) for p in postgres),
            "workers": sum(cpu_seconds(p, True) for p in self.stack.worker_pids()),
            "s3": sum(cpu_seconds(p, True) for p in _pids_named(r"moto_server")),
            "api": sum(cpu_seconds(p, True) for p in self.stack.api_pids()),
        }

    def stop(self, wall: float) -> dict[str, float]:
        """Cores used on average by each component (CPU seconds / wall seconds); the CPU
        seconds themselves are kept in :attr:`seconds`."""
        time.sleep(0.3)  # the last backends' and horses' CPU reaches their parents once they are reaped
        end = self._sample()
        self.seconds = {k: round(end[k] - self.start[k], 3) for k in end}
        return {k: round(self.seconds[k] / wall, 2) for k in end}


def wrk_polls(http, path: str, seconds: int = 10, connections: int = 32) -> dict[str, object]:
    """Requests/s and latency percentiles of GET ``path`` under wrk (2 threads)."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Authorization: {http.headers['Authorization']}",
            http.base + path,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {p: m for p, m in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "connections": connections,
        "requests_per_s": rps,
        "latency": latency,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }
