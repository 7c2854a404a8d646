"""Cluster-wide figures of the workers and the reconciler, kept in Redis for the API's /metrics.

Invariant: a figure recorded here is a counter (or a histogram's cumulative buckets) in one
Redis hash, ``<queue prefix>:metrics``, incremented by whichever process did the work. Workers
fork a new horse for every job, and run on many hosts: per-process counters would die with each
horse and be scattered over the hosts, so each horse adds to the shared hash instead (one
pipelined round trip per chunk) and any API process exposes the totals. Recording is best
effort: a Redis error loses the figure, never the work (logged once a minute).

These series are the same on every API replica that serves them: scrape one, or aggregate
them with ``max`` rather than ``sum`` (README, Operations). Label values are fixed words from
this codebase (never user input), so no field separator can appear in them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from shared.settings import Settings

log = logging.getLogger(__name__)

# Seconds: a chunk is planned to take a few seconds; the tail shows throttled or stuck ones.
DURATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_WARN_EVERY_S = 60.0
_last_warning = 0.0


@dataclass(frozen=True)
class Family:
    """One metric: its name (without ``_total``), kind, help and label names."""

    name: str
    kind: str  # "counter" or "histogram"
    help: str
    labels: tuple[str, ...]


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "spillway_chunks",
            "counter",
            "Chunk attempts by how they ended: done, handed_back (worker shutdown), stopped (cancel),"
            " rejected (fenced out), failed",
            ("outcome",),
        ),
        Family("spillway_rows_exported", "counter", "Rows of the chunks recorded", ("format",)),
        Family("spillway_bytes_exported", "counter", "Bytes of the chunks recorded (as stored)", ("format",)),
        Family(
            "spillway_chunk_duration_seconds",
            "histogram",
            "Time of a recorded chunk: read, encode, upload",
            ("format",),
        ),
        Family("spillway_retries", "counter", "Failed jobs that RQ will retry, by step", ("step",)),
        Family(
            "spillway_recoveries",
            "counter",
            "Jobs the reconciler replaced, by cause: lease_expired, job_lost, process_died, planner_lost,"
            " planner_died, finalizer_lost, finalizer_died",
            ("cause",),
        ),
        Family("spillway_exports_finished", "counter", "Exports that ended, by status", ("status",)),
        Family(
            "spillway_webhook_deliveries",
            "counter",
            "Webhook delivery attempts by outcome: delivered, retry, failed, refused",
            ("outcome",),
        ),
    )
}


def _key(settings: Settings) -> str:
    return f"{settings.queue_prefix}:metrics"


def _field(name: str, labels: Mapping[str, str]) -> str:
    return name + "|" + ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _check(name: str, labels: Mapping[str, str]) -> None:
    family = FAMILIES[name]  # a KeyError here is a programming error: every name is declared
    if set(labels) != set(family.labels):
        raise ValueError(f"{name} takes labels {family.labels}, got {sorted(labels)}")


def _lost(exc: RedisError) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning > _WARN_EVERY_S:
        _last_warning = now
        log.warning("metrics not recorded: Redis is unavailable (%s)", exc)


def count(redis: Redis, settings: Settings, name: str, amount: float = 1, **labels: str) -> None:
    """Add ``amount`` to the counter ``name`` with these labels."""
    _check(name, labels)
    try:
        redis.hincrbyfloat(_key(settings), _field(name, labels), amount)
    except RedisError as exc:
        _lost(exc)


def record_chunk(redis: Redis, settings: Settings, fmt: str, rows: int, size: int, seconds: float) -> None:
    """A recorded chunk: its outcome, rows, bytes and duration, in one round trip."""
    labels = {"format": fmt}
    pipe = redis.pipeline(transaction=False)
    key = _key(settings)
    pipe.hincrbyfloat(key, _field("spillway_chunks", {"outcome": "done"}), 1)
    pipe.hincrbyfloat(key, _field("spillway_rows_exported", labels), rows)
    pipe.hincrbyfloat(key, _field("spillway_bytes_exported", labels), size)
    name = "spillway_chunk_duration_seconds"
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            pipe.hincrbyfloat(key, _field(f"{name}_bucket", {**labels, "le": str(bound)}), 1)
    pipe.hincrbyfloat(key, _field(f"{name}_count", labels), 1)
    pipe.hincrbyfloat(key, _field(f"{name}_sum", labels), seconds)
    try:
        pipe.execute()
    except RedisError as exc:
        _lost(exc)


def _parse(field: str) -> tuple[str, dict[str, str]]:
    name, _, text = field.partition("|")
    return name, dict(pair.split("=", 1) for pair in text.split(",") if pair)


class ClusterCollector(Collector):
    """Exposes the hash as Prometheus counters and histograms (an empty family until recorded)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis, self.settings = redis, settings

    def collect(self) -> Iterator[Metric]:
        raw = self.redis.hgetall(_key(self.settings))
        values: dict[str, list[tuple[dict[str, str], float]]] = {}
        for field, number in raw.items():
            name, labels = _parse(field.decode() if isinstance(field, bytes) else field)
            values.setdefault(name, []).append((labels, float(number)))
        for family in FAMILIES.values():
            if family.kind == "counter":
                metric = CounterMetricFamily(family.name, family.help, labels=family.labels)
                for labels, amount in sorted(values.get(family.name, []), key=lambda lv: sorted(lv[0].items())):
                    metric.add_metric([labels[n] for n in family.labels], amount)
                yield metric
            else:
                yield self._histogram(family, values)

    @staticmethod
    def _histogram(family: Family, values: Mapping[str, list[tuple[dict[str, str], float]]]) -> Metric:
        metric = HistogramMetricFamily(family.name, family.help, labels=family.labels)
        sums = {tuple(lb[n] for n in family.labels): v for lb, v in values.get(f"{family.name}_sum", [])}
        counts = {tuple(lb[n] for n in family.labels): v for lb, v in values.get(f"{family.name}_count", [])}
        buckets: dict[tuple[str, ...], dict[float, float]] = {}
        for labels, value in values.get(f"{family.name}_bucket", []):
            buckets.setdefault(tuple(labels[n] for n in family.labels), {})[float(labels["le"])] = value
        for key in sorted(counts):
            seen = buckets.get(key, {})
            cumulative = [(str(bound), seen.get(bound, 0.0)) for bound in DURATION_BUCKETS]
            metric.add_metric(list(key), cumulative + [("+Inf", counts[key])], sum_value=sums.get(key, 0.0))
        return metric
