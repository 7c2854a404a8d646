"""Planning an export: fix its key range, cut it into chunks, start the multipart upload.

Invariant: an export leaves ``queued`` with its high-water mark and upload id recorded in one
transaction, and with either its whole plan (compressed and XLSX files, whose bytes depend on
where every chunk ends, and relations too big to stream) or none yet: a plain file's plan is
streamed (:func:`shared.planning.stream_plan`), each batch of chunks recorded and enqueued as
soon as it is cut, and its totals fixed at the end (``parts_total`` NULL until then, so
nothing finalizes it early). A planner that finds the export no longer queued aborts the upload
it started and does nothing else; one that finds it running with its plan unfinished (an
interrupted planner's) goes on after the last chunk recorded.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg
from redis import Redis

from shared import exports_repo
from shared.db import connect_source, export_label
from shared.lifecycle import fill_window
from shared.liveness import PLANNER_PART, AttemptLiveness, run_holding
from shared.logs import bind_log_context
from shared.models import Export, ExportStatus, Upload
from shared.planning import cut_plan, stream_plan, streams
from shared.query import key_bounds
from shared.queue import enqueue_finalize
from shared.records import fetch_tuples
from shared.settings import Settings
from shared.spec import ExportSpec, SpecError, xlsx_too_many_rows
from shared.storage import object_key, s3_client
from worker.uploads import abort_upload

log = logging.getLogger(__name__)

# Chunks of a compressed format are planned at least this big (in CSV bytes), so that their
# compressed bytes usually clear S3's 5 MiB on their own and the finalizer copies them server-side.
STAGED_MIN_BYTES = 32 * 1024 * 1024


def plan(settings: Settings, redis: Redis, export_id: uuid.UUID) -> str:
    """Plan a queued export (or go on with a streamed plan left unfinished) and enqueue its
    first chunks; return what happened.

    The planner holds the export's planner liveness lock (:mod:`shared.liveness`) throughout:
    one planner at a time, and if its process dies the reconciler sees the lock free and runs
    the planner again within seconds. The lock's session is the planner's state connection too.
    """
    busy = "skipped: another planner is planning this export"
    return run_holding(
        settings, export_id, PLANNER_PART, lambda liveness: _plan(settings, redis, export_id, liveness), busy
    )


def _plan(settings: Settings, redis: Redis, export_id: uuid.UUID, liveness: AttemptLiveness) -> str:
    export = exports_repo.get_export(liveness.session(), export_id)
    if export is not None:
        bind_log_context(owner=export.owner)
    unfinished = export is not None and export.status == ExportStatus.RUNNING and export.parts_total is None
    if export is None or not (export.status == ExportStatus.QUEUED or unfinished):
        return f"skipped: export is {export.status if export else 'gone'}"
    spec = ExportSpec.from_json(export.spec)
    output = spec.output
    min_bytes = max(settings.part_min_bytes, STAGED_MIN_BYTES) if output.staged else settings.part_min_bytes
    with connect_source(settings, export_label(export_id, "plan")) as source:
        if unfinished or (not output.staged and output.format != "xlsx" and streams(source, spec.source, min_bytes)):
            return _stream(settings, redis, export, spec, source, min_bytes, liveness)
        export_plan = cut_plan(
            source,
            spec.source,
            spec,
            min_bytes,
            sheet_rows=settings.xlsx_sheet_rows if output.format == "xlsx" else None,
            whole_up_to=settings.inline_max_rows if output.staged else 0,
        )
    if output.format == "xlsx" and export_plan.total_rows > settings.xlsx_max_rows:
        raise SpecError(xlsx_too_many_rows(export_plan.total_rows, settings.xlsx_max_rows), "format")

    upload = _create_upload(settings, export_id, spec)
    state = liveness.session()
    started = exports_repo.start_export(state, export_id, export_plan, upload)
    if started:
        fill_window(state, redis, settings, export_id)
    if not started:
        abort_upload(settings, upload.key, upload.upload_id)
        return "skipped: export left the queued state while planning"
    log.info(
        "planned %d rows in %d chunks up to key %s",
        export_plan.total_rows,
        len(export_plan.chunks),
        export_plan.high_water,
    )
    return f"planned {export_plan.total_rows} rows in {len(export_plan.chunks)} chunks"


def _create_upload(settings: Settings, export_id: uuid.UUID, spec: ExportSpec) -> Upload:
    """Start the export's multipart upload, with CRC-32 part checksums when its chunks use them.

    A staged format's chunks are objects of their own (checked by their own CRC-32, if so);
    its upload is composed from them by the finalizer, with Content-MD5, as before.
    """
    key = object_key(settings, export_id, spec.filename)
    crc32_parts = settings.s3_part_checksum == "crc32" and not spec.output.staged
    upload_id = s3_client(settings).create_multipart_upload(
        Bucket=settings.s3_bucket,
        Key=key,
        ContentType=spec.output.content_type,
        **({"ChecksumAlgorithm": "CRC32"} if crc32_parts else {}),
    )["UploadId"]
    return Upload(key, str(upload_id), settings.s3_part_checksum)


def _stream(
    settings: Settings,
    redis: Redis,
    export: Export,
    spec: ExportSpec,
    source: psycopg.Connection[Any],
    min_bytes: int,
    liveness: AttemptLiveness,
) -> str:
    """Start the export (unless resuming) and record, then enqueue, its chunks batch by batch."""
    export_id = export.id
    state = liveness.session()
    if export.status == ExportStatus.QUEUED:
        high_water = fetch_tuples(source, key_bounds(spec.source))[0][1]
        upload = _create_upload(settings, export_id, spec)
        if not exports_repo.start_streamed_export(state, export_id, high_water, upload):
            abort_upload(settings, upload.key, upload.upload_id)
            return "skipped: export left the queued state while planning"
        last_part, lo = 0, None
    else:
        high_water = export.key_high_water
        last_part, lo = exports_repo.planned_so_far(state, export_id)
        log.info("going on with an unfinished plan after chunk %d", last_part)
    if last_part == 0 or lo is not None:  # an empty plan's one chunk has no upper key: nothing follows it
        for chunks in stream_plan(source, spec.source, spec, min_bytes, high_water, lo, last_part + 1):
            state = liveness.session()
            if not exports_repo.add_chunks(state, export_id, chunks):
                return "stopped: the export ended, or another planner went on with its plan"
            fill_window(state, redis, settings, export_id)
    state = liveness.session()
    ready = exports_repo.finish_plan(state, export_id)
    total = exports_repo.get_export(state, export_id)
    if ready:
        enqueue_finalize(redis, settings, export_id)
    parts, rows = (total.parts_total, total.total_rows) if total else (None, None)
    log.info("planned %s rows in %s chunks up to key %s (streamed)", rows, parts, high_water)
    return f"planned {rows} rows in {parts} chunks (streamed)"
