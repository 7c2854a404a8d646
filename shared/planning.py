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

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from shared.datasets import Dataset
from shared.query import SAMPLE_BY_PAGES, bucket_sums, key_bounds, sample_keys, sample_units, widths_in_order
from shared.records import fetch_tuples
from shared.spec import ExportSpec

TARGET_BUCKETS = 4096  # ranges of the first pass: fine enough for chunks of 8 MiB up to ~30 GB
SAMPLE_KEYS = TARGET_BUCKETS  # keys sampled to find the boundaries (one per sampled page of a table)
REFINE_ABOVE = 2  # a range of more than this many chunks' worth is cut again from its rows
RUN_SPLIT = 8  # ... into runs of min_bytes / RUN_SPLIT
# S3 allows 10,000 parts; each chunk reserves 10 part numbers (one per attempt, for fencing).
MAX_CHUNKS = 1_000
# An XLSX sheet's entry uses ZIP64 sizes when its XML may come near 4 GiB: estimated from the rows'
# CSV lower bound plus this much markup per cell (an inline string's is 59 bytes), with 2x margin.
XML_BYTES_PER_CELL = 64
ZIP64_ABOVE = 2 * 1024**3

# A streamed plan sums the sampled buckets in batches, this many first, then twice as many each
# time up to MAX_BATCH: the first chunks are cut after a few hundred thousand rows at most.
FIRST_BATCH = 64
MAX_BATCH = 1024
PAGE_BYTES = 8192  # PostgreSQL's block size, as built by default
# A fresh streamed plan of a table of more than LEAD_ABOVE pages cuts its first chunk from a
# small sample (buckets of about min_bytes / LEAD_SPLIT by the heap's size; at least
# LEAD_MIN_KEYS pages, a few milliseconds), then samples the rest: the whole sample reads
# about 4,300 pages of a big table, 75-133 ms before any chunk could start. Not worth it when
# the small sample would be a quarter of the whole (heaps past 256 x min_bytes).
LEAD_SPLIT = 4
LEAD_MIN_KEYS = 64
LEAD_ABOVE = 4 * SAMPLE_KEYS

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
    layout: dict[str, Any] | None = field(default=None, compare=False)  # an XLSX chunk's place (shared.formats)


@dataclass(frozen=True)
class Plan:
    """The chunks of an export and the high-water mark it was planned at."""

    high_water: str | None
    chunks: tuple[Chunk, ...]

    @property
    def total_rows(self) -> int:
        """Rows matched at planning time."""
        return sum(c.rows for c in self.chunks)


class ChunkCutter:
    """Chunks cut greedily from ``(hi, rows, bytes)`` runs fed in key order: a chunk is complete
    as soon as its runs reach ``min_bytes``, so chunks can start before the rest is planned.

    Args:
        lo: where the first chunk starts (exclusive; None: from the first key).
        first_part: the first chunk's part number.
    """

    def __init__(self, min_bytes: int, lo: str | None = None, first_part: int = 1) -> None:
        self.min_bytes, self.start, self.next_part = min_bytes, lo, first_part
        self.hi: str | None = None
        self.rows = self.size = 0  # of the chunk being cut (the remainder, at the end)

    def feed(self, runs: Iterable[Run]) -> list[Chunk]:
        """The chunks these runs complete."""
        chunks = []
        for run_hi, run_rows, run_bytes in runs:
            self.hi, self.rows, self.size = run_hi, self.rows + run_rows, self.size + run_bytes
            if self.size >= self.min_bytes:
                chunks.append(Chunk(self.next_part, self.start, self.hi, self.rows, self.size))
                self.next_part += 1
                self.start, self.rows, self.size = self.hi, 0, 0
        return chunks

    def remainder(self) -> Chunk | None:
        """The rows after the last complete chunk, as a chunk of their own (None: no rows)."""
        return Chunk(self.next_part, self.start, self.hi, self.rows, self.size) if self.rows else None


def merge_buckets(runs: Iterable[Run], min_bytes: int, lo: str | None = None, first_part: int = 1) -> list[Chunk]:
    """Greedily merge ``(hi, rows, bytes)`` runs, in key order, into chunks of >= ``min_bytes``.

    The remainder (under ``min_bytes``) joins the previous chunk, so only the last chunk can
    be small when the whole export is. An empty export gets one empty chunk (the header).

    Args:
        lo: where the first chunk starts (exclusive; None: from the first key).
        first_part: the first chunk's part number.
    """
    cutter = ChunkCutter(min_bytes, lo, first_part)
    chunks = cutter.feed(runs)
    rest = cutter.remainder()
    if rest is not None and chunks:
        last = chunks.pop()
        rest = Chunk(last.part_number, last.lo, rest.hi, last.rows + rest.rows, last.min_bytes + rest.min_bytes)
    if rest is not None:
        chunks.append(rest)
    return chunks or [Chunk(first_part, lo, None, 0, 0)]


def split_runs_at(
    conn: psycopg.Connection[Any], dataset: Dataset, spec: ExportSpec, runs: list[Run], every: int
) -> list[list[Run]]:
    """Cut the runs into segments of exactly ``every`` rows (the last one: the rest).

    A run that a cut falls inside is read row by row (its keys in order) and split at the
    exact row; runs are at most a few chunks' worth, so little is read.
    """
    segments: list[list[Run]] = [[]]
    done = 0  # rows in the finished segments and the current one
    lo: str | None = None
    for run in runs:
        run_hi, run_rows, run_bytes = run
        if done + run_rows <= (len(segments)) * every:  # the run fits the current segment
            segments[-1].append(run)
            done += run_rows
            if done == len(segments) * every:
                segments.append([])
        else:
            rows = size = 0
            query, params = widths_in_order(dataset, spec, lo, run_hi)
            with conn.cursor() as cur:
                for key, width in cur.stream(query, params):
                    rows, size, done = rows + 1, size + width, done + 1
                    if done == len(segments) * every:
                        segments[-1].append((key, rows, size))
                        segments.append([])
                        rows = size = 0
            if rows:
                segments[-1].append((run_hi, rows, size))
        lo = run_hi
    if not segments[-1] and len(segments) > 1:
        segments.pop()  # the rows ended exactly at a cut
    return segments


def merge_segments(segments: Sequence[list[Run]], min_bytes: int, columns: int, zip64: bool = True) -> list[Chunk]:
    """Chunks of each segment (an XLSX sheet) on their own, with their place in the workbook."""
    chunks: list[Chunk] = []
    lo: str | None = None
    for sheet, runs in enumerate(segments, 1):
        merged = merge_buckets(runs, min_bytes, lo, len(chunks) + 1)
        xml_estimate = (
            sum(size for _, _, size in runs) + sum(rows for _, rows, _ in runs) * columns * XML_BYTES_PER_CELL
        )
        for i, chunk in enumerate(merged):
            layout = {
                "sheet": sheet,
                "first": i == 0,
                "last": i == len(merged) - 1,
                "zip64": xml_estimate > ZIP64_ABOVE,
            }
            chunks.append(Chunk(chunk.part_number, chunk.lo, chunk.hi, chunk.rows, chunk.min_bytes, layout))
        lo = merged[-1].hi
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


def bucket_runs(
    conn: psycopg.Connection[Any],
    dataset: Dataset,
    spec: ExportSpec,
    bounds: list[str],
    low: str | None,
    lo: str | None,
    min_bytes: int,
) -> list[Run]:
    """The runs of the buckets ending at ``bounds``, the first from ``lo`` (exclusive) or, with
    ``lo`` None, from the smallest key ``low``: each bucket's exact sums (one index range scan
    each), or, for a bucket the sample left much bigger than a chunk, runs cut from its rows."""
    first = lo if lo is not None else low
    assert first is not None
    sums = {i: (hi, rows, size) for i, hi, rows, size in bucket_sums(conn, dataset, spec, first, bounds, lo is None)}
    runs: list[Run] = []
    for i, bound in enumerate(bounds):
        if i in sums:
            run_hi, rows, size = sums[i]
            if size > REFINE_ABOVE * min_bytes and rows > 1:
                runs.extend(fine_runs(conn, dataset, spec, lo, bound, max(1, min_bytes // RUN_SPLIT)))
            else:
                runs.append((run_hi, rows, size))
        lo = bound
    return runs


def cut_plan(
    conn: psycopg.Connection[Any],
    dataset: Dataset,
    spec: ExportSpec,
    min_bytes: int,
    sheet_rows: int | None = None,
    whole_up_to: int = 0,
) -> Plan:
    """Fix the high-water mark and cut the matching rows into chunks.

    Args:
        conn: a connection to the source database.
        dataset: the registry entry.
        spec: the validated request.
        min_bytes: the minimum CSV size of every chunk but the last.
        sheet_rows: cut at every this many rows too, and give each chunk its sheet (XLSX).
        whole_up_to: an export of at most this many rows is one chunk (per sheet), as the
            inline tier writes it: a compressed file's bytes depend on where chunks end.
    """
    low, hwm = fetch_tuples(conn, key_bounds(dataset))[0]
    if hwm is None:
        return Plan(None, tuple(_layout([[]], min_bytes, spec, sheet_rows)))
    keys = sample_keys(conn, dataset, spec, hwm, SAMPLE_KEYS, sample_units(conn, dataset))
    runs = bucket_runs(conn, dataset, spec, boundaries(keys, hwm), low, None, min_bytes)
    whole = sum(rows for _, rows, _ in runs) <= whole_up_to
    if whole:
        min_bytes = sum(size for _, _, size in runs) + 1
    segments = split_runs_at(conn, dataset, spec, runs, sheet_rows) if sheet_rows else [runs]
    chunks = _layout(segments, min_bytes, spec, sheet_rows, zip64=not whole)
    if len(chunks) > MAX_CHUNKS:
        # Every chunk but the last of a segment reaches the threshold: at most MAX_CHUNKS plus one per sheet.
        total = sum(size for _, _, size in runs)
        chunks = _layout(segments, max(min_bytes, -(-total // (MAX_CHUNKS - len(segments)))), spec, sheet_rows, True)
    return Plan(hwm, tuple(chunks))


def _layout(
    segments: list[list[Run]], min_bytes: int, spec: ExportSpec, sheet_rows: int | None, zip64: bool = True
) -> list[Chunk]:
    """Chunks of each sheet (XLSX) or of the whole; ``zip64`` False: never ZIP64 sizes (an
    export of inline size, which the inline tier writes without them)."""
    if sheet_rows:
        return merge_segments(segments, min_bytes, len(spec.columns), zip64)
    return merge_buckets(segments[0], min_bytes)


def streams(conn: psycopg.Connection[Any], dataset: Dataset, min_bytes: int) -> bool:
    """Whether a plain (CSV, JSON Lines) export of ``dataset`` is planned as a stream
    (:func:`stream_plan`): a table or materialized view, sampled by pages, whose heap is at most
    ``MAX_CHUNKS * min_bytes`` (16 GB with the default part size). Its file then stays far
    below the ~5,000 ``min_bytes`` (80 GB) that :func:`chunk_budget` keeps within ``MAX_CHUNKS``; anything else is
    planned whole, which sizes its chunks from the total."""
    if dataset.relation_kind not in SAMPLE_BY_PAGES:
        return False
    return sample_units(conn, dataset) * PAGE_BYTES <= MAX_CHUNKS * min_bytes


def chunk_budget(chunks: int) -> int:
    """How many times ``min_bytes`` the next chunk of a streamed plan reaches once it has
    ``chunks`` chunks: 1, then twice as much each time half the part numbers left are used
    (at 500, 750, 875 ... chunks), so a plan whose total is not known ahead still fits."""
    factor, used = 1, MAX_CHUNKS // 2
    while chunks >= used and MAX_CHUNKS - used > 1:
        factor, used = factor * 2, used + (MAX_CHUNKS - used) // 2
    return factor


def stream_plan(
    conn: psycopg.Connection[Any],
    dataset: Dataset,
    spec: ExportSpec,
    min_bytes: int,
    high_water: str | None,
    lo: str | None = None,
    first_part: int = 1,
) -> Iterator[list[Chunk]]:
    """Cut the matching rows of ``(lo, high_water]`` into chunks, yielded in key order as soon
    as each batch of buckets is summed: the first chunks can run while the rest is planned.

    The same sample and sums as :func:`cut_plan`, in batches (``FIRST_BATCH`` buckets, then
    doubling); a big table's first chunk comes from a small sample first (``LEAD_SPLIT``).
    Every chunk but the last reaches ``min_bytes`` times :func:`chunk_budget`; the
    last holds the remainder, however small (S3's last part may be). A plan with no rows is
    one empty chunk (the header). Called again with the last chunk's ``hi`` and the next part
    number, it goes on where an interrupted plan stopped.
    """
    low = None
    if lo is None:
        low = fetch_tuples(conn, key_bounds(dataset))[0][0]
    if high_water is None or (lo is None and low is None):
        if first_part == 1:
            yield [Chunk(1, None, None, 0, 0)]
        return
    units = sample_units(conn, dataset)
    cutter = ChunkCutter(min_bytes, lo, first_part)
    previous = lo
    lead_keys = max(LEAD_MIN_KEYS, -(-LEAD_SPLIT * units * PAGE_BYTES // min_bytes))
    if lo is None and units > LEAD_ABOVE and lead_keys <= SAMPLE_KEYS // 4:
        lead = boundaries(sample_keys(conn, dataset, spec, high_water, lead_keys, units), high_water, lead_keys)
        step = LEAD_SPLIT + 1  # buckets a chunk takes, by the heap's size, and one more
        for start in range(0, len(lead), step):
            part = lead[start : start + step]
            chunks = cutter.feed(bucket_runs(conn, dataset, spec, part, low, previous, min_bytes))
            previous = part[-1]
            if chunks:
                yield chunks
                break
    bounds: list[str] = []
    if previous != high_water:
        bounds = boundaries(
            sample_keys(conn, dataset, spec, high_water, SAMPLE_KEYS, units, after=previous), high_water
        )
    start, batch = 0, FIRST_BATCH
    while start < len(bounds):
        part = bounds[start : start + batch]
        cutter.min_bytes = min_bytes * chunk_budget(cutter.next_part - 1)
        chunks = cutter.feed(bucket_runs(conn, dataset, spec, part, low, previous, min_bytes))
        if chunks:
            yield chunks
        start, batch, previous = start + len(part), min(2 * batch, MAX_BATCH), part[-1]
    rest = cutter.remainder()
    if rest is not None:
        yield [rest]
    elif cutter.next_part == 1:
        yield [Chunk(1, None, None, 0, 0)]
