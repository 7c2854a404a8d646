"""Project processes (workers, reconciler, gunicorn) started for tests and the benchmark,
and what /proc says about them.

Invariant: every process started here runs in a process group of its own (its children
too, unless they make their own), with the ``SPILLWAY_*`` variables of the settings it was
given, and logs to ``.data/logs/``; :func:`stop` ends the whole group, SIGKILL after a grace
period if SIGTERM was not enough.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from deploy.datadir import open_private, private_dir
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".data" / "logs"
STOP_GRACE_S = 20  # a worker finishes or hands back its chunk well within this after SIGTERM
TICK = os.sysconf("SC_CLK_TCK")


def env_for(settings: Settings) -> dict[str, str]:
    """This process's environment with the ``SPILLWAY_*`` variables that reproduce ``settings``,
    unbuffered output, and this interpreter's scripts first on ``PATH``."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        **settings.to_env(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def spawn(settings: Settings, log_name: str, module: str, *args: str) -> subprocess.Popen:
    """Run ``python -m module args`` from the repository root in a new process group.

    Args:
        settings: passed to the process as ``SPILLWAY_*`` variables.
        log_name: its output is appended to ``.data/logs/<log_name>.log``.
        module: the module to run (``worker``, ``worker.reconciler``, ``gunicorn``).
    """
    with open_private(private_dir(LOGS) / f"{log_name}.log") as log:  # logs may hold secrets: 0600
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env_for(settings),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def stop(procs: Iterable[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group of each running process; SIGKILL those still there after ``grace_s``."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            signal_groups([proc.pid], signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            signal_groups([proc.pid], signal.SIGKILL)
            proc.wait()


def signal_groups(pids: Iterable[int], sig: signal.Signals) -> None:
    """Send ``sig`` to the process group of each pid, or, once a pid is gone, to the group it led.

    Processes from :func:`spawn` lead their groups, so their horses are reached even after
    the worker itself died; groups with no process left are skipped.
    """
    for pid in pids:
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            group = pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)


def signal_tree(pid: int, sig: signal.Signals) -> list[int]:
    """Send ``sig`` to a worker's process group and to its horses' groups; return the horses."""
    horses = children(pid)
    signal_groups([pid, *horses], sig)
    return horses


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int, with_children: bool) -> float:
    """CPU seconds of a process (and of its reaped children: exited horses, backends); 0 when gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size of a live process (VmHWM), in MB; None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
