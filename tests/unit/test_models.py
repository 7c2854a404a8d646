"""The export state machine as declared: statuses, allowed moves, and what the SQL guards use."""

from __future__ import annotations

import importlib

import pytest

from shared.models import (
    CHUNK_TRANSITIONS,
    ENDINGS,
    EXPORT_TRANSITIONS,
    UNFINISHED,
    ChunkStatus,
    ExportStatus,
    chunk_sources,
    export_sources,
)
from shared.queue import JOB_PATHS


def test_every_status_has_its_transitions_declared():
    assert set(EXPORT_TRANSITIONS) == set(ExportStatus)
    assert set(CHUNK_TRANSITIONS) == set(ChunkStatus)


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (ExportStatus.RUNNING, ["queued"]),
        (ExportStatus.COMPLETED, ["running"]),
        (ExportStatus.FAILED, ["queued", "running"]),
        (ExportStatus.CANCELLED, ["queued", "running"]),
        (ExportStatus.EXPIRED, ["completed"]),
        (ExportStatus.QUEUED, []),  # nothing goes back to the queue
    ],
)
def test_export_sources_are_the_declared_edges(target, sources):
    assert export_sources(target) == sources


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (ChunkStatus.RUNNING, ["pending", "running"]),  # a claim, or a take-over of an expired lease
        (ChunkStatus.PENDING, ["running"]),  # a hand-back
        (ChunkStatus.DONE, ["running"]),
        (ChunkStatus.CANCELLED, ["pending", "running"]),
    ],
)
def test_chunk_sources_are_the_declared_edges(target, sources):
    assert chunk_sources(target) == sources


def test_finished_statuses_have_no_way_back_to_work():
    for status in ExportStatus:
        assert status.finished == (status not in UNFINISHED)
        if status.finished:
            assert not EXPORT_TRANSITIONS[status] & UNFINISHED, status
    assert {s for s in EXPORT_TRANSITIONS[ExportStatus.RUNNING]} == ENDINGS
    assert not CHUNK_TRANSITIONS[ChunkStatus.DONE] and not CHUNK_TRANSITIONS[ChunkStatus.CANCELLED]


def test_statuses_compare_and_serialise_as_their_strings():
    assert ExportStatus.QUEUED == "queued" and f"{ChunkStatus.DONE}" == "done"
    assert ExportStatus("expired") is ExportStatus.EXPIRED


@pytest.mark.parametrize("path", JOB_PATHS)
def test_every_enqueued_job_path_resolves_to_a_function(path):
    module, _, name = path.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name, None)), path
