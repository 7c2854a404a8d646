"""The export state machine and the typed rows of the state database.

Invariant: the statuses of an export and of a chunk, and the moves allowed between them, are
declared here once. Every status write in :mod:`shared.exports_repo` names its target and
takes the statuses it may leave from :func:`export_sources` / :func:`chunk_sources`, so no
statement can move a row along an edge that is not declared below.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class ExportStatus(StrEnum):
    """Where an export is: ``queued → running → completed | failed | cancelled``, then ``expired``."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def finished(self) -> bool:
        """Whether nothing of the export runs any more (completed, failed, cancelled, expired)."""
        return self not in UNFINISHED


class ChunkStatus(StrEnum):
    """Where a chunk (one multipart part) is: ``pending → running → done``, or ``cancelled``."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


E, C = ExportStatus, ChunkStatus

EXPORT_TRANSITIONS: Mapping[ExportStatus, frozenset[ExportStatus]] = {
    E.QUEUED: frozenset({E.RUNNING, E.FAILED, E.CANCELLED}),  # planned, or ended before it ran
    E.RUNNING: frozenset({E.COMPLETED, E.FAILED, E.CANCELLED}),
    E.COMPLETED: frozenset({E.EXPIRED}),  # its object deleted after the retention time
    E.FAILED: frozenset(),
    E.CANCELLED: frozenset(),
    E.EXPIRED: frozenset(),
}

CHUNK_TRANSITIONS: Mapping[ChunkStatus, frozenset[ChunkStatus]] = {
    C.PENDING: frozenset({C.RUNNING, C.CANCELLED}),  # claimed by an attempt, or its export ended
    # running → running: a new attempt takes over an expired lease; → pending: handed back.
    C.RUNNING: frozenset({C.RUNNING, C.PENDING, C.DONE, C.CANCELLED}),
    C.DONE: frozenset(),
    C.CANCELLED: frozenset(),
}

UNFINISHED: frozenset[ExportStatus] = frozenset({E.QUEUED, E.RUNNING})  # work may still happen
ENDINGS: frozenset[ExportStatus] = frozenset({E.COMPLETED, E.FAILED, E.CANCELLED})  # what a run ends in


def export_sources(target: ExportStatus) -> list[str]:
    """The statuses an export may move to ``target`` from (a query parameter)."""
    return sorted(s.value for s, targets in EXPORT_TRANSITIONS.items() if target in targets)


def chunk_sources(target: ChunkStatus) -> list[str]:
    """The statuses a chunk may move to ``target`` from (a query parameter)."""
    return sorted(s.value for s, targets in CHUNK_TRANSITIONS.items() if target in targets)


@dataclass(frozen=True)
class Export:
    """One row of ``exports`` (see ``shared/migrations``)."""

    id: uuid.UUID
    owner: str
    dataset: str
    spec: dict[str, Any]
    filename: str
    status: ExportStatus
    total_rows: int | None
    rows_done: int
    bytes_done: int
    parts_total: int | None
    parts_done: int
    key_high_water: str | None
    object_key: str | None
    upload_id: str | None
    object_bytes: int | None
    error: str | None
    idempotency_key: str | None
    request_hash: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    updated_at: datetime
    admitted_at: datetime | None
    finalize_attempt: int
    finalize_lease_expires_at: datetime | None
    object_crc32: int | None  # CRC-32 of the whole object (the parts' CRCs combined), once completed
    object_etag: str | None  # the object's ETag as S3 reported it when completed
    notify_url: str | None  # where a webhook tells the owner the export ended (its secret is read apart)
    part_checksum: str  # how S3 checks its chunks' bytes: "md5" or "crc32" (shared/settings.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ExportStatus(self.status))


@dataclass(frozen=True)
class Upload:
    """An export's multipart upload, as its planner created it."""

    key: str
    upload_id: str
    part_checksum: str = "md5"  # how S3 checks the chunks' bytes: "md5" or "crc32"


@dataclass(frozen=True)
class Chunk:
    """One row of ``export_chunks``: a key range ``(key_lo, key_hi]`` and its latest attempt."""

    export_id: uuid.UUID
    part_number: int
    key_lo: str | None
    key_hi: str | None
    planned_rows: int
    status: ChunkStatus
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    etag: str | None
    rows: int | None
    bytes: int | None
    started_at: datetime | None
    finished_at: datetime | None
    enqueued: bool
    job_id: str | None
    recoveries: int
    upload_part_number: int | None
    crc32: int | None  # CRC-32 of the part's bytes, recorded with the part
    raw_bytes: int | None  # size of the bytes before compression (gzip, xlsx)
    raw_crc32: int | None  # their CRC-32 (what a gzip member or an XLSX data descriptor holds)
    layout: dict[str, Any] | None  # an XLSX chunk's sheet and place in it (shared.formats.Position)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ChunkStatus(self.status))


@dataclass(frozen=True)
class ClaimedChunk(Chunk):
    """A chunk just claimed by an attempt, with what the attempt needs of its export."""

    object_key: str
    upload_id: str
    spec: dict[str, Any]
    owner: str
    part_checksum: str


def field_names(record: type[Any]) -> tuple[str, ...]:
    """The column names a record type is read from, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(record))
