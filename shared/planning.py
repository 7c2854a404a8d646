"""Cutting an export into chunks: key ranges whose CSV is at least a minimum size.

Invariant: every chunk but the last has a width lower bound of at least ``min_bytes``, so
its real CSV (never smaller than the bound) clears S3's minimum part size; chunks are
contiguous ``(lo, hi]`` key ranges that together cover every matching row exactly once.

Ranges are cut from the keys themselves, never by arithmetic on key values, so every key type
(integers, uuid, text, dates, timestamps) and every distribution (dense, sparse, skewed) is
cut the same way: boundaries come from a sample of the rows' keys (``TABLESAMPLE SYSTEM``, a
few milliseconds; a view is sampled by a scan), the matching rows between consecutive
boundaries are summed exactly (one index range scan each), and a range the sample left much
bigger than a chunk is cut again from its rows. Boundaries travel as text and are cast back to the key's type, so they
compare in the key column's own collation — the one its unique index has, which the chunk
queries' ``ORDER BY`` and range conditions use too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.datasets import Dataset
from shared.query import bucket_sums, key_bounds, sample_keys, sample_units, widths_in_order
from shared.records import fetch_tuples
from shared.spec import ExportSpec

TARGET_BUCKETS = 4096  # ranges of the first pass: fine enough for chunks of 8 MiB up to ~30 GB
SAMPLE_KEYS = TARGET_BUCKETS  # keys sampled to find the boundaries (one per sampled page of a table)
REFINE_ABOVE = 2  # a range of more than this many chunks' worth is cut again from its rows
RUN_SPLIT = 8  # ... into runs of min_bytes / RUN_SPLIT
# S3 allows 10,000 parts; each chunk reserves 10 part numbers (one per attempt, for fencing).
MAX_CHUNKS = 1_000

Run = tuple[str, int, int]  # (last key of the run, rows, width lower bound of its rows)


@dataclass(frozen=True)
class Chunk:
    """A key range ``(lo, hi]`` (``lo`` None: from the start) with its planned size.

    Keys are in their PostgreSQL text form, cast back to the key's type in every query.
    """

    part_number: int
    lo: str | None
    hi: str | None
    rows: int
    min_bytes: int


@dataclass(frozen=True)
class Plan:
    """The chunks of an export and the high-water mark it was planned at."""

    high_water: str | None
    chunks: tuple[Chunk, ...]

    @property
    def total_rows(self) -> int:
        """Rows matched at planning time."""
        return sum(c.rows for c in self.chunks)


def merge_buckets(runs: Iterable[Run], min_bytes: int) -> list[Chunk]:
    """Greedily merge ``(hi, rows, bytes)`` runs, in key order, into chunks of >= ``min_bytes``.

    The remainder (under ``min_bytes``) joins the previous chunk, so only the last chunk can
    be small when the whole export is. An empty export gets one empty chunk (the header).
    """
    chunks: list[Chunk] = []
    lo: str | None = None
    rows = size = 0
    hi: str | None = None
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


def boundaries(keys: list[str], high: str, target: int = TARGET_BUCKETS) -> list[str]:
    """At most ``target`` + 1 ascending boundaries from sorted, distinct sampled keys, ending
    with the high-water mark ``high``."""
    step = max(1, -(-len(keys) // target))
    chosen = keys[step - 1 :: step]
    if chosen and chosen[-1] == high:
        chosen.pop()
    return [*chosen, high]


def fine_runs(
    conn: psycopg.Connection[Any], dataset: Dataset, spec: ExportSpec, lo: str | None, hi: str, run_bytes: int
) -> list[Run]:
    """Runs of at least ``run_bytes`` cut from the matching rows of ``(lo, hi]`` one by one
    (a range the sample left too big: rare, and only that range is read)."""
    runs: list[Run] = []
    rows = size = 0
    key: str | None = None
    query, params = widths_in_order(dataset, spec, lo, hi)
    with conn.cursor() as cur:
        for key, width in cur.stream(query, params):
            rows, size = rows + 1, size + width
            if size >= run_bytes:
                runs.append((key, rows, size))
                rows = size = 0
    if rows and key is not None:
        runs.append((key, rows, size))
    return runs


def cut_plan(conn: psycopg.Connection[Any], dataset: Dataset, spec: ExportSpec, min_bytes: int) -> Plan:
    """Fix the high-water mark and cut the matching rows into chunks.

    Args:
        conn: a connection to the source database.
        dataset: the registry entry.
        spec: the validated request.
        min_bytes: the minimum CSV size of every chunk but the last.
    """
    low, hwm = fetch_tuples(conn, key_bounds(dataset))[0]
    if hwm is None:
        return Plan(None, tuple(merge_buckets([], min_bytes)))
    keys = sample_keys(conn, dataset, spec, hwm, SAMPLE_KEYS, sample_units(conn, dataset))
    bounds = boundaries(keys, hwm)
    runs: list[Run] = []
    lo: str | None = None
    sums = {i: (run_hi, rows, size) for i, run_hi, rows, size in bucket_sums(conn, dataset, spec, low, bounds)}
    for i, bound in enumerate(bounds):
        if i in sums:
            run_hi, rows, size = sums[i]
            if size > REFINE_ABOVE * min_bytes and rows > 1:
                runs.extend(fine_runs(conn, dataset, spec, lo, bound, max(1, min_bytes // RUN_SPLIT)))
            else:
                runs.append((run_hi, rows, size))
        lo = bound
    chunks = merge_buckets(runs, min_bytes)
    if len(chunks) > MAX_CHUNKS:
        # Every chunk but the last reaches the threshold, so there are at most MAX_CHUNKS.
        total = sum(size for _, _, size in runs)
        chunks = merge_buckets(runs, max(min_bytes, -(-total // MAX_CHUNKS)))
    return Plan(hwm, tuple(chunks))
