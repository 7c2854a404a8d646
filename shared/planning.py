"""Cutting an export into chunks: keyset ranges whose CSV is at least a minimum size.

Invariant: every chunk but the last has a width lower bound of at least ``min_bytes``, so
its real CSV (never smaller than the bound) clears S3's minimum part size; chunks are
contiguous ``(lo, hi]`` key ranges that together cover every matching row exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.datasets import Dataset
from shared.query import buckets, key_bounds
from shared.records import fetch_tuples
from shared.spec import ExportSpec

TARGET_BUCKETS = 4096  # key buckets of the first pass: fine enough for chunks of 8 MiB up to ~30 GB
MIN_BUCKET_KEYS = 64  # small ranges (the inline tier) get few buckets: each one is a query
REFINE_FACTOR = 256  # a bucket too big for the chunk size is split this many times finer
# S3 allows 10,000 parts; each chunk reserves 10 part numbers (one per attempt, for fencing).
MAX_CHUNKS = 1_000


@dataclass(frozen=True)
class Chunk:
    """A keyset range ``(lo, hi]`` (``lo`` None: from the start) with its planned size."""

    part_number: int
    lo: int | None
    hi: int | None
    rows: int
    min_bytes: int


@dataclass(frozen=True)
class Plan:
    """The chunks of an export and the high-water mark it was planned at."""

    high_water: int | None
    chunks: tuple[Chunk, ...]

    @property
    def total_rows(self) -> int:
        """Rows matched at planning time."""
        return sum(c.rows for c in self.chunks)


def merge_buckets(runs: Iterable[tuple[int, int, int]], min_bytes: int) -> list[Chunk]:
    """Greedily merge ``(hi, rows, bytes)`` runs, in key order, into chunks of >= ``min_bytes``.

    The remainder (under ``min_bytes``) joins the previous chunk, so only the last chunk can
    be small when the whole export is. An empty export gets one empty chunk (the header).
    """
    chunks: list[Chunk] = []
    lo: int | None = None
    rows = size = 0
    hi: int | None = None
    for run_hi, run_rows, run_bytes in runs:
        hi, rows, size = run_hi, rows + run_rows, size + run_bytes
        if size >= min_bytes:
            chunks.append(Chunk(len(chunks) + 1, lo, hi, rows, size))
            lo, rows, size = hi, 0, 0
    if rows:
        if chunks:
            last = chunks.pop()
            chunks.append(Chunk(last.part_number, last.lo, hi, last.rows + rows, last.min_bytes + size))
        else:
            chunks.append(Chunk(1, None, hi, rows, size))
    if not chunks:
        chunks.append(Chunk(1, None, None, 0, 0))
    return chunks


def _runs(
    conn: psycopg.Connection[Any],
    dataset: Dataset,
    spec: ExportSpec,
    lo: int | None,
    hi: int,
    base: int,
    step: int,
    max_bytes: int,
) -> list[tuple[int, int, int]]:
    """``(hi, rows, bytes)`` runs of the matching rows of ``(lo, hi]`` in key order.

    Buckets are key ranges of ``step`` keys; one holding more than ``max_bytes`` (dense or
    wide rows) is split again with a finer step, so skewed keys still give even chunks.
    """
    query, params = buckets(dataset, spec, lo, hi, base, step)
    runs: list[tuple[int, int, int]] = []
    for bucket, run_hi, rows, size in conn.execute(query, params).fetchall():
        if size > max_bytes and step > 1 and rows > 1:
            first = base + bucket * step
            sub_lo = first - 1 if lo is None else max(lo, first - 1)
            runs.extend(
                _runs(
                    conn,
                    dataset,
                    spec,
                    sub_lo,
                    min(hi, first + step - 1),
                    first,
                    max(1, step // REFINE_FACTOR),
                    max_bytes,
                )
            )
        else:
            runs.append((run_hi, rows, size))
    return runs


def filtered_key_range(spec: ExportSpec, key: str, low: int, high: int) -> tuple[int, int]:
    """Narrow ``[low, high]`` by the request's filters on the key column itself.

    The buckets then span only keys the export can hold (an ``id <= 1000000`` filter on a
    table of 5,000,000 rows plans over 1,000,000 keys, not 5,000,000).
    """
    for op, value in spec.filters.get(key, {}).items():
        if op == "gte":
            low = max(low, value)
        elif op == "gt":
            low = max(low, value + 1)
        elif op == "lte":
            high = min(high, value)
        elif op == "lt":
            high = min(high, value - 1)
        elif op == "eq":
            low, high = max(low, value), min(high, value)
        elif op == "in":
            low, high = max(low, min(value)), min(high, max(value))
    return low, high


def cut_plan(conn: psycopg.Connection[Any], dataset: Dataset, spec: ExportSpec, min_bytes: int) -> Plan:
    """Fix the high-water mark and cut the matching rows into chunks.

    One pass over the matching rows sums them into key buckets with their width lower
    bounds; :func:`merge_buckets` turns those into chunks.

    Args:
        conn: a connection to the source database.
        dataset: the registry entry.
        spec: the validated request.
        min_bytes: the minimum CSV size of every chunk but the last.
    """
    low, hwm = fetch_tuples(conn, key_bounds(dataset))[0]
    if hwm is None:
        return Plan(None, tuple(merge_buckets([], min_bytes)))
    first, last = filtered_key_range(spec, dataset.key, low, hwm)
    if first > last:
        return Plan(hwm, tuple(merge_buckets([], min_bytes)))
    step = max(MIN_BUCKET_KEYS, -(-(last - first + 1) // TARGET_BUCKETS))
    runs = _runs(conn, dataset, spec, first - 1, last, first, step, max(1, min_bytes // 2))
    chunks = merge_buckets(runs, min_bytes)
    if len(chunks) > MAX_CHUNKS:
        factor = -(-len(chunks) // MAX_CHUNKS)
        return cut_plan(conn, dataset, spec, min_bytes * factor)
    return Plan(hwm, tuple(chunks))
