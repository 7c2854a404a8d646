"""The JSON shape of an export, as every endpoint answers it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import url_for

from shared.models import Export, ExportStatus
from shared.settings import Settings
from shared.storage import presign_download


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def progress(export: Export) -> dict[str, Any]:
    """Rows and parts done of total, and a percent that is exactly 100 when completed."""
    total, done = export.total_rows, export.rows_done
    if export.status == ExportStatus.COMPLETED:
        percent = 100.0
    elif total:
        percent = min(99.9, round(100.0 * done / total, 1))
    else:
        percent = 0.0
    return {
        "total_rows": total,
        "rows_done": done,
        "parts_total": export.parts_total,
        "parts_done": export.parts_done,
        "bytes_done": export.bytes_done,
        "percent": percent,
    }


def export_json(export: Export, settings: Settings, with_download: bool = False) -> dict[str, Any]:
    """Serialise an export; with ``with_download``, sign a fresh URL when completed.

    ``finished`` tells a client to stop polling (completed, failed, cancelled or expired).
    """
    export_id = str(export.id)
    body: dict[str, Any] = {
        "id": export_id,
        "status": export.status.value,
        "finished": export.status.finished,
        "dataset": export.dataset,
        "request": export.spec,
        "filename": export.filename,
        "progress": progress(export),
        "object_bytes": export.object_bytes,
        "error": export.error,
        "created_at": _iso(export.created_at),
        "started_at": _iso(export.started_at),
        "finished_at": _iso(export.finished_at),
        "expires_at": _iso(export.expires_at),
        "download": None,
        "links": {
            "self": url_for("exports.get_export", export_id=export_id),
            "download": url_for("exports.download", export_id=export_id),
        },
    }
    if with_download and export.status == ExportStatus.COMPLETED and export.object_key:
        url_expires = datetime.now(UTC) + timedelta(seconds=settings.download_url_ttl_s)
        body["download"] = {
            "url": presign_download(settings, export.object_key, export.filename),
            "expires_at": _iso(url_expires),
        }
    return body
