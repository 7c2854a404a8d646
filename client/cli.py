"""``python -m client.cli``: export, status, cancel, list, datasets, download.

Invariant: the environment is read in one place, :func:`env_defaults` (``SPILLWAY_API_URL``,
``SPILLWAY_API_KEY``), and only as defaults that flags override. Results go to stdout,
progress and errors to stderr. Exit codes: 0 success, 1 failure (export failed or was
cancelled, file not verified, API unreachable, 5xx), 2 the API refused the request (4xx)
or bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from client.api import ApiClient, ApiConnectionError, ApiError, DownloadError
from client.export import DEFAULT_POLL_INTERVAL_S, ExportOutcome, download_export, export_request, run_export
from client.filters import FilterSyntaxError, build_filters, column_types
from client.progress import ProgressPrinter, SilentProgress, format_figures

DEFAULT_API_URL = "http://127.0.0.1:8000"
EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """The command line cannot be acted on (exit 2)."""


def env_defaults() -> dict[str, str | None]:
    """The only place the client reads the environment: the API URL and key defaults."""
    return {
        "api_url": os.environ.get("SPILLWAY_API_URL") or DEFAULT_API_URL,
        "api_key": os.environ.get("SPILLWAY_API_KEY") or None,
    }


def _connection_options(defaults: dict[str, Any] | None) -> argparse.ArgumentParser:
    """``--api-url``/``--api-key``, accepted before or after the subcommand."""
    parser = argparse.ArgumentParser(add_help=False)
    kwargs = (lambda name: {"default": defaults[name]}) if defaults else (lambda name: {"default": argparse.SUPPRESS})
    parser.add_argument(
        "--api-url", help=f"API base URL (env SPILLWAY_API_URL, default {DEFAULT_API_URL})", **kwargs("api_url")
    )
    parser.add_argument(
        "--api-key", help="API key (env SPILLWAY_API_KEY; create one with: make key OWNER=<name>)", **kwargs("api_key")
    )
    return parser


def build_parser(defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``defaults`` replaces :func:`env_defaults` (tests)."""
    defaults = env_defaults() if defaults is None else defaults
    common = _connection_options(None)
    parser = argparse.ArgumentParser(
        prog="python -m client.cli",
        parents=[_connection_options(defaults)],
        description="Spillway client: export PostgreSQL datasets to CSV, JSON Lines or XLSX.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = commands.add_parser("export", parents=[common], help="export a dataset to a file and verify it")
    export.add_argument("dataset")
    export.add_argument("--columns", help="comma-separated column names (default: the dataset's defaults)")
    export.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="COLUMN=[OP:]VALUE",
        help="e.g. category=in:books,toys  price=gte:10  name=contains:ultra (repeatable)",
    )
    export.add_argument("--filter-json", metavar="JSON", help='filters as JSON, e.g. \'{"price": {"lt": 50}}\'')
    export.add_argument("--delivery", choices=("auto", "inline", "async"), default="auto")
    export.add_argument("--filename", help="the file name the server stores and suggests")
    export.add_argument("--format", choices=("csv", "jsonl", "xlsx"), default="csv", help="the file's format")
    export.add_argument("--gzip", action="store_true", help="gzip-compress the file (csv and jsonl)")
    export.add_argument("--bom", action="store_true", help="start a CSV with a UTF-8 BOM (for Excel)")
    export.add_argument(
        "--no-neutralize", action="store_true", help="do not neutralise spreadsheet formulas (for machine consumers)"
    )
    export.add_argument("--output", "-o", type=Path, help="file to write (default: the export's file name)")
    export.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL_S, metavar="SECONDS")
    export.add_argument("--cancel-after", type=float, metavar="SECONDS", help="cancel the export after SECONDS")
    export.add_argument("--quiet", "-q", action="store_true", help="no progress; print only the file path")

    status = commands.add_parser("status", parents=[common], help="show an export's status and progress")
    status.add_argument("export_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the API's JSON")

    cancel = commands.add_parser("cancel", parents=[common], help="cancel an export")
    cancel.add_argument("export_id", metavar="ID")

    listing = commands.add_parser("list", parents=[common], help="list your newest exports")
    listing.add_argument("--limit", type=int, default=20, help="how many (1-100, default 20)")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")

    datasets = commands.add_parser("datasets", parents=[common], help="list the datasets, columns and filters")
    datasets.add_argument("--json", action="store_true", help="print the API's JSON")

    download = commands.add_parser("download", parents=[common], help="download a completed export and verify it")
    download.add_argument("export_id", metavar="ID")
    download.add_argument("--output", "-o", type=Path, help="file to write (default: the export's file name)")
    download.add_argument("--quiet", "-q", action="store_true", help="no progress; print only the file path")
    return parser


def _report(outcome: ExportOutcome, quiet: bool) -> int:
    if outcome.ok and outcome.path is not None:
        print(outcome.path.resolve() if quiet else "\n".join(outcome.summary_lines()))
        return EXIT_OK
    if outcome.path is not None and not quiet:
        print("\n".join(outcome.summary_lines()))
    for problem in outcome.problems:
        print(f"error: {problem}", file=sys.stderr)
    if outcome.path is not None:
        print(f"error: the file was kept for inspection: {outcome.path.resolve()}", file=sys.stderr)
    return EXIT_FAILED


def cmd_export(api: ApiClient, args: argparse.Namespace) -> int:
    """Create, wait, download, verify; print the summary."""
    if args.poll_interval <= 0:
        raise UsageError("--poll-interval must be positive")
    filters = None
    if args.filter or args.filter_json:
        types = column_types(api.datasets(), args.dataset) if args.filter else {}
        try:
            filters = build_filters(args.filter, args.filter_json, types)
        except FilterSyntaxError as exc:
            raise UsageError(str(exc)) from None
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    request = export_request(
        args.dataset,
        columns,
        filters,
        args.delivery,
        args.filename,
        args.bom,
        not args.no_neutralize,
        fmt=args.format,
        gzip=args.gzip,
    )
    progress = SilentProgress() if args.quiet else ProgressPrinter()
    outcome = run_export(api, request, args.output, progress, args.poll_interval, args.cancel_after)
    return _report(outcome, args.quiet)


def cmd_download(api: ApiClient, args: argparse.Namespace) -> int:
    """Download a completed export and verify it."""
    progress = SilentProgress() if args.quiet else ProgressPrinter()
    return _report(download_export(api, args.export_id, args.output, progress), args.quiet)


def _describe_export(export: dict[str, Any]) -> list[str]:
    lines = [
        f"export    {export['id']}",
        f"status    {export['status']}",
        f"dataset   {export.get('dataset')}",
        f"progress  {format_figures(export).strip()}",
        f"file      {export.get('filename')}"
        + (f" ({export['object_bytes']:,} bytes)" if export.get("object_bytes") is not None else ""),
    ]
    for label in ("created_at", "started_at", "finished_at", "expires_at"):
        if export.get(label):
            lines.append(f"{label.split('_')[0]:<9} {export[label]}")
    if export.get("checksum"):
        lines.append(f"checksum  {export['checksum']['algorithm']} {export['checksum']['value']}")
    if export.get("error"):
        lines.append(f"error     {export['error']}")
    if export.get("download"):
        lines.append(f"download  {export['download']['url']}")
        lines.append(f"          (expires {export['download']['expires_at']})")
        if export["download"].get("note"):
            lines.append(f"          warning: {export['download']['note']}")
    if export.get("download_error"):
        lines.append(f"download  none: {export['download_error']['message']}")
    return lines


def cmd_status(api: ApiClient, args: argparse.Namespace) -> int:
    """Print one export's status."""
    export = api.get_export(args.export_id)
    print(json.dumps(export, indent=2) if args.json else "\n".join(_describe_export(export)))
    return EXIT_OK


def cmd_cancel(api: ApiClient, args: argparse.Namespace) -> int:
    """Ask the API to cancel an export."""
    answer = api.cancel_export(args.export_id)
    status = answer.get("status", "?") if isinstance(answer, dict) else "?"
    print(f"export {args.export_id}: cancel requested (status: {status})")
    return EXIT_OK


def cmd_list(api: ApiClient, args: argparse.Namespace) -> int:
    """Print the newest exports, one a line."""
    page = api.list_exports(args.limit)
    if args.json:
        print(json.dumps(page, indent=2))
        return EXIT_OK
    for export in page["exports"]:
        progress = export.get("progress") or {}
        total = progress.get("total_rows")
        print(
            f"{export['id']}  {export['status']:<9}  {export['dataset']:<12}  "
            f"{progress.get('percent') or 0:5.1f}%  {(f'{total:,}' if total is not None else '?'):>11} rows  "
            f"{export.get('created_at')}"
        )
    if not page["exports"]:
        print("no exports yet")
    return EXIT_OK


def cmd_datasets(api: ApiClient, args: argparse.Namespace) -> int:
    """Print the datasets with their columns, types and filter operators."""
    datasets = api.datasets()
    if args.json:
        print(json.dumps({"datasets": datasets}, indent=2))
        return EXIT_OK
    for dataset in datasets:
        print(f"{dataset['name']}: {dataset.get('description', '')}")
        for column in dataset["columns"]:
            ops = ",".join(column.get("filters") or []) or "-"
            print(f"  {column['name']:<14} {column['type']:<12} filters: {ops}")
    return EXIT_OK


COMMANDS = {
    "export": cmd_export,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "list": cmd_list,
    "datasets": cmd_datasets,
    "download": cmd_download,
}


def run_reporting_errors(action: Callable[[], int], failures: tuple[type[Exception], ...] = ()) -> int:
    """Run ``action``; print what went wrong and return the exit code for it.

    ``failures`` are more exception types that mean a failed run (exit 1).
    """
    try:
        return action()
    except failures as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED if 400 <= exc.status < 500 else EXIT_FAILED
    except (ApiConnectionError, DownloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except http.client.HTTPException as exc:
        print(f"error: the connection broke mid-answer ({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # e.g. the output file cannot be written, or a read timed out
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit code."""
    args = build_parser().parse_args(argv)

    def command() -> int:
        if not args.api_key:
            raise UsageError(
                "no API key: pass --api-key or set SPILLWAY_API_KEY (create one with: make key OWNER=<name>)"
            )
        return int(COMMANDS[args.command](ApiClient(args.api_url, args.api_key), args))

    return run_reporting_errors(command)


if __name__ == "__main__":
    sys.exit(main())
