"""Measuring while a benchmark runs: CPU by component, workers' peak RSS, HTTP load (wrk)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from shared.queue import chunk_job_id
from shared.settings import Settings

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int, with_children: bool) -> float:
    """CPU seconds of a process (and of its reaped children: exited horses, backends)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


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
            "postgres": sum(_cpu(p, True) for p in postgres),
            "workers": sum(_cpu(p, True) for p in self.stack.worker_pids()),
            "s3": sum(_cpu(p, True) for p in _pids_named(r"moto_server")),
            "api": sum(_cpu(p, True) for p in self.stack.api_pids()),
        }

    def stop(self, wall: float) -> dict[str, float]:
        """Cores used on average by each component (CPU seconds / wall seconds)."""
        end = self._sample()
        return {k: round((end[k] - self.start[k]) / wall, 2) for k in end}


def peak_rss_mb(settings: Settings, export_id: str, parts: int) -> float:
    """The largest peak RSS the export's chunk jobs reported (work horses, forked per job)."""
    redis = Redis.from_url(settings.redis_url)
    peaks = []
    for n in range(1, parts + 1):
        try:
            peaks.append(Job.fetch(chunk_job_id(export_id, n), connection=redis).meta.get("peak_rss_kb", 0))
        except NoSuchJobError:
            continue
    return round(max(peaks or [0]) / 1024, 1)


def wrk_polls(http, path: str, seconds: int = 10, connections: int = 32) -> dict[str, object]:
    """Requests/s and latency percentiles of GET ``path`` under wrk (2 threads)."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H",
                          f"Authorization: {http.headers['Authorization']}", http.base + path],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {p: m for p, m in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"connections": connections, "requests_per_s": rps, "latency": latency,
            "non_2xx": int(errors.group(1)) if errors else 0}
