"""The JSON of an export as the API answers it and as a webhook delivers it (without the parts
only the API can add: links for its own routes and a freshly signed download URL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.crc import CRC32_ALGORITHM, crc32_hex
from shared.models import Export, ExportStatus
from shared.webhooks import Delivery


def iso(value: datetime | None) -> str | None:
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


def checksum_json(export: Export) -> dict[str, str] | None:
    """The whole object's checksum, ``{"algorithm": "crc32", "value": "<8 hex digits>"}``, once known."""
    if export.object_crc32 is None:
        return None
    return {"algorithm": CRC32_ALGORITHM, "value": crc32_hex(export.object_crc32)}


def export_view(export: Export, deliveries: list[Delivery] | None = None) -> dict[str, Any]:
    """The export's fields; ``download`` and ``download_error`` are None (only the API signs URLs).

    ``notify`` is None for an export without a webhook; otherwise its URL (never its secret) and
    its deliveries (``deliveries`` as read by the caller; empty before the export ended).
    """
    export_id = str(export.id)
    return {
        "id": export_id,
        "status": export.status.value,
        "finished": export.status.finished,
        "dataset": export.dataset,
        "request": export.spec,
        "filename": export.filename,
        "progress": progress(export),
        "object_bytes": export.object_bytes,
        "checksum": checksum_json(export),
        "error": export.error,
        "created_at": iso(export.created_at),
        "started_at": iso(export.started_at),
        "finished_at": iso(export.finished_at),
        "expires_at": iso(export.expires_at),
        "download": None,
        "download_error": None,
        "notify": None
        if export.notify_url is None
        else {"url": export.notify_url, "deliveries": [d.json() for d in deliveries or []]},
        "links": {"self": f"/exports/{export_id}", "download": f"/exports/{export_id}/download"},
    }
