"""Cutting an export into chunks: keyset ranges whose CSV is at least a minimum size.

Invariant: every chunk but the last has a width lower bound of at least ``min_bytes``, so
its real CSV (never smaller than the bound) clears S3's minimum part size; chunks are
contiguous ``(lo, hi]`` key ranges that together cover every matching row exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from shared.datasets import Dataset
from shared.query import buckets, high_water_mark
from shared.spec import ExportSpec

GRANULES_PER_CHUNK = 8  # buckets are 1/8 of a chunk: chunks overshoot the minimum by ~1/8 at most
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


def plan_export(conn: psycopg.Connection, dataset: Dataset, spec: ExportSpec, min_bytes: int) -> Plan:
    """Fix the high-water mark and cut the matching rows into chunks (one read-only pass).

    Args:
        conn: a connection to the source database.
        dataset: the registry entry.
        spec: the validated request.
        min_bytes: the minimum CSV size of every chunk but the last.
    """
    hwm = conn.execute(high_water_mark(dataset)).fetchone()[0]
    if hwm is None:
        return Plan(None, merge_buckets([], min_bytes))
    granule = max(1, min_bytes // GRANULES_PER_CHUNK)
    query, params = buckets(dataset, spec, hwm, granule)
    chunks = merge_buckets(conn.execute(query, params), min_bytes)
    if len(chunks) > MAX_CHUNKS:
        factor = -(-len(chunks) // MAX_CHUNKS)
        return plan_export(conn, dataset, spec, min_bytes * factor)
    return Plan(hwm, tuple(chunks))
