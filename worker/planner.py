"""Planning an export: fix its key range, cut it into chunks, start the multipart upload.

Invariant: an export leaves ``queued`` only with its whole plan (chunks, high-water mark,
upload id) recorded in one transaction; a planner that finds it no longer queued (cancelled,
or planned by an earlier try) aborts the upload it started and does nothing else.
"""

from __future__ import annotations

import logging
import uuid

from redis import Redis

from shared import exports_repo as repo
from shared.db import connect_source, connect_state
from shared.planning import plan_export
from shared.queue import fill_window
from shared.settings import Settings
from shared.spec import ExportSpec
from shared.storage import s3_client
from worker.uploads import abort_upload

log = logging.getLogger(__name__)


def object_key(settings: Settings, export_id: uuid.UUID, filename: str) -> str:
    """Where an export's object lives: ``<prefix><export id>/<filename>``."""
    return f"{settings.s3_prefix}{export_id}/{filename}"


def plan(settings: Settings, redis: Redis, export_id: uuid.UUID) -> str:
    """Plan a queued export and enqueue its chunks; return what happened."""
    with connect_state(settings, f"spillway:state:{export_id}:plan") as state:
        export = repo.get_export(state, export_id)
    if export is None or export["status"] != "queued":
        return f"skipped: export is {export['status'] if export else 'gone'}"
    spec = ExportSpec.from_json(export["spec"])
    with connect_source(settings, f"spillway:export:{export_id}:plan") as source:
        export_plan = plan_export(source, spec.source, spec, settings.part_min_bytes)

    key = object_key(settings, export_id, spec.filename)
    upload_id = s3_client(settings).create_multipart_upload(
        Bucket=settings.s3_bucket, Key=key, ContentType="text/csv; charset=utf-8")["UploadId"]
    with connect_state(settings, f"spillway:state:{export_id}:plan") as state:
        started = repo.start_export(state, export_id, export_plan, key, upload_id)
        if started:
            fill_window(state, redis, settings, export_id)
    if not started:
        abort_upload(settings, key, upload_id)
        return "skipped: export left the queued state while planning"
    log.info("export %s: %d rows in %d chunks up to key %s", export_id, export_plan.total_rows,
             len(export_plan.chunks), export_plan.high_water)
    return f"planned {export_plan.total_rows} rows in {len(export_plan.chunks)} chunks"
