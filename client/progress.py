"""The progress line: what it says (pure formatting) and when it is written.

Invariant: progress goes to one stream (stderr) and never to stdout, so stdout stays free
for results. On a terminal the line is redrawn in place with ``\\r``; anywhere else (a log,
a CI job) a full line is written at most every few seconds, plus the final one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

BAR_WIDTH = 24
LOG_INTERVAL_S = 5.0  # without a terminal, one line every this many seconds keeps logs readable


def format_bytes(count: float) -> str:
    """``1234567`` → ``1.2 MB`` (decimal units, as in MB/s)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``75.2`` → ``1m15s``; under a minute, tenths of a second: ``4.3s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = int(width * min(max(percent, 0.0), 100.0) / 100)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def format_export_progress(export: Mapping[str, Any], elapsed: float) -> str:
    """One line for an export's JSON: status, bar, percent, rows, parts, elapsed time.

    Example: ``running [##########--------------]  42.0%  420,000/1,000,000 rows  parts 5/12  3.1s``.
    """
    status = export.get("status", "?")
    progress = export.get("progress") or {}
    bar = _bar(float(progress.get("percent") or 0.0))
    return f"{status} {bar} {format_figures(export)}  {format_duration(elapsed)}"


def format_figures(export: Mapping[str, Any]) -> str:
    """Percent, rows done of total and parts done of total, or what the export waits for."""
    progress = export.get("progress") or {}
    total = progress.get("total_rows")
    done = progress.get("rows_done") or 0
    if total is None:  # queued, or running while its plan is streamed (chunks run as they are cut)
        if export.get("status") == "queued":
            return " waiting for a worker"
        return f" planning; {done:,} rows so far  parts {progress.get('parts_done') or 0}" if done else " planning"
    percent = float(progress.get("percent") or 0.0)
    parts = f"parts {progress.get('parts_done') or 0}/{progress.get('parts_total') or 0}"
    return f"{percent:5.1f}%  {done:,}/{total:,} rows  {parts}"


def format_download_progress(done: int, total: int | None, elapsed: float) -> str:
    """One line for a download: bar and percent when the size is known, bytes, rate, time."""
    rate = f"{format_bytes(done / elapsed)}/s" if elapsed > 0 else "-"
    if total:
        percent = 100.0 * done / total
        return (
            f"download {_bar(percent)} {percent:5.1f}%  {format_bytes(done)}/{format_bytes(total)}  "
            f"{rate}  {format_duration(elapsed)}"
        )
    return f"download {format_bytes(done)}  {rate}  {format_duration(elapsed)}"


class ProgressPrinter:
    """Writes progress lines to a stream: redrawn in place on a terminal, throttled elsewhere.

    Args:
        stream: where to write (stderr by default).
        interactive: redraw with ``\\r``; by default, whether the stream is a terminal.
        interval: seconds between lines when not interactive.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.interval = interval
        self.clock = clock
        self._drawn = 0  # width of the line currently on screen (interactive)
        self._last_logged: float | None = None
        self._pending: str | None = None  # the newest line not yet logged (non-interactive)

    def update(self, line: str) -> None:
        """Show ``line`` as the current progress."""
        if self.interactive:
            self.stream.write("\r" + line.ljust(self._drawn))
            self._drawn = len(line)
            self.stream.flush()
            return
        now = self.clock()
        if self._last_logged is None or now - self._last_logged >= self.interval:
            self._write_line(line)
            self._last_logged = now
            self._pending = None
        else:
            self._pending = line

    def finish(self, line: str | None = None) -> None:
        """End the current progress with its final state, on a line of its own."""
        final = line if line is not None else self._pending
        if self.interactive:
            if final is not None:
                self.stream.write("\r" + final.ljust(self._drawn))
            if final is not None or self._drawn:
                self.stream.write("\n")
        elif final is not None:
            self._write_line(final)
        self._drawn, self._last_logged, self._pending = 0, None, None
        self.stream.flush()

    def note(self, message: str) -> None:
        """Print a message on its own line without losing the progress line."""
        if self.interactive and self._drawn:
            self.stream.write("\n")
            self._drawn = 0
        self._write_line(message)

    def info(self, message: str) -> None:
        """Print an informational message (suppressed by ``--quiet``)."""
        self.note(message)

    def _write_line(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


class SilentProgress(ProgressPrinter):
    """A printer for ``--quiet``: no progress lines, but notes (warnings) still go to stderr."""

    def __init__(self) -> None:
        super().__init__(stream=sys.stderr, interactive=False)

    def update(self, line: str) -> None:
        """Ignore progress."""

    def finish(self, line: str | None = None) -> None:
        """Ignore progress."""

    def info(self, message: str) -> None:
        """Ignore information."""
