"""Exporting one chunk: one COPY of its key range into one multipart part (or, for a
compressed format, one staged object the finalizer composes the file from).

Invariant: a chunk's bytes depend only on the export's spec and the chunk's key range, so a
re-run produces the same bytes into the same part number, with the same CRC-32 (recorded
with the part, combined by the finalizer into the object's checksum) and, unless the
export's parts travel with their CRC-32 instead, MD5 (sent as Content-MD5), both computed
as the bytes stream; its part record and progress are written only if this attempt still
holds the chunk (fencing by attempt number). While it streams, the chunk checks for a cancel
at every block and renews its lease, so a cancel stops it within about one block; the
process holds the chunk's liveness lock (:mod:`shared.liveness`) from before the claim to
the end, so its death is seen at once. Memory is bounded: rows are gathered into blocks of
``BLOCK_BYTES`` and spooled to a temporary file beyond ``SPOOL_BYTES``.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import logging
import signal
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import IO, Any

import psycopg
from redis import Redis

from shared import chunks_repo, metrics
from shared.db import CopyOut, connect_source, export_label
from shared.formats import Position, encoder
from shared.lifecycle import fill_window
from shared.liveness import AttemptLiveness
from shared.logs import log_context
from shared.models import ClaimedChunk
from shared.query import chunk_copy, header_bytes
from shared.queue import cancel_key, enqueue_chunks, enqueue_finalize
from shared.settings import Settings
from shared.spec import ExportSpec
from shared.storage import staged_key
from worker.failures import ExportError
from worker.uploads import Digest, abort_upload, put_staged, upload_part

log = logging.getLogger(__name__)

BLOCK_BYTES = 1024 * 1024  # rows are joined into blocks of this size; checks run once a block
SPOOL_BYTES = 32 * 1024 * 1024  # a part larger than this is buffered on disk, not in memory (PartBuffer)


class ChunkStopped(Exception):
    """The chunk stopped on purpose: its export was cancelled or its attempt superseded."""


class HandBack(Exception):
    """The worker is shutting down: give the chunk back for another worker to run."""


_shutdown = {"requested": False}


def _on_shutdown_signal(signum: int, frame: Any) -> None:
    _shutdown["requested"] = True


def listen_for_shutdown() -> None:
    """Install the SIGUSR1 handler in the worker, before it forks: its horses inherit it.

    The worker sends SIGUSR1 to its horse on SIGTERM; a chunk then hands back at its next
    block instead of keeping a container's stop waiting.
    """
    signal.signal(signal.SIGUSR1, _on_shutdown_signal)


@dataclass
class Watch:
    """Checks made while a chunk streams: cancel flag, lease renewal, bytes after a cancel."""

    settings: Settings
    redis: Redis
    export_id: uuid.UUID
    part_number: int
    attempt: int
    liveness: AttemptLiveness  # its session serves the lease renewals too
    checkpoints: list[tuple[float, int]] = field(default_factory=list)
    _renewed: float = field(default_factory=time.monotonic)

    def cancelled_at(self) -> float | None:
        """The wall-clock time of the export's cancel, if it was cancelled."""
        value = self.redis.get(cancel_key(self.settings, self.export_id))
        return float(value) if value is not None else None

    def check(self, size: int) -> None:
        """Stop if the export was cancelled; renew the lease every third of its length."""
        self.checkpoints.append((time.time(), size))
        if self.cancelled_at() is not None:
            raise ChunkStopped("export cancelled")
        if _shutdown["requested"]:
            raise HandBack("worker shutting down")
        self.liveness.ensure()  # taken late if a zombie of an earlier attempt held it
        if time.monotonic() - self._renewed > self.settings.lease_s / 3:
            if not chunks_repo.renew_lease(
                self.liveness.session(), self.export_id, self.part_number, self.attempt, self.settings.lease_s
            ):
                raise ChunkStopped("attempt superseded")
            self._renewed = time.monotonic()

    def bytes_after(self, moment: float, total: int) -> int:
        """Bytes read after ``moment``: from the last checkpoint before it to ``total``."""
        before = [size for t, size in self.checkpoints if t <= moment]
        return total - (before[-1] if before else 0)


@dataclass(frozen=True)
class PartRead:
    """What reading a chunk produced: its rows, and the size and digests of its bytes."""

    rows: int
    size: int
    md5: bytes | None  # what S3 checks the upload against (Content-MD5); None: the CRC-32 is
    crc32: int  # zlib.crc32 of the bytes: the part's share of the object's checksum
    raw_bytes: int  # size of the bytes before compression (the rendered rows for a plain format)
    raw_crc32: int  # their CRC-32


class PartBuffer:
    """A part's bytes until they are uploaded: the blocks as written, not copied, while they fit
    in ``memory_bytes``, a temporary file from then on. Read back as a seekable binary file
    (botocore rewinds the body to retry a request); a read returns at most one block's rest.

    Copying every block into a ``SpooledTemporaryFile`` and reading it back cost a chunk job
    17 ms of CPU per 21 MB part (measured in forked processes, as horses run), an eighth of it.
    """

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes, self.size, self._pos = memory_bytes, 0, 0
        self._blocks: list[memoryview] = []
        self._starts: list[int] = []  # each block's offset in the part
        self._file: IO[bytes] | None = None

    def write(self, data: bytes | bytearray) -> int:
        """Keep ``data`` (a block nobody changes afterwards) at the end of the part."""
        if self._file is None and self.size + len(data) > self.memory_bytes:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            for block in self._blocks:
                self._file.write(block)
            self._blocks, self._starts = [], []
        if self._file is not None:
            self._file.write(data)
        elif data:
            self._starts.append(self.size)
            self._blocks.append(memoryview(data))
        self.size += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        if self._file is not None:
            self._file.seek(self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes | memoryview:
        if size is None or size < 0:
            return b"".join(iter(lambda: bytes(self.read(self.size)), b""))
        data: bytes | memoryview
        if self._file is not None:
            data = self._file.read(size)
        elif self._pos >= self.size or size == 0:
            return b""
        else:
            i = bisect.bisect_right(self._starts, self._pos) - 1
            offset = self._pos - self._starts[i]
            data = self._blocks[i][offset : offset + size]
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._blocks, self._starts = [], []
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> PartBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DigestWriter:
    """Writes bytes to a file while taking their size, CRC-32 and (unless told not to) MD5."""

    def __init__(self, out: IO[bytes] | PartBuffer, md5: bool = True) -> None:
        self.out, self.size, self.crc32 = out, 0, 0
        self._md5 = hashlib.md5() if md5 else None

    def write(self, data: bytes | bytearray) -> None:
        if data:
            self.out.write(data)
            if self._md5 is not None:
                self._md5.update(data)
            self.crc32 = zlib.crc32(data, self.crc32)
            self.size += len(data)

    @property
    def md5(self) -> bytes | None:
        return self._md5.digest() if self._md5 is not None else None


def read_chunk(
    settings: Settings,
    spec: ExportSpec,
    export_id: uuid.UUID,
    part_number: int,
    lo: str | None,
    hi: str | None,
    out: IO[bytes] | PartBuffer,
    watch: Watch | None = None,
    position: Position | None = None,
    md5: bool = True,
) -> PartRead:
    """COPY the chunk's rows in the spec's format into ``out``; return its rows, size and digests.

    Args:
        position: where the chunk sits in the file (default: as ``part_number`` says, no sheet).
        md5: take the bytes' MD5 (what S3 checks them against unless the export uses CRC-32).
    """
    encode = encoder(spec.output, spec.columns, position or Position(first=part_number == 1), header_bytes(spec))
    writer = DigestWriter(out, md5)
    writer.write(encode.begin())
    query, params = chunk_copy(spec.source, spec, lo, hi)
    with connect_source(settings, export_label(export_id, f"part:{part_number}")) as source:
        copy = CopyOut(source, query, params, BLOCK_BYTES)
        for block in copy:
            writer.write(encode.feed(block))
            if watch is not None:
                watch.check(writer.size)
    rows = copy.rows or 0
    writer.write(encode.end())
    return PartRead(rows, writer.size, writer.md5, writer.crc32, encode.raw_size, encode.raw_crc32)


def run_chunk(
    settings: Settings,
    redis: Redis,
    export_id: uuid.UUID,
    part_number: int,
    worker: str,
    meta: dict[str, Any] | None = None,
) -> str:
    """Claim, read, upload and record one chunk; enqueue the next chunks, or the finalizer.

    Args:
        meta: filled with what an operator or a test wants to know (bytes read after a cancel).
    """
    # Held from before the claim until the attempt ends: if this process dies, PostgreSQL
    # drops the lock and the reconciler re-runs the chunk without waiting for the lease. Its
    # session is the attempt's only connection to the state database.
    liveness = AttemptLiveness(settings, export_id, part_number)
    try:
        chunk = chunks_repo.claim_chunk(liveness.session(), export_id, part_number, worker, settings.lease_s)
        if chunk is None:
            return "skipped: chunk done, leased elsewhere, or export not running"
        with log_context(attempt=chunk.attempt, owner=chunk.owner):
            return _run_attempt(settings, redis, chunk, liveness, meta)
    finally:
        liveness.close()


def _run_attempt(
    settings: Settings,
    redis: Redis,
    chunk: ClaimedChunk,
    liveness: AttemptLiveness,
    meta: dict[str, Any] | None,
) -> str:
    export_id, part_number, attempt = chunk.export_id, chunk.part_number, chunk.attempt
    spec = ExportSpec.from_json(chunk.spec)
    try:
        s3_part = chunks_repo.upload_part_number(part_number, attempt)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    watch = Watch(settings, redis, export_id, part_number, attempt, liveness)
    size = 0
    started = time.monotonic()
    try:
        with PartBuffer(SPOOL_BYTES) as buffer:
            position = Position.of(part_number, chunk.layout)
            md5 = chunk.part_checksum == "md5"
            part = read_chunk(
                settings, spec, export_id, part_number, chunk.key_lo, chunk.key_hi, buffer, watch, position, md5
            )
            rows, size = part.rows, part.size
            digest = Digest(md5=part.md5, crc32=part.crc32)
            watch.check(size)  # a last look (cancel, lease) before the upload
            buffer.seek(0)
            if spec.output.staged:  # stored on its own; the finalizer composes the object (worker/assembly.py)
                etag = put_staged(settings, staged_key(settings, export_id, s3_part), buffer, size, digest)
            else:
                etag = upload_part(settings, chunk.object_key, chunk.upload_id, s3_part, buffer, size, digest)
    except HandBack:
        metrics.count(redis, settings, "spillway_chunks", outcome="handed_back")
        hand_back(liveness.session(), redis, settings, chunk)
        return "handed back: the worker is shutting down"
    except (ChunkStopped, psycopg.errors.QueryCanceled) as exc:
        cancelled = watch.cancelled_at()
        if cancelled is None and not isinstance(exc, ChunkStopped):
            metrics.count(redis, settings, "spillway_chunks", outcome="failed")
            _release(chunk, liveness)
            raise  # a statement timeout: the retry policy decides
        metrics.count(redis, settings, "spillway_chunks", outcome="stopped")
        if meta is not None and cancelled is not None:
            meta["bytes_after_cancel"] = watch.bytes_after(
                cancelled, watch.checkpoints[-1][1] if watch.checkpoints else 0
            )
        return f"stopped: {exc}"
    except BaseException:
        metrics.count(redis, settings, "spillway_chunks", outcome="failed")
        _release(chunk, liveness)
        raise
    state = liveness.session()
    staged = spec.output.staged
    recorded, finalize = chunks_repo.record_part(
        state,
        export_id,
        part_number,
        attempt,
        etag,
        rows,
        size,
        crc32=part.crc32,
        raw_bytes=part.raw_bytes if staged else None,
        raw_crc32=part.raw_crc32 if staged else None,
    )
    if recorded and not finalize:
        fill_window(state, redis, settings, export_id)
    cancelled = watch.cancelled_at()
    if meta is not None and cancelled is not None:
        meta["bytes_after_cancel"] = watch.bytes_after(cancelled, size)
    if finalize:
        enqueue_finalize(redis, settings, export_id)  # attempt 1: nothing could claim before this part
    if recorded:
        metrics.record_chunk(redis, settings, spec.format, rows, size, time.monotonic() - started)
    else:
        metrics.count(redis, settings, "spillway_chunks", outcome="rejected")
    if not recorded:
        # Cancelled or superseded while uploading: this part may have landed after the abort.
        if cancelled is not None:
            abort_upload(settings, chunk.object_key, chunk.upload_id)
        log.warning("write rejected: the export was cancelled or a newer attempt holds this chunk")
        return "rejected: the export was cancelled or a newer attempt holds this chunk"
    log.info("part recorded: %d rows, %d bytes in %.2f s", rows, size, time.monotonic() - started)
    return f"part {part_number}: {rows} rows, {size} bytes"


def hand_back(conn: psycopg.Connection[Any], redis: Redis, settings: Settings, chunk: ClaimedChunk) -> int | None:
    """Give the chunk back (running → pending) and enqueue its next job; return that job's
    recovery number, or None when the attempt had nothing left to give back.

    Fenced twice: by the attempt (a newer attempt claimed the chunk: nothing to give back) and
    by the job id recorded when this attempt claimed the chunk (``next_recovery`` compares and
    sets): if the reconciler replaced the job since (the lease expired while this process was
    paused), that job is the chunk's replacement and no second one is enqueued. Should that job
    have ended meanwhile, the reconciler's next look finds the pending chunk without a live job
    and replaces it.
    """
    if not chunks_repo.release_chunk(conn, chunk.export_id, chunk.part_number, chunk.attempt):
        return None
    recovery = chunks_repo.next_recovery(conn, chunk.export_id, chunk.part_number, chunk.job_id)
    if recovery is not None:
        enqueue_chunks(redis, settings, chunk.export_id, [chunk.part_number], recovery)
    return recovery


def _release(chunk: ClaimedChunk, liveness: AttemptLiveness) -> None:
    chunks_repo.release_chunk(liveness.session(), chunk.export_id, chunk.part_number, chunk.attempt)
