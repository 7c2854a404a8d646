"""The flows the CLI and the demo share: create → (stream | poll → download) → verify.

Invariant: an outcome is ``ok`` only when the file on disk has been read back and holds
exactly the number of CSV records the API announced (and, for an async export, exactly
the stored object's size and, when the API gives it, its CRC-32). Anything else — a
failed, cancelled or expired export, an object gone or replaced in storage, a mismatch, an
unreadable file — is an outcome whose ``problems`` say what went wrong.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.api import ApiClient, ApiConnectionError, ApiError, fetch_to_file, save_body
from client.filters import Filters
from client.progress import (
    ProgressPrinter,
    format_bytes,
    format_download_progress,
    format_duration,
    format_export_progress,
)
from client.verify import verify_file

POLL_OUTAGE_S = 60.0  # polling rides out an API restart or a brief outage this long before giving up
DEFAULT_POLL_INTERVAL_S = 0.5

Clock = Callable[[], float]


@dataclass
class ExportOutcome:
    """What a run did: the export's final status, the file, its figures and any problems.

    Attributes:
        status: the export's final status (``completed`` for a successful inline answer).
        delivery: ``inline`` or ``async``.
        export_id: the async export's id (None for inline).
        path: the file written (None when nothing was downloaded).
        filename: the file's name as the API gave it (its extension says its format).
        rows: records found in the file (a header excluded).
        rows_expected: ``progress.total_rows`` or ``X-Spillway-Rows``.
        bytes: the file's size.
        bytes_expected: the stored object's size (async only).
        checksum_expected: the export's ``checksum`` (``{"algorithm", "value"}``; async only).
        checksum: the file's checksum computed by the same algorithm (None: not checked).
        seconds: wall-clock time of the whole run.
        phases: seconds per phase, in order (``export``, ``download``, ``verify`` or ``stream``, ``verify``).
        problems: everything that failed; empty when the file is verified.
    """

    status: str
    delivery: str
    export_id: str | None = None
    path: Path | None = None
    filename: str | None = None
    rows: int | None = None
    rows_expected: int | None = None
    bytes: int = 0
    bytes_expected: int | None = None
    checksum_expected: dict[str, Any] | None = None
    checksum: str | None = None
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the export completed and the file was verified."""
        return self.status == "completed" and self.path is not None and not self.problems

    @property
    def rows_per_second(self) -> float:
        """Rows in the file per second of the whole run."""
        return (self.rows or 0) / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        """Megabytes (10^6 bytes) of the file per second of the whole run."""
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def summary_lines(self) -> list[str]:
        """The human-readable summary: rows, bytes, seconds, rates and the file path."""
        phases = ", ".join(f"{name} {value:.1f}" for name, value in self.phases.items())
        rows = f"{self.rows:,}" if self.rows is not None else "?"
        if self.rows_expected is not None:
            rows += " (verified)" if self.rows == self.rows_expected else f" (expected {self.rows_expected:,})"
        lines = [
            f"export   {self.export_id or '-'} ({self.delivery}, {self.status})",
            f"rows     {rows}",
            f"bytes    {self.bytes:,} ({format_bytes(self.bytes)})",
            f"seconds  {self.seconds:.1f}" + (f" ({phases})" if phases else ""),
            f"rows/s   {self.rows_per_second:,.0f}",
            f"MB/s     {self.mb_per_second:.1f}",
            f"file     {self.path.resolve() if self.path else '-'}",
        ]
        if self.checksum_expected is not None:
            expected = str(self.checksum_expected.get("value")).lower()
            if self.checksum is None:
                verdict = f"{expected} (not checked: unknown algorithm)"
            else:
                verdict = f"{self.checksum} ({'verified' if self.checksum == expected else f'expected {expected}'})"
            lines.insert(3, f"{str(self.checksum_expected.get('algorithm')):<8} {verdict}")
        return lines


def export_request(
    dataset: str,
    columns: list[str] | None = None,
    filters: Filters | None = None,
    delivery: str = "auto",
    filename: str | None = None,
    bom: bool = False,
    neutralize_formulas: bool = True,
    fmt: str = "csv",
    gzip: bool = False,
) -> dict[str, Any]:
    """The ``POST /exports`` body; options left at None are omitted so the API's defaults apply."""
    body: dict[str, Any] = {"dataset": dataset, "delivery": delivery, "format": fmt}
    if fmt == "csv":
        body["csv"] = {"bom": bom, "neutralize_formulas": neutralize_formulas}
    elif fmt == "xlsx":
        body["xlsx"] = {"neutralize_formulas": neutralize_formulas}
    if gzip:
        body["compression"] = "gzip"
    if columns:
        body["columns"] = list(columns)
    if filters:
        body["filters"] = filters
    if filename:
        body["filename"] = filename
    return body


def safe_filename(name: str | None, fallback: str) -> str:
    """The last path component of a server-suggested name, or ``fallback`` when it is unusable."""
    base = Path((name or "").replace("\\", "/")).name
    return base if base and base not in (".", "..") else fallback


def _disposition_filename(header: str | None) -> str | None:
    found = re.search(r'filename="([^"]*)"|filename=([^;\s]+)', header or "")
    return (found.group(1) or found.group(2)) if found else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _verify_into(outcome: ExportOutcome, clock: Clock) -> ExportOutcome:
    assert outcome.path is not None
    started = clock()
    check = verify_file(
        outcome.path, outcome.rows_expected, outcome.bytes_expected, outcome.checksum_expected, outcome.filename
    )
    outcome.phases["verify"] = clock() - started
    outcome.rows, outcome.bytes, outcome.checksum = check.rows_found, check.bytes_found, check.checksum_found
    outcome.problems.extend(check.problems)
    return outcome


def _download_reporter(progress: ProgressPrinter, clock: Clock) -> Callable[[int, int | None], None]:
    started = clock()
    return lambda done, total: progress.update(format_download_progress(done, total, clock() - started))


def _save_inline(
    response: Any, output: Path | None, progress: ProgressPrinter, clock: Clock, started: float
) -> ExportOutcome:
    name = safe_filename(_disposition_filename(response.headers.get("Content-Disposition")), "export.csv")
    path = output or Path(name)
    outcome = ExportOutcome(
        "completed",
        "inline",
        path=path,
        filename=name,
        rows_expected=_int_or_none(response.headers.get("X-Spillway-Rows")),
    )
    stream_started = clock()
    save_body(response, path, None, _download_reporter(progress, clock))
    progress.finish()
    outcome.phases["stream"] = clock() - stream_started
    _verify_into(outcome, clock)
    outcome.seconds = clock() - started
    return outcome


def _not_completed(export: dict[str, Any]) -> str:
    export_id, status = export["id"], export["status"]
    if status == "failed":
        return f"export {export_id} failed: {export.get('error') or 'no reason given'}"
    if status == "cancelled":
        return f"export {export_id} was cancelled"
    if status == "expired":
        return f"export {export_id} has expired and its file was deleted; create a new export"
    percent = (export.get("progress") or {}).get("percent") or 0.0
    return f"export {export_id} is {status} ({percent:.1f}%), not completed yet"


def _transient(exc: Exception) -> bool:
    if isinstance(exc, ApiError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, ApiConnectionError)


def wait_for_export(
    api: ApiClient,
    export: dict[str, Any],
    progress: ProgressPrinter,
    poll_interval: float = DEFAULT_POLL_INTERVAL_S,
    cancel_after: float | None = None,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    started: float | None = None,
) -> dict[str, Any]:
    """Poll ``GET /exports/<id>`` until the export reaches a terminal status; return its JSON.

    Args:
        cancel_after: send ``POST /exports/<id>/cancel`` once this many seconds have passed.
        started: the clock reading the elapsed time is measured from (default: now).

    Raises:
        ApiError: a 4xx answer, or 5xx/429 answers for longer than :data:`POLL_OUTAGE_S`.
        ApiConnectionError: the API stayed unreachable for longer than :data:`POLL_OUTAGE_S`.
    """
    started = clock() if started is None else started
    cancel_sent, outage_since = False, None
    progress.update(format_export_progress(export, clock() - started))
    while not export["finished"]:  # the API says when to stop polling
        sleep(poll_interval)
        try:
            export = api.get_export(export["id"])
        except (ApiError, ApiConnectionError) as exc:
            if not _transient(exc):
                raise
            if outage_since is None:
                outage_since = clock()
                progress.note(f"warning: {exc}; still polling for up to {POLL_OUTAGE_S:.0f}s")
            elif clock() - outage_since > POLL_OUTAGE_S:
                raise
            continue
        outage_since = None
        elapsed = clock() - started
        progress.update(format_export_progress(export, elapsed))
        due = cancel_after is not None and elapsed >= cancel_after
        if due and not cancel_sent and not export["finished"]:
            progress.note(f"cancelling export {export['id']} after {format_duration(elapsed)} (--cancel-after)")
            api.cancel_export(export["id"])
            cancel_sent = True
    progress.finish(format_export_progress(export, clock() - started))
    return export


def _download_completed(
    export: dict[str, Any],
    output: Path | None,
    progress: ProgressPrinter,
    clock: Clock,
    started: float,
    phases: dict[str, float],
) -> ExportOutcome:
    progress_json = export.get("progress") or {}
    outcome = ExportOutcome(
        export["status"],
        "async",
        export_id=export["id"],
        filename=export.get("filename"),
        phases=phases,
        rows_expected=progress_json.get("total_rows"),
        bytes_expected=export.get("object_bytes"),
        checksum_expected=export.get("checksum"),
    )
    if export["status"] != "completed":
        outcome.problems.append(_not_completed(export))
    elif export.get("download_error"):  # the object was deleted or replaced in storage
        outcome.problems.append(str(export["download_error"].get("message") or export["download_error"]))
    elif not (export.get("download") or {}).get("url"):
        outcome.problems.append(f"export {export['id']} is completed but the API gave no download URL")
    if outcome.problems:
        outcome.seconds = clock() - started
        return outcome
    if export["download"].get("note"):  # e.g. storage could not be asked whether the file is intact
        progress.note(f"warning: {export['download']['note']}")
    outcome.path = output or Path(safe_filename(export.get("filename"), f"{export['id']}.csv"))
    download_started = clock()
    fetch_to_file(export["download"]["url"], outcome.path, _download_reporter(progress, clock))
    progress.finish()
    outcome.phases["download"] = clock() - download_started
    _verify_into(outcome, clock)
    outcome.seconds = clock() - started
    return outcome


def _cancel_after_interrupt(api: ApiClient, export_id: str, progress: ProgressPrinter) -> None:
    try:
        answer = api.cancel_export(export_id)
        status = answer.get("status", "?") if isinstance(answer, dict) else "?"
        progress.note(f"interrupted: asked the API to cancel export {export_id} (status now {status})")
    except (ApiError, ApiConnectionError) as exc:
        progress.note(f"interrupted: could not cancel export {export_id}: {exc}")


def run_export(
    api: ApiClient,
    request: dict[str, Any],
    output: Path | None = None,
    progress: ProgressPrinter | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL_S,
    cancel_after: float | None = None,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExportOutcome:
    """Create an export, wait for it, download it and verify the file.

    An inline answer is streamed straight to the file; an async one is polled (with a
    progress line), then downloaded from its presigned URL without the API key. On Ctrl-C
    while an async export is unfinished, cancel is requested before KeyboardInterrupt
    propagates.

    Args:
        api: the API to call.
        request: the ``POST /exports`` body (see :func:`export_request`).
        output: the file to write (default: the export's file name in the current directory).
        progress: where progress goes (default: stderr).
        poll_interval: seconds between status polls.
        cancel_after: cancel the async export after this many seconds (to try the cancel path).

    Raises:
        ApiError: the API refused the request (e.g. 400 naming a bad column).
        ApiConnectionError, DownloadError: the API or the storage could not be reached or read.
    """
    progress = progress or ProgressPrinter()
    started = clock()
    with api.open("POST", "/exports", request) as response:
        if response.status == 200:
            return _save_inline(response, output, progress, clock, started)
        if response.status != 202:
            raise ApiError(response.status, "unexpected_status", f"POST /exports answered {response.status}")
        export = json.loads(response.read())
    progress.info(f"export {export['id']} accepted for async delivery ({response.headers.get('Location')})")
    try:
        export = wait_for_export(api, export, progress, poll_interval, cancel_after, clock, sleep, started)
    except KeyboardInterrupt:
        progress.finish()
        _cancel_after_interrupt(api, export["id"], progress)
        raise
    phases = {"export": clock() - started}
    return _download_completed(export, output, progress, clock, started, phases)


def download_export(
    api: ApiClient,
    export_id: str,
    output: Path | None = None,
    progress: ProgressPrinter | None = None,
    clock: Clock = time.monotonic,
) -> ExportOutcome:
    """Download a completed export's file from its presigned URL and verify it.

    Returns:
        The outcome; an export that is not completed gives an outcome whose problem says so.
    """
    started = clock()
    export = api.get_export(export_id)
    return _download_completed(export, output, progress or ProgressPrinter(), clock, started, {})
