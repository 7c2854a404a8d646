"""``GET /metrics``: Prometheus text with three sources, each counted once.

- **This API's own requests** (``spillway_http_*``, exports accepted, inline bytes, limits hit,
  cancels): prometheus-client counters. Under gunicorn they run in multiprocess mode: every
  process writes its values into ``PROMETHEUS_MULTIPROC_DIR`` (set by deploy/gunicorn.conf.py,
  one directory per server, emptied when it starts) and a scrape of any process adds them all up.
  These are per API server (pod): Prometheus sums them over its targets.
- **The workers' and reconciler's work** (chunks, rows, bytes, durations, retries, recoveries,
  exports finished, webhook deliveries): counters in Redis (shared/metrics.py), the same on
  every API server.
- **State, read when scraped**: exports queued and running and the age of the oldest queued
  one (two index scans of PostgreSQL's partial index on unfinished exports), RQ's queue lengths,
  chunk jobs waiting for a read slot (RQ's rate-limited set), slots in use, live workers. Also
  the same on every server. A source that does not answer is reported in
  ``spillway_metrics_source_up`` and skipped: a scrape never fails because of it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from rq import Queue, Worker

from api.extensions import resources, settings
from shared.metrics import ClusterCollector
from shared.models import ExportStatus
from shared.readslots import read_slots
from shared.records import fetch_tuples
from shared.settings import Settings

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "spillway_http_requests", "API requests answered, by route, method and status", ("endpoint", "method", "status")
)
HTTP_SECONDS = Histogram(
    "spillway_http_request_duration_seconds",
    "Time to the answer's headers (an inline export's stream continues after it)",
    ("endpoint",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EXPORTS_ACCEPTED = Counter(
    "spillway_exports_accepted", "Exports accepted, by tier (inline, async) and format", ("tier", "format")
)
INLINE_BYTES = Counter("spillway_inline_bytes", "Bytes of inline answers streamed")
LIMITED = Counter("spillway_rate_limited", "Requests refused by a limit (429), by limit", ("limit",))
CANCELS = Counter("spillway_cancels", "Exports cancelled through the API")


def _source_up(metric: GaugeMetricFamily, source: str, up: bool) -> None:
    metric.add_metric([source], 1.0 if up else 0.0)


class StateCollector(Collector):
    """Gauges read from PostgreSQL and Redis at scrape time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "spillway_metrics_source_up", "Whether a source of the state gauges answered this scrape", labels=["source"]
        )
        yield from self._postgres(up)
        yield from self._redis(up)
        yield up

    def _postgres(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        exports = GaugeMetricFamily("spillway_exports", "Exports queued or running now", labels=["status"])
        oldest = GaugeMetricFamily(
            "spillway_oldest_queued_export_age_seconds", "Age of the oldest export waiting to start (0: none)"
        )
        try:
            with resources().state_pool.connection() as conn:
                rows = fetch_tuples(
                    conn,
                    "SELECT status, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                    " FROM exports WHERE status IN (%s, %s) GROUP BY status",
                    (ExportStatus.QUEUED, ExportStatus.RUNNING),
                )
        except Exception as exc:  # noqa: BLE001 - the scrape reports the source as down instead
            log.warning("metrics: the state database did not answer (%s)", exc)
            _source_up(up, "postgres", False)
            return
        found = {status: (count, age) for status, count, age in rows}
        for status in (ExportStatus.QUEUED, ExportStatus.RUNNING):
            exports.add_metric([status.value], float(found.get(status, (0, 0))[0]))
        oldest.add_metric([], float(found.get(ExportStatus.QUEUED, (0, 0))[1]))
        _source_up(up, "postgres", True)
        yield exports
        yield oldest

    def _redis(self, up: GaugeMetricFamily) -> Iterator[Metric]:
        s, redis = self.settings, resources().redis
        queues = GaugeMetricFamily("spillway_queue_jobs", "Jobs waiting in an RQ queue", labels=["queue"])
        try:
            control = Queue(s.queue_control, connection=redis).count
            chunk_jobs = Queue(s.queue_chunks, connection=redis).count
            hooks = Queue(s.queue_webhooks, connection=redis).count
            slots = read_slots(redis, s)
            waiting_for_slot = slots.get_rate_limited_job_count()
            in_use = slots.get_allowed_job_count()
            workers = Worker.count(connection=redis)
            cluster = list(ClusterCollector(redis, s).collect())
        except RedisError as exc:
            log.warning("metrics: Redis did not answer (%s)", exc)
            _source_up(up, "redis", False)
            return
        queues.add_metric([s.queue_control], float(control))
        queues.add_metric([s.queue_chunks], float(chunk_jobs))
        queues.add_metric([s.queue_webhooks], float(hooks))
        yield queues
        yield GaugeMetricFamily(
            "spillway_chunks_waiting_for_read_slot",
            "Chunk jobs held back by the global read cap (RQ's rate-limited set)",
            value=float(waiting_for_slot),
        )
        yield GaugeMetricFamily(
            "spillway_read_slots_in_use", "Read slots of SPILLWAY_MAX_CONCURRENT_READS held now", value=float(in_use)
        )
        yield GaugeMetricFamily(
            "spillway_chunks_waiting",
            "Chunk work not yet running: queued plus waiting for a read slot (what worker autoscaling follows)",
            value=float(chunk_jobs + waiting_for_slot),
        )
        yield GaugeMetricFamily(
            "spillway_workers", "RQ workers registered (they expire without a heartbeat)", value=workers
        )
        _source_up(up, "redis", True)
        yield from cluster


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:  # one process (the Flask test client, flask run): its own counters
        registry = CollectorRegistry()
        for collector in (HTTP_REQUESTS, HTTP_SECONDS, EXPORTS_ACCEPTED, INLINE_BYTES, LIMITED, CANCELS):
            registry.register(collector)
    registry.register(StateCollector(settings()))
    return registry


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition (no key: scrapers do not carry one; keep the port private)."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))  # text, or OpenMetrics if asked
    return Response(encode(_registry()), headers={"Content-Type": content_type})


def init_app(app: Flask) -> None:
    """Count every request by its route (the rule, not the path: a bounded set of series)."""

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"  # a client may send any word
        HTTP_REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            HTTP_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        return response
