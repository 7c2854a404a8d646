"""``GET /metrics`` through gunicorn (two processes, multiprocess mode) with real workers:
the counters move with an export and a cancel, the API's processes add up to exact totals, the
workers' figures reach the scrape through Redis, and a source that is down never fails it."""

from __future__ import annotations

import json
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from tests.support.servers import gunicorn_api
from tests.support.waiting import wait_for
from tests.support.workers import WorkerPool


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: ``{(name, sorted labels): value}``."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def call(base: str, key: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


@pytest.fixture(scope="module")
def served(settings, seeded, bucket, redis, keys_for) -> Iterator[dict]:
    s = settings.replace(queue_prefix=f"metrics-{uuid.uuid4().hex[:6]}")
    pool = WorkerPool(s)
    pool.start(2)
    try:
        with gunicorn_api(s, "test-gunicorn-metrics") as (base, _):
            yield {"base": base, "key": keys_for("metrics-owner"), "settings": s}
    finally:
        pool.stop()


def test_the_counters_move_with_an_export_and_the_processes_add_up(served):
    base, key = served["base"], served["key"]
    before = scrape(base)
    for _ in range(40):  # a new connection each: gunicorn's two processes share them
        call(base, key, "GET", "/datasets")
    export = call(
        base,
        key,
        "POST",
        "/exports",
        {"dataset": "products", "columns": ["id", "name"], "filters": {"id": {"lte": 20_000}}, "delivery": "async"},
    )
    done = wait_for(
        lambda: (e := call(base, key, "GET", f"/exports/{export['id']}"))["finished"] and e,
        timeout=120,
        what="the export",
    )
    assert done["status"] == "completed"
    after = scrape(base)

    route = {"endpoint": "/datasets", "method": "GET", "status": "200"}
    assert (
        value(after, "spillway_http_requests_total", **route) - value(before, "spillway_http_requests_total", **route)
        == 40
    )  # exact, although two processes answered them
    files = list((Path(tempfile.gettempdir()) / f"spillway-metrics-{base.rsplit(':', 1)[1]}").glob("counter_*.db"))
    assert len(files) >= 2, f"one process answered everything: {files}"

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("spillway_exports_accepted_total", tier="async", format="csv") == 1
    parts = done["progress"]["parts_total"]
    assert delta("spillway_chunks_total", outcome="done") == parts
    assert delta("spillway_rows_exported_total", format="csv") == 20_000
    assert delta("spillway_bytes_exported_total", format="csv") == done["object_bytes"]
    assert delta("spillway_chunk_duration_seconds_count", format="csv") == parts
    assert delta("spillway_chunk_duration_seconds_bucket", format="csv", le="+Inf") == parts
    assert delta("spillway_exports_finished_total", status="completed") == 1
    assert value(after, "spillway_http_request_duration_seconds_count", endpoint="/exports/<export_id>") > 0
    # state read when scraped
    assert value(after, "spillway_metrics_source_up", source="postgres") == 1
    assert value(after, "spillway_metrics_source_up", source="redis") == 1
    assert value(after, "spillway_workers") >= 2
    assert ("spillway_exports", (("status", "queued"),)) in after
    assert ("spillway_chunks_waiting", ()) in after
    assert ("spillway_oldest_queued_export_age_seconds", ()) in after
    assert ("spillway_queue_jobs", (("queue", served["settings"].queue_chunks),)) in after


def test_a_cancel_is_counted(served):
    base, key = served["base"], served["key"]
    before = scrape(base)
    export = call(base, key, "POST", "/exports", {"dataset": "products", "delivery": "async"})
    assert call(base, key, "POST", f"/exports/{export['id']}/cancel")["status"] == "cancelled"
    after = scrape(base)
    assert value(after, "spillway_cancels_total") - value(before, "spillway_cancels_total") == 1
    cancelled = {"status": "cancelled"}
    assert (
        value(after, "spillway_exports_finished_total", **cancelled)
        - value(before, "spillway_exports_finished_total", **cancelled)
        == 1
    )


def test_a_source_that_is_down_is_reported_not_fatal(settings, db, bucket):
    app = create_app(settings.replace(redis_url="redis://127.0.0.1:1/0"))  # nothing listens on port 1
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'spillway_metrics_source_up{source="redis"} 0.0' in text
    assert 'spillway_metrics_source_up{source="postgres"} 1.0' in text
    app.extensions["spillway"].close()
