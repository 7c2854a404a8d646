"""Cleaning up after a cancel: no multipart upload and no object may be left behind.

Invariant: after :func:`cleanup` of a cancelled or failed export returns, S3 lists no
multipart upload and holds no object under the export's key, nor any of its staged chunk
objects (an upload is aborted again if a part raced the first abort).
"""

from __future__ import annotations

import uuid

from shared import exports_repo
from shared.db import connect_state, state_label
from shared.logs import bind_log_context
from shared.models import ExportStatus
from shared.settings import Settings
from shared.storage import s3_client
from worker.assembly import delete_staged
from worker.uploads import abort_upload


def leftover_uploads(settings: Settings, key: str) -> list[str]:
    """Upload ids S3 still lists for exactly ``key``."""
    listing = s3_client(settings).list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=key)
    return [str(u["UploadId"]) for u in listing.get("Uploads", []) if u["Key"] == key]


def cleanup(settings: Settings, export_id: uuid.UUID) -> str:
    """Abort the export's upload (and any other upload of its key); delete a stray object."""
    with connect_state(settings, state_label("cleanup", export_id)) as state:
        export = exports_repo.get_export(state, export_id)
    if export is not None:
        bind_log_context(owner=export.owner)
    if export is None or export.status not in (ExportStatus.CANCELLED, ExportStatus.FAILED) or not export.object_key:
        return "nothing to clean"
    key = export.object_key
    abort_upload(settings, key, export.upload_id)
    for upload_id in leftover_uploads(settings, key):
        abort_upload(settings, key, upload_id)
    s3_client(settings).delete_object(Bucket=settings.s3_bucket, Key=key)
    delete_staged(settings, export_id)
    left = leftover_uploads(settings, key)
    if left:
        raise RuntimeError(f"uploads still listed for {key} after abort: {left}")  # retried by RQ
    return f"aborted the upload of {key}"
