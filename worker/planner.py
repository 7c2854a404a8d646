"""Planning an export: fix its key range, cut it into chunks, start the multipart upload.

Invariant: an export leaves ``queued`` only with its whole plan (chunks, high-water mark,
upload id) recorded in one transaction; a planner that finds it no longer queued (cancelled,
or planned by an earlier try) aborts the upload it started and does nothing else.
"""

from __future__ import annotations

import logging
import uuid

from redis import Redis

from shared import exports_repo
from shared.db import connect_source, connect_state, export_label, state_label
from shared.lifecycle import fill_window
from shared.logs import bind_log_context
from shared.models import ExportStatus
from shared.planning import cut_plan
from shared.settings import Settings
from shared.spec import ExportSpec, SpecError, xlsx_too_many_rows
from shared.storage import object_key, s3_client
from worker.uploads import abort_upload

log = logging.getLogger(__name__)

# Chunks of a compressed format are planned this many times bigger (in CSV bytes), so that their
# compressed bytes usually clear S3's 5 MiB on their own and the finalizer copies them server-side.
STAGED_CHUNK_FACTOR = 4


def plan(settings: Settings, redis: Redis, export_id: uuid.UUID) -> str:
    """Plan a queued export and enqueue its chunks; return what happened."""
    label = state_label("plan", export_id)
    with connect_state(settings, label) as state:
        export = exports_repo.get_export(state, export_id)
    if export is not None:
        bind_log_context(owner=export.owner)
    if export is None or export.status != ExportStatus.QUEUED:
        return f"skipped: export is {export.status if export else 'gone'}"
    spec = ExportSpec.from_json(export.spec)
    output = spec.output
    with connect_source(settings, export_label(export_id, "plan")) as source:
        export_plan = cut_plan(
            source,
            spec.source,
            spec,
            settings.part_min_bytes * (STAGED_CHUNK_FACTOR if output.staged else 1),
            sheet_rows=settings.xlsx_sheet_rows if output.format == "xlsx" else None,
            whole_up_to=settings.inline_max_rows if output.staged else 0,
        )
    if output.format == "xlsx" and export_plan.total_rows > settings.xlsx_max_rows:
        raise SpecError(xlsx_too_many_rows(export_plan.total_rows, settings.xlsx_max_rows), "format")

    key = object_key(settings, export_id, spec.filename)
    upload_id = s3_client(settings).create_multipart_upload(
        Bucket=settings.s3_bucket, Key=key, ContentType=output.content_type
    )["UploadId"]
    with connect_state(settings, label) as state:
        started = exports_repo.start_export(state, export_id, export_plan, key, upload_id)
        if started:
            fill_window(state, redis, settings, export_id)
    if not started:
        abort_upload(settings, key, upload_id)
        return "skipped: export left the queued state while planning"
    log.info(
        "planned %d rows in %d chunks up to key %s",
        export_plan.total_rows,
        len(export_plan.chunks),
        export_plan.high_water,
    )
    return f"planned {export_plan.total_rows} rows in {len(export_plan.chunks)} chunks"
