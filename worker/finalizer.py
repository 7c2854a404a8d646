"""Finishing an export: complete the multipart upload in part order, check it, mark it done.

Invariant: an export becomes ``completed`` only after S3 holds the whole object and its size
equals the sum of the recorded parts (a staged format's: of the pieces :mod:`worker.assembly`
composes it from); it records the object's ETag and its CRC-32, combined
from the recorded parts' CRCs in part order (no byte is read again). An object completed for
an export that was cancelled meanwhile is deleted. The finalizer holds a lease (renewed
from a thread while S3 completes or composes the object) and a finalize attempt number: a
paused finalizer that wakes up after another completed the export is fenced out (its
completion is rejected and it never deletes a completed object).
Finishing an export admits the owner's next waiting one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from redis import Redis

from shared import chunks_repo, exports_repo
from shared.crc import crc32_of_parts
from shared.lifecycle import admit, announce_end
from shared.liveness import FINALIZER_PART, AttemptLiveness, run_holding
from shared.logs import bind_log_context
from shared.models import Chunk, Export, ExportStatus
from shared.settings import Settings
from shared.spec import ExportSpec
from shared.storage import s3_client
from worker.assembly import ComposeSuperseded, compose, delete_staged
from worker.failures import ExportError
from worker.uploads import StoredObject, complete_upload

log = logging.getLogger(__name__)


def finalize(settings: Settings, redis: Redis, export_id: uuid.UUID) -> str:
    """Complete the upload of a running export whose parts are all recorded.

    The finalizer holds the export's finalizer liveness lock (:mod:`shared.liveness`) from
    before it claims the export to its end, so if its process dies the reconciler ends its
    lease and runs it again within seconds instead of after the lease. One finalizer at a time:
    one that finds the lock held skips, unless the holder is frozen (an earlier attempt whose
    lease ran out): the lease stays the fallback for a stuck process. A first claim without
    the lock would be taken for dead as soon as the holder ended. The lock's session is the
    finalizer's state connection too.
    """
    return run_holding(
        settings,
        export_id,
        FINALIZER_PART,
        lambda liveness: _finalize(settings, redis, export_id, liveness),
        lambda liveness: _finalize(settings, redis, export_id, liveness, taken_over=True),
    )


def _finalize(
    settings: Settings, redis: Redis, export_id: uuid.UUID, liveness: AttemptLiveness, taken_over: bool = False
) -> str:
    """Claim and finalize. Without the lock (``taken_over``), only a take-over: an earlier
    attempt claimed the export and its lease ran out, so the lock's holder is frozen; at the
    first claim the holder is another finalizer about to claim, and this one skips."""
    attempt = exports_repo.claim_finalize(liveness.session(), export_id, settings.lease_s, taken_over)
    if attempt is None:
        if taken_over:
            return "skipped: another finalizer of this export holds its lock"
        export = exports_repo.get_export(liveness.session(), export_id)
        return f"skipped: export is {export.status if export else 'gone'} or being finalized"
    try:
        return _complete(settings, redis, export_id, attempt, liveness)
    except Exception:
        if _superseded(liveness, export_id, attempt):
            # Not this attempt's failure to report: failing the export would fail the one
            # that took over (and it would then delete the object it completed).
            log.warning("finalizing failed after a newer finalize attempt took over", exc_info=True)
            return "rejected: a newer finalize attempt owns this export"
        # Its lease ends with it, so the job's RQ retry (with its backoff and limit) can claim
        # the export; a live lease made every retry skip, and the export never failed.
        exports_repo.expire_finalize(liveness.session(), export_id, attempt)
        raise


def _complete(settings: Settings, redis: Redis, export_id: uuid.UUID, attempt: int, liveness: AttemptLiveness) -> str:
    """Finalize attempt ``attempt``, claimed: complete the object, then the export."""
    state = liveness.session()
    export = exports_repo.get_export(state, export_id)
    if export is None:
        return "skipped: export is gone"
    bind_log_context(owner=export.owner, attempt=attempt)
    parts = chunks_repo.done_parts(state, export_id)
    if len(parts) != export.parts_total or not export.object_key or not export.upload_id:
        raise ExportError(f"finalize found {len(parts)} of {export.parts_total} parts recorded")
    spec = ExportSpec.from_json(export.spec)
    try:
        with _renewing(settings, liveness, export_id, attempt):
            stored, crc32 = _store(settings, export, spec, parts, attempt, liveness)
    except ComposeSuperseded:
        return "rejected: a newer finalize attempt owns this export"
    size, rows = stored.size, sum(p.rows or 0 for p in parts)
    state = liveness.session()
    completed = exports_repo.complete_export(
        state,
        export_id,
        size,
        rows,
        settings.export_ttl_s,
        attempt,
        object_etag=stored.etag,
        object_crc32=crc32,
    )
    now = exports_repo.get_export(state, export_id)
    admit(state, redis, settings, export.owner)
    if completed and now is not None:
        announce_end(state, redis, settings, now)
    if completed:
        if spec.output.staged:
            _delete_staged(settings, export_id)
        log.info("export completed: %d rows, %d bytes", rows, size)
        return f"completed: {rows} rows, {size} bytes"
    if now is not None and now.status in (ExportStatus.CANCELLED, ExportStatus.FAILED):
        # Cancelled or failed while completing: the object must not outlive the export.
        s3_client(settings).delete_object(Bucket=settings.s3_bucket, Key=export.object_key)
        return f"discarded: the export became {now.status} while completing"
    return "rejected: a newer finalize attempt owns this export"


@contextmanager
def _renewing(settings: Settings, liveness: AttemptLiveness, export_id: uuid.UUID, attempt: int) -> Iterator[None]:
    """Renew this attempt's lease every third of it, from a thread, while the body waits on S3.

    S3 may take minutes over a big CompleteMultipartUpload (or an UploadPartCopy), one request
    that no step of ours can interrupt to renew. Unrenewed, the lease ran out mid-request: the
    reconciler took the finalizer for frozen and ran another attempt beside it, every lease
    and two passes. The thread uses the session it starts with (psycopg's connections are
    thread-safe; the session is autocommit, and the body uses it only for single statements);
    it stops when the session breaks, the export ends or a newer attempt took over, and the
    lease then runs out as before. A request that hangs still ends: botocore's read timeout
    (60 s, with its retries), then the job's own timeout, which kills the process.
    """
    stop = threading.Event()
    conn = liveness.session()

    def renew() -> None:
        while not stop.wait(settings.lease_s / 3):
            try:
                if not exports_repo.renew_finalize(conn, export_id, attempt, settings.lease_s):
                    return  # superseded, or the export ended: the completion is fenced
            except psycopg.Error:
                return  # the session broke: the lease is the fallback

    thread = threading.Thread(target=renew, name=f"finalize-lease-{export_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _store(
    settings: Settings,
    export: Export,
    spec: ExportSpec,
    parts: list[Chunk],
    attempt: int,
    liveness: AttemptLiveness,
) -> tuple[StoredObject, int | None]:
    """Complete (or, for a staged format, compose) the export's object; return it and its CRC-32."""
    key, upload_id = export.object_key or "", export.upload_id or ""  # both checked by the caller
    if spec.output.staged:

        def renew() -> bool:
            liveness.ensure()  # the lock again, if the state database dropped its session
            return exports_repo.renew_finalize(liveness.session(), export.id, attempt, settings.lease_s)

        return compose(settings, export.id, spec, key, upload_id, parts, renew)
    pairs = [(p.upload_part_number or 0, p.etag or "") for p in parts]
    part_crc32s = _part_crc32s(parts) if export.part_checksum == "crc32" else None
    expected = sum(p.bytes or 0 for p in parts)
    stored = complete_upload(settings, key, upload_id, pairs, expected, part_crc32s)
    return stored, object_crc32(parts)


def _superseded(liveness: AttemptLiveness, export_id: uuid.UUID, attempt: int) -> bool:
    """Whether a newer finalize attempt claimed the export (this one's lease was ended)."""
    now = exports_repo.get_export(liveness.session(), export_id)
    return now is not None and now.finalize_attempt != attempt


def _delete_staged(settings: Settings, export_id: uuid.UUID) -> None:
    try:
        delete_staged(settings, export_id)
    except Exception:  # noqa: BLE001 - the export is complete; the reconciler's janitor deletes them later
        log.warning("staged chunk objects not deleted; the janitor will", exc_info=True)


def _part_crc32s(parts: list[Chunk]) -> list[int]:
    """The parts' CRC-32s, which an upload created with CRC-32 checksums is completed with."""
    missing = [p.part_number for p in parts if p.crc32 is None]
    if missing:
        raise ExportError(f"parts {missing} were recorded without the CRC-32 their upload needs")
    return [p.crc32 or 0 for p in parts]


def object_crc32(parts: list[Chunk]) -> int | None:
    """The CRC-32 of the whole object from its parts (in part order), or None when a part has none.

    A part recorded without a CRC (by a worker of an older version, during a rolling deploy)
    leaves the export without a checksum rather than with a wrong one.
    """
    if any(p.crc32 is None for p in parts):
        return None
    return crc32_of_parts((p.crc32 or 0, p.bytes or 0) for p in parts)
