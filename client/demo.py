"""``python -m client.demo`` (``make demo``): one async export of every products row, verified.

Invariant: the demo goes through the same public paths a user would — a key made by the
operator's ``flask keys create`` command, then the CLI's own :func:`run_export` over HTTP —
and exits non-zero unless the downloaded file is verified against the API's figures.
It expects the stack that ``make up`` starts (API on ``SPILLWAY_API_URL``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from client.api import ApiClient, ApiConnectionError, ApiError
from client.cli import EXIT_FAILED, EXIT_OK, env_defaults, run_reporting_errors
from client.export import export_request, run_export
from client.progress import ProgressPrinter

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / ".data" / "demo" / "products.csv"
DATASET = "products"
HEALTH_WAIT_S = 60.0  # `make up` returns before every dependency answers; give them this long
HEALTH_POLL_S = 1.0


class DemoError(Exception):
    """The demo cannot go on; the message says what to look at."""


def create_api_key(owner: str, root: Path = ROOT) -> str:
    """Create a key with the operator's command and return it (the last line of its stdout)."""
    command = [sys.executable, "-m", "flask", "--app", "api.wsgi", "keys", "create", owner]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DemoError(f"could not create an API key ({' '.join(command[1:])} exited {done.returncode}): {detail}")
    return lines[-1].strip()


def describe_health(status: int, body: dict) -> str:
    """Say which dependencies are down, from a ``GET /health`` answer."""
    down = body.get("down") or []
    if not down:
        return f"GET /health answered {status}: {body.get('error') or body.get('status', 'no detail')}"
    details = body.get("dependencies") or {}
    return "down: " + "; ".join(f"{name} ({(details.get(name) or {}).get('error', 'no detail')})" for name in down)


def wait_for_health(
    api: ApiClient,
    timeout: float = HEALTH_WAIT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until ``GET /health`` answers 200.

    Raises:
        DemoError: it did not within ``timeout`` seconds; names the API or the dependency that is down.
    """
    deadline = clock() + timeout
    while True:
        try:
            status, body = api.health()
            if status == 200:
                return
            problem = describe_health(status, body)
        except ApiConnectionError as exc:
            problem = str(exc)
        if clock() >= deadline:
            raise DemoError(f"the stack is not healthy after {timeout:.0f}s: {problem} (try: make status)")
        sleep(HEALTH_POLL_S)


def run_demo(api_url: str, output: Path, owner: str) -> int:
    """Key, health, export, verify, figures; return the exit code."""
    print(f"waiting for {api_url}/health ...", file=sys.stderr)
    wait_for_health(ApiClient(api_url, ""))
    key = create_api_key(owner)
    print(f"API key for owner {owner!r}: {key}")
    print(f"try it:  curl -H 'Authorization: Bearer {key}' {api_url}/datasets")
    api = ApiClient(api_url, key)
    datasets = {d["name"]: d for d in api.datasets()}
    if DATASET not in datasets:
        raise DemoError(f"the API has no {DATASET!r} dataset (it has: {', '.join(datasets) or 'none'})")
    columns = [c["name"] for c in datasets[DATASET]["columns"]]
    request = export_request(DATASET, columns, delivery="async")
    print(f"exporting {DATASET} ({len(columns)} columns, async) to {output} ...", file=sys.stderr)
    outcome = run_export(api, request, output, ProgressPrinter(sys.stderr))
    print("\n".join(outcome.summary_lines()))
    for problem in outcome.problems:
        print(f"error: {problem}", file=sys.stderr)
    print(
        f"API key: {key}  (export id {outcome.export_id}; "
        f"python -m client.cli --api-key {key} status {outcome.export_id})"
    )
    print(f"web page: {api_url}/  (sign in with the API key above)")
    if not outcome.ok:
        print("demo FAILED: the exported file was not verified", file=sys.stderr)
        return EXIT_FAILED
    print(f"demo OK: {outcome.rows:,} rows in {outcome.seconds:.1f}s ({outcome.rows_per_second:,.0f} rows/s)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the few options, run the demo, map errors to exit codes."""
    parser = argparse.ArgumentParser(prog="python -m client.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", default=env_defaults()["api_url"])
    parser.add_argument("--output", "-o", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--owner", default="demo", help="the owner the demo's API key is made for")
    args = parser.parse_args(argv)
    # An API refusal is a failed demo too (exit 1), not a usage error.
    return run_reporting_errors(
        lambda: run_demo(args.api_url.rstrip("/"), args.output, args.owner), failures=(DemoError, ApiError)
    )


if __name__ == "__main__":
    sys.exit(main())
