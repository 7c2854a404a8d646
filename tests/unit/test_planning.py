"""Cutting runs into chunks: every non-last chunk reaches the minimum; nothing is lost or doubled."""

from __future__ import annotations

import random

import pytest

from shared.chunks_repo import ATTEMPT_SLOTS, upload_part_number
from shared.planning import MAX_CHUNKS, ChunkCutter, chunk_budget, merge_buckets

MIN = 8 * 2**20


def random_runs(rng: random.Random, count: int) -> list[tuple[int, int, int]]:
    """Key-ordered runs with very uneven sizes: tiny, ordinary and huge."""
    key, runs = 0, []
    for _ in range(count):
        key += rng.randint(1, 1000)
        size = rng.choice([rng.randint(1, 100), rng.randint(10_000, 2 * 2**20), rng.randint(5 * 2**20, 40 * 2**20)])
        runs.append((key, rng.randint(1, 500), size))
    return runs


@pytest.mark.parametrize("seed", range(20))
def test_non_last_chunks_reach_the_minimum_and_cover_every_run_once(seed):
    runs = random_runs(random.Random(seed), 300)
    chunks = merge_buckets(runs, MIN)
    assert all(c.min_bytes >= MIN for c in chunks[:-1])
    assert [c.part_number for c in chunks] == list(range(1, len(chunks) + 1))
    assert chunks[0].lo is None and chunks[-1].hi == runs[-1][0]
    assert all(a.hi == b.lo for a, b in zip(chunks, chunks[1:], strict=False))  # contiguous (lo, hi] ranges
    assert sum(c.rows for c in chunks) == sum(r[1] for r in runs)
    assert sum(c.min_bytes for c in chunks) == sum(r[2] for r in runs)


def test_small_and_empty_exports():
    assert [(c.lo, c.hi, c.rows) for c in merge_buckets([(5, 3, 100)], MIN)] == [(None, 5, 3)]
    empty = merge_buckets([], MIN)
    assert len(empty) == 1 and empty[0].rows == 0 and empty[0].hi is None


def test_a_small_remainder_joins_the_last_chunk():
    chunks = merge_buckets([(10, 1, MIN), (20, 1, 10)], MIN)
    assert [(c.lo, c.hi, c.min_bytes) for c in chunks] == [(None, 20, MIN + 10)]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("batch", [1, 7, 300])
def test_a_streamed_cut_completes_chunks_as_runs_arrive_in_batches(seed, batch):
    runs = random_runs(random.Random(seed), 300)
    cutter = ChunkCutter(MIN)
    chunks = []
    for start in range(0, len(runs), batch):
        done = cutter.feed(runs[start : start + batch])
        assert all(c.min_bytes >= MIN for c in done)  # complete as soon as they reach the minimum
        chunks += done
    rest = cutter.remainder()
    whole = merge_buckets(runs, MIN)
    # The same chunks as the whole plan's, but its remainder is a (small) last chunk of its own.
    if rest is None:
        assert chunks == whole
    elif not chunks:
        assert [rest] == whole
    else:
        assert rest.min_bytes < MIN and chunks[:-1] == whole[:-1]
        assert (chunks[-1].lo, rest.hi) == (whole[-1].lo, whole[-1].hi) and rest.lo == chunks[-1].hi
        assert sum(c.rows for c in [*chunks, rest]) == sum(r[1] for r in runs)
        assert [c.part_number for c in [*chunks, rest]] == list(range(1, len(chunks) + 2))


def test_a_streamed_cut_goes_on_after_a_given_chunk():
    runs = [(10, 1, MIN), (20, 1, MIN), (30, 1, 5)]
    first = ChunkCutter(MIN).feed(runs)
    again = ChunkCutter(MIN, lo=first[0].hi, first_part=2).feed(runs[1:])
    assert first[1:] == again


def test_chunk_budget_keeps_any_streamed_plan_within_the_part_numbers():
    assert [chunk_budget(n) for n in (0, 499, 500, 749, 750, 875)] == [1, 1, 2, 2, 4, 8]
    assert all(chunk_budget(n) <= chunk_budget(n + 1) for n in range(2 * MAX_CHUNKS))
    # Chunks cut at the budget from runs of 1 MiB: how many a file of each size takes.
    for total_gb in (1, 8, 30, 36):
        cutter, chunks, runs = ChunkCutter(MIN), 0, total_gb * 1024
        for key in range(runs):
            cutter.min_bytes = MIN * chunk_budget(chunks)
            chunks += len(cutter.feed([(key, 1, 2**20)]))
        assert chunks + (cutter.remainder() is not None) <= MAX_CHUNKS, total_gb


def test_each_attempt_writes_its_own_s3_part():
    seen = {upload_part_number(n, a) for n in range(1, 1001) for a in range(1, ATTEMPT_SLOTS + 1)}
    assert len(seen) == 1000 * ATTEMPT_SLOTS and max(seen) == 10_000 and min(seen) == 1
    assert upload_part_number(3, 1) < upload_part_number(3, 2) < upload_part_number(4, 1)  # part order kept
    with pytest.raises(ValueError):
        upload_part_number(1, ATTEMPT_SLOTS + 1)


def test_boundaries_are_ascending_sampled_keys_ending_with_the_high_water_mark():
    from shared.planning import boundaries

    keys = [f"k{n:05d}" for n in range(10_000)]
    bounds = boundaries(keys, "k99999", target=100)
    assert len(bounds) <= 101 and bounds[-1] == "k99999"
    assert bounds == sorted(set(bounds))  # ascending, no repeats
    assert boundaries([], "z") == ["z"]  # nothing sampled (a small table): one range up to the mark
    assert boundaries(["a", "m", "z"], "z", target=10) == ["a", "m", "z"]  # the mark is not repeated


def test_sheets_are_merged_on_their_own_with_their_place_in_the_workbook():
    from shared.planning import merge_segments

    segments = [[(10, 5, MIN), (20, 5, MIN)], [(30, 5, 1)]]  # two chunks in sheet 1, one small in sheet 2
    chunks = merge_segments(segments, MIN, columns=3)
    assert [(c.part_number, c.lo, c.hi, c.rows) for c in chunks] == [(1, None, 10, 5), (2, 10, 20, 5), (3, 20, 30, 5)]
    assert [c.layout for c in chunks] == [
        {"sheet": 1, "first": True, "last": False, "zip64": False},
        {"sheet": 1, "first": False, "last": True, "zip64": False},
        {"sheet": 2, "first": True, "last": True, "zip64": False},
    ]
    huge = merge_segments([[(10, 2_000_000, MIN)]], MIN, columns=40)  # 2M rows x 40 cells: may pass 4 GiB
    assert huge[0].layout["zip64"] is True
