"""``make bench``: end-to-end speed, memory, scaling and API figures against the floor.

Every figure is the median of ``--runs`` runs (3) with min-max, measured in one run of this
script on this machine; the whole result is printed and written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
import urllib.error
from datetime import UTC, datetime

import psycopg
from redis import Redis
from rq.job import Job

from bench.baselines import copy_cpu_seconds, floor_seconds, naive_seconds
from bench.probes import CpuMeter, wrk_polls
from bench.stack import BenchStack, Http, bench_settings, prepare_bench_database
from client.export import DEFAULT_POLL_INTERVAL_S
from shared.datasets import load as load_datasets
from shared.keys import create_key
from shared.queue import plan_job_id
from shared.settings import load_settings
from tests.support.jobs import chunk_jobs, reported_peak_rss_mb
from tests.support.processes import ROOT, peak_rss_mb

RESULTS = ROOT / "bench" / "results"


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max of some measurements."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": len(values),
    }


def show(label: str, s: dict[str, float], unit: str = "s") -> str:
    return f"{label}: {s['median']:.2f} {unit} (min {s['min']:.2f}, max {s['max']:.2f}, {s['runs']} runs)"


def machine() -> dict[str, object]:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "not found"

    import moto

    return {
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "postgres": version(["psql", "--version"]),
        "redis": version(["redis-server", "--version"]),
        "moto": moto.__version__,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def run_export(http: Http, body: dict) -> dict[str, object]:
    """POST an async export and poll it as the CLI does until it ends; seconds from the POST
    to the export's own ``finished_at``.

    Timed by ``finished_at`` (PostgreSQL's clock, this machine's, as the POST's start), the
    poll interval adds no delay to the figure. Polling every 20 ms, as this bench did, cost
    the API 50 requests a second of CPU during the export: 0.15 s of a 1M export's 3.4 s
    (four runs each way on the ``make up`` stack; see the README).
    """
    started = time.time()
    _, raw, _ = http.call("POST", "/exports", {**body, "delivery": "async"})
    export = json.loads(raw)
    while export["status"] in ("queued", "running"):
        time.sleep(DEFAULT_POLL_INTERVAL_S)
        export = json.loads(http.call("GET", f"/exports/{export['id']}")[1])
    if export["status"] != "completed":
        raise RuntimeError(f"export {export['id']} ended {export['status']}: {export['error']}")
    finished = datetime.fromisoformat(export["finished_at"].replace("Z", "+00:00")).timestamp()
    return {
        "id": export["id"],
        "seconds": finished - started,
        "rows": export["progress"]["total_rows"],
        "bytes": export["object_bytes"],
        "parts": export["progress"]["parts_total"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1M only, no scaling, no naive baseline")
    args = parser.parse_args(argv)
    base = load_settings()
    settings = bench_settings(base)
    result: dict[str, object] = {"machine": machine(), "started": datetime.now(UTC).isoformat()}
    print(f"machine: {result['machine']}", flush=True)
    prepare_bench_database(base, settings)
    load_datasets(settings)  # as every Spillway process does at start; the baselines read the registry
    redis = Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        http = Http(create_key(conn, "bench"))
    stack = BenchStack(settings)
    stack.start_api()
    try:
        stack.scale_workers(2)
        sizes = {"1M": {"dataset": "products", "filters": {"id": {"lte": 1_000_000}}}}
        if not args.quick:
            sizes["5M"] = {"dataset": "products"}
        e2e: dict[str, object] = {}
        for label, body in sizes.items():
            runs, floors, plains, peaks = [], [], [], []
            for _ in range(args.runs):
                meter = CpuMeter(stack)
                run = run_export(http, body)
                run["cpu"] = meter.stop(run["seconds"])
                run["cpu_seconds"] = meter.seconds
                run["plan"] = plan_timing(redis, settings, run["id"])
                runs.append(run)
                peaks.append(round(reported_peak_rss_mb(chunk_jobs(redis, run["id"], run["parts"])), 1))
                floors.append(floor_seconds(settings, body))
                plains.append(floor_seconds(settings, body, plain=True))
            copy_cpu = {"plain": copy_cpu_seconds(settings, body, plain=True), "same": copy_cpu_seconds(settings, body)}
            e2e[label] = {
                "rows": runs[0]["rows"],
                "bytes": runs[0]["bytes"],
                "parts": runs[0]["parts"],
                "spillway": summary([r["seconds"] for r in runs]),
                "floor": summary(floors),
                "plain_floor": summary(plains),
                "worker_peak_rss_mb": summary(peaks),
                "cpu_share": runs[-1]["cpu"],
                **cost_figures(runs, copy_cpu),
            }
            ratio = e2e[label]["spillway"]["median"] / e2e[label]["floor"]["median"]
            plain = e2e[label]["spillway"]["median"] / e2e[label]["plain_floor"]["median"]
            e2e[label]["ratio_to_floor"] = round(ratio, 2)
            e2e[label]["ratio_to_plain_floor"] = round(plain, 2)
            print(
                show(f"{label} end-to-end", e2e[label]["spillway"]),
                "|",
                show("floor (psql \\copy of the same query + s3 cp)", e2e[label]["floor"]),
                f"| ratio {ratio:.2f}",
                "|",
                show("plain floor (\\copy of SELECT * ORDER BY key + s3 cp)", e2e[label]["plain_floor"]),
                f"| ratio {plain:.2f}",
                flush=True,
            )
            print(
                f"   {runs[0]['rows']:,} rows, {runs[0]['bytes'] / 1e6:.1f} MB, {runs[0]['parts']} parts, "
                f"{runs[0]['rows'] / e2e[label]['spillway']['median']:,.0f} rows/s; "
                f"worker peak RSS {e2e[label]['worker_peak_rss_mb']['max']:.1f} MB; CPU {runs[-1]['cpu']}",
                flush=True,
            )
            figures = e2e[label]
            print(
                f"   PostgreSQL CPU {figures['postgres_cpu_s']['median']:.2f} s per export"
                f" | a plain COPY of the same rows {copy_cpu['plain']:.2f} s"
                f" (ratio {figures['postgres_cpu_ratio']:.2f})"
                f" | the export's own query alone {copy_cpu['same']:.2f} s"
                f" | worker CPU {figures['worker_cpu_s_per_gb']['median']:.1f} s per GB"
                f" | planner {figures['planner_s']['median']:.2f} s,"
                f" first chunk started {figures['first_chunk_after_planner_s']['median']:.2f} s after the planner",
                flush=True,
            )
        result["end_to_end"] = e2e
        result["formats_1M"] = format_figures(http, stack, redis, sizes["1M"], e2e["1M"], args.runs)
        if not args.quick:  # one full-size workbook: 5M rows over five sheets of Excel's 1,048,575
            meter = CpuMeter(stack)
            run = run_export(http, {**sizes["5M"], "format": "xlsx"})
            run["cpu"] = meter.stop(run["seconds"])
            run["worker_peak_rss_mb"] = round(reported_peak_rss_mb(chunk_jobs(redis, run["id"], run["parts"])), 1)
            result["xlsx_5M"] = run
            print(
                f"xlsx 5M (5 sheets): {run['seconds']:.2f} s, {run['bytes'] / 1e6:.1f} MB, "
                f"worker peak RSS {run['worker_peak_rss_mb']} MB; CPU {run['cpu']}",
                flush=True,
            )
        api_peaks = [peak for peak in map(peak_rss_mb, stack.api_pids()) if peak is not None]
        result["api_peak_rss_mb"] = round(max(api_peaks or [0]), 1)
        print(f"API (gunicorn, all processes) peak RSS: {result['api_peak_rss_mb']} MB", flush=True)

        if not args.quick:
            naive = [naive_seconds(settings, 1_000_000) for _ in range(args.runs)]
            result["naive_1M"] = summary(naive)
            speedup = result["naive_1M"]["median"] / e2e["1M"]["spillway"]["median"]
            result["speedup_over_naive"] = round(speedup, 1)
            print(
                show("naive baseline 1M (LIMIT/OFFSET + csv.writer + one PUT)", result["naive_1M"]),
                f"| Spillway is {speedup:.1f}x faster",
                flush=True,
            )

            scaling = {}
            for count in (1, 2, 4):
                stack.scale_workers(count)
                times, cpu = [], None
                for _ in range(args.runs):
                    meter = CpuMeter(stack)
                    run = run_export(http, sizes["5M"])
                    cpu = meter.stop(run["seconds"])
                    times.append(run["seconds"])
                scaling[f"{count} workers"] = {"seconds": summary(times), "cpu_share": cpu}
                print(
                    show(f"5M with {count} worker(s)", scaling[f"{count} workers"]["seconds"]),
                    f"| CPU {cpu}",
                    flush=True,
                )
            result["scaling_5M"] = scaling
            stack.scale_workers(2)

        result["api"] = api_figures(http, stack, sizes.get("5M", sizes["1M"]))
    finally:
        stack.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written: {out.relative_to(ROOT)}")


def plan_timing(redis: Redis, settings, export_id: str) -> dict[str, float]:
    """Seconds the planner job ran, and from its start to the claim of chunk 1."""
    job = Job.fetch(plan_job_id(export_id), connection=redis)
    with psycopg.connect(settings.state_database_url) as conn:
        ((first,),) = conn.execute(
            "SELECT started_at FROM export_chunks WHERE export_id = %s AND part_number = 1", (export_id,)
        ).fetchall()
    started = job.started_at.replace(tzinfo=UTC)
    return {
        "planner_s": round((job.ended_at.replace(tzinfo=UTC) - started).total_seconds(), 3),
        "first_chunk_after_planner_s": round((first - started).total_seconds(), 3),
    }


def cost_figures(runs: list[dict], copy_cpu: dict[str, float]) -> dict[str, object]:
    """What one export costs: PostgreSQL CPU (and its ratio to a plain COPY of the same rows),
    worker CPU per GB of output, the planner's time and the first chunk's start."""
    postgres = summary([r["cpu_seconds"]["postgres"] for r in runs])
    return {
        "postgres_cpu_s": postgres,
        "plain_copy_cpu_s": round(copy_cpu["plain"], 3),
        "same_query_copy_cpu_s": round(copy_cpu["same"], 3),
        "postgres_cpu_ratio": round(postgres["median"] / copy_cpu["plain"], 2),
        "worker_cpu_s_per_gb": summary([r["cpu_seconds"]["workers"] / (r["bytes"] / 1e9) for r in runs]),
        "planner_s": summary([r["plan"]["planner_s"] for r in runs]),
        "first_chunk_after_planner_s": summary([r["plan"]["first_chunk_after_planner_s"] for r in runs]),
    }


FORMATS = {
    "csv+gzip": {"compression": "gzip"},
    "jsonl": {"format": "jsonl"},
    "jsonl+gzip": {"format": "jsonl", "compression": "gzip"},
    "xlsx": {"format": "xlsx"},
}


def format_figures(http: Http, stack: BenchStack, redis: Redis, body: dict, csv: dict, runs: int) -> dict[str, object]:
    """Each format's end-to-end time, size and worker peak RSS for the 1M export, beside CSV's."""
    figures: dict[str, object] = {}
    for name, extra in FORMATS.items():
        times, peaks, run = [], [], {}
        for _ in range(runs):
            meter = CpuMeter(stack)
            run = run_export(http, {**body, **extra})
            run["cpu"] = meter.stop(run["seconds"])
            times.append(run["seconds"])
            peaks.append(round(reported_peak_rss_mb(chunk_jobs(redis, run["id"], run["parts"])), 1))
        figure = {
            "spillway": summary(times),
            "bytes": run["bytes"],
            "parts": run["parts"],
            "worker_peak_rss_mb": summary(peaks),
            "cpu_share": run["cpu"],
            "time_vs_csv": round(summary(times)["median"] / csv["spillway"]["median"], 2),
            "size_vs_csv": round(run["bytes"] / csv["bytes"], 3),
        }
        figures[name] = figure
        print(
            show(f"1M {name}", figure["spillway"]),
            f"| {figure['time_vs_csv']:.2f}x CSV's time",
            f"| {run['bytes'] / 1e6:.1f} MB ({figure['size_vs_csv']:.3f} of CSV)"
            f" | worker peak RSS {figure['worker_peak_rss_mb']['max']:.1f} MB | CPU {run['cpu']}",
            flush=True,
        )
    return figures


def api_figures(http: Http, stack: BenchStack, big: dict) -> dict[str, object]:
    """Inline 10,000-row latency; status polls under wrk while an export runs."""
    latencies = []
    body = {"dataset": "products", "filters": {"id": {"lte": 10_000}}, "delivery": "inline"}
    for _ in range(20):
        started = time.perf_counter()
        status, data, _ = http.call("POST", "/exports", body)
        latencies.append(time.perf_counter() - started)
        assert status == 200 and data.count(b"\n") >= 10_000
    latencies.sort()
    inline = {
        "median_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1),
        "requests": len(latencies),
    }
    print(f"inline 10,000 rows: median {inline['median_ms']} ms, p95 {inline['p95_ms']} ms", flush=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
    polls = []
    for connections in (8, 32):
        _, raw, _ = http.call("POST", "/exports", {**big, "delivery": "async"})
        export_id = json.loads(raw)["id"]
        time.sleep(1.0)  # planned and streaming
        polls.append(wrk_polls(http, f"/exports/{export_id}", seconds=10, connections=connections))
        try:
            http.call("POST", f"/exports/{export_id}/cancel", {})
        except urllib.error.HTTPError as exc:  # 409: it completed during the load test
            if exc.code != 409:
                raise
        print(f"status polls during a running export (wrk, 10 s): {polls[-1]}", flush=True)
        time.sleep(2.0)
    return {"inline_10k": inline, "status_polls": polls}


if __name__ == "__main__":
    main()
